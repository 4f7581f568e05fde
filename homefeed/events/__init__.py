"""Typed, versioned event schemas, their validation, and the SDK services call."""

from homefeed.events.registry import DEAD_LETTER_TOPIC, EventSchema, SchemaRegistry
from homefeed.events.sdk import EventLogger, RejectedEventError
from homefeed.events.validate import EventValidator, Rejection

__all__ = [
    "DEAD_LETTER_TOPIC",
    "EventLogger",
    "EventSchema",
    "EventValidator",
    "RejectedEventError",
    "Rejection",
    "SchemaRegistry",
]
