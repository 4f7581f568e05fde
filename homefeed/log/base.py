"""The event log interface: topics of partitioned, offset-addressed records.

The contract every backend honours (tests/log/test_contract.py runs it on each):

* A topic has a fixed number of partitions. Records with the same key go to the same
  partition, so one user's events stay in order.
* Offsets within a partition are assigned by the log, strictly increasing, starting at 0.
  ``end_offset`` is the offset the next record will get (Kafka's high watermark).
* ``Producer.flush()`` returns only when every record sent before it is acknowledged; an
  acknowledged record survives the producing process being killed (SIGKILL) at any moment.
  If a record cannot be delivered, ``flush()`` raises ``DeliveryError``: nothing is dropped
  silently.
* A consumer belongs to a group and is assigned every partition of its topics. It starts each
  partition at the group's committed offset, or at the partition's start offset when the group
  has none. ``commit`` stores *the offset of the next record to read*, like Kafka.
* Retention is time based on the time the log appended the record (not event time), and
  removes whole segments: a record is kept at least ``retention_ms``, and possibly longer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from homefeed.closing import Closing

DEFAULT_RETENTION_MS = 48 * 3600 * 1000


class LogError(Exception):
    """Base class for event log errors."""


class DeliveryError(LogError):
    """Records could not be acknowledged by the log."""


class UnknownTopicError(LogError):
    def __init__(self, topic: str) -> None:
        super().__init__(f"unknown topic {topic!r}; create it first (homefeed topics create)")
        self.topic = topic


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # when the log appended the record
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int = DEFAULT_RETENTION_MS


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    topic: str
    partition: int
    start_offset: int  # first offset still retained
    end_offset: int  # offset the next record will get


TopicPartition = tuple[str, int]


class Producer(Closing, ABC):
    @abstractmethod
    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one record; it is acknowledged by the next ``flush()``."""

    def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Queue (key, value) pairs. Backends override this when batching is cheaper."""
        for key, value in records:
            self.send(topic, value, key)

    @abstractmethod
    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until everything sent is acknowledged, or raise ``DeliveryError``."""

    @abstractmethod
    def close(self) -> None:
        """Flush, then release resources."""


class Consumer(Closing, ABC):
    @abstractmethod
    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads."""

    @abstractmethod
    def poll(self, max_records: int = 10_000, timeout_s: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records in offset order per partition; may return fewer or none."""

    @abstractmethod
    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Make the next poll of this partition start at ``offset``."""

    @abstractmethod
    def position(self, topic: str, partition: int) -> int:
        """Offset of the next record ``poll`` will return for this partition."""

    @abstractmethod
    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Durably store, for the group, the next offset to read of each partition given."""

    @abstractmethod
    def committed(self) -> dict[TopicPartition, int]:
        """The group's committed offsets for the assigned partitions that have one."""

    @abstractmethod
    def close(self) -> None: ...


class EventLog(Closing, ABC):
    """A handle on one log cluster: the local directory, or a Kafka cluster."""

    name: str = "abstract"

    @abstractmethod
    def ensure_topic(self, spec: TopicSpec) -> None:
        """Create the topic if it does not exist. An existing topic is left as it is."""

    @abstractmethod
    def topics(self) -> list[TopicSpec]:
        """Every topic, sorted by name."""

    @abstractmethod
    def partitions(self, topic: str) -> list[PartitionInfo]:
        """Start and end offsets of each partition; raises ``UnknownTopicError``."""

    def partitions_of(self, topics: Sequence[str]) -> list[PartitionInfo]:
        """``partitions`` of several topics; backends override it when one call is cheaper."""
        return [info for topic in topics for info in self.partitions(topic)]

    @abstractmethod
    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        """Committed offsets of ``group`` on ``topic`` by partition (missing: none committed)."""

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Drop records past retention; returns how many were dropped. Brokers do it themselves."""
        return 0
