"""The event log: one interface (base.py), an embedded default (local/) and Kafka (kafka.py)."""

from homefeed.log.base import (
    Consumer,
    DeliveryError,
    EventLog,
    LogError,
    PartitionInfo,
    Producer,
    Record,
    TopicSpec,
    UnknownTopicError,
)
from homefeed.log.factory import open_log

__all__ = [
    "Consumer",
    "DeliveryError",
    "EventLog",
    "LogError",
    "PartitionInfo",
    "Producer",
    "Record",
    "TopicSpec",
    "UnknownTopicError",
    "open_log",
]
