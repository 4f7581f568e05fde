"""Validation at every door: raw bytes or dicts in, a canonical event or a ``Rejection`` out.

Accepted events are canonical, so nothing downstream can fail on them: integers are integers
(not 3.0, not True), ``event_time`` is RFC 3339 UTC with milliseconds and a ``Z``, the encoded
event fits ``max_event_bytes``. The persister relies on that: an event the log accepted must
always land in the lake.
"""

from __future__ import annotations

import base64
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fastjsonschema
import orjson

from homefeed.events.fastcheck import compile_check
from homefeed.events.registry import SchemaRegistry

# Plausible event times: older ones are almost always seconds/milliseconds mix-ups (1970).
# 1990 leaves room for imported history such as MovieLens (1997-1998).
MIN_EVENT_TIME = datetime(1990, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)
_VALUE_REPR_LIMIT = 120


class _EventIds:
    """Unique ids without a syscall each: a random 64-bit prefix per process, then a counter.

    Same shape as ``uuid4().hex`` (32 hex digits). A forked child draws a new prefix, so two
    processes never share a sequence; ids from different prefixes collide with probability
    ~2^-64 per pair of processes, which the dedup by event id can live with.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    @property
    def prefix(self) -> str:
        """What every id of this process starts with (new after a fork)."""
        return self._prefix

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"  # next() on a count is atomic


new_event_id = _EventIds()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused: a reason code, the field at fault and its value."""

    reason: str  # not_utf8 | not_json | not_object | oversized | unknown_type | missing_field |
    #              unknown_field | invalid_field | bad_timestamp
    message: str
    field: str | None = None
    value: str | None = None  # repr of the offending value, truncated

    def __str__(self) -> str:
        return self.message

    def dead_letter(self, raw: bytes, source: str) -> bytes:
        """The dead-letter record: the reason plus the raw payload, byte for byte (base64)."""
        doc = asdict(self) | {
            "source": source,
            "rejected_at_ms": int(time.time() * 1000),
            "payload_b64": base64.b64encode(raw).decode("ascii"),
        }
        return orjson.dumps(doc)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_REPR_LIMIT else text[: _VALUE_REPR_LIMIT - 3] + "..."


def _is_canonical_shape(value: str) -> bool:
    return len(value) == 24 and value[23] == "Z" and value[10] == "T" and value[19] == "."


_latest_allowed = (0.0, datetime.now(UTC) + MAX_CLOCK_SKEW)


def _max_event_time() -> datetime:
    """Now plus the allowed skew, recomputed at most once a second (it is on the hot path)."""
    global _latest_allowed
    stamp, bound = _latest_allowed
    now = time.monotonic()
    if now - stamp > 1.0:
        _latest_allowed = (now, bound := datetime.now(UTC) + MAX_CLOCK_SKEW)
    return bound


def canonical_time(value: Any) -> str | Rejection:
    """RFC 3339 UTC with milliseconds, or the reason the value is not a usable event time."""
    if isinstance(value, str) and _is_canonical_shape(value):
        try:  # already canonical: check it parses and is in range, keep the string
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return _bad_time(value, "is not an RFC 3339 timestamp")
        if parsed < MIN_EVENT_TIME or parsed > _max_event_time():
            return _bad_time(value, "is out of range (before 1990 or more than a day ahead)")
        return value
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return _bad_time(value, "is not an RFC 3339 timestamp")
    else:
        return _bad_time(value, "must be an RFC 3339 string")
    if parsed.tzinfo is None:
        return _bad_time(value, "has no time zone; use UTC ('Z')")
    if parsed.utcoffset() != timedelta(0):
        return _bad_time(value, "is not UTC; convert it and use 'Z'")
    if parsed < MIN_EVENT_TIME or parsed > _max_event_time():
        return _bad_time(value, "is out of range (before 1990 or more than a day ahead)")
    return (
        parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"
    )


def _bad_time(value: Any, why: str) -> Rejection:
    return Rejection(
        "bad_timestamp", f"event_time {_short(value)} {why}", "event_time", _short(value)
    )


class EventValidator:
    """Compiled validators for the newest version of every event type."""

    def __init__(self, registry: SchemaRegistry, max_event_bytes: int = 64 * 1024) -> None:
        self.registry = registry
        self.max_event_bytes = max_event_bytes
        # Our own timestamp check gives a better message than the format regex would.
        formats = {"date-time": lambda _v: True}
        self._validators: dict[str, Callable[[Any], Any]] = {}
        self._fast: dict[str, Callable[[Any], bool]] = {}
        self._int_fields: dict[str, tuple[str, ...]] = {}
        for event_type in registry.event_types:
            schema = registry.latest(event_type)
            self._validators[event_type] = fastjsonschema.compile(schema.document, formats=formats)
            self._fast[event_type] = compile_check(schema.document)
            self._int_fields[event_type] = tuple(
                k for k, v in schema.properties.items() if v.get("type") == "integer"
            )

    def parse(self, raw: bytes) -> tuple[dict[str, Any], bytes] | Rejection:
        """Check raw bytes (a file line, an HTTP body item) and return (event, canonical bytes)."""
        if len(raw) > self.max_event_bytes:
            return Rejection(
                "oversized", f"event is {len(raw)} bytes, over the {self.max_event_bytes} limit"
            )
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return Rejection("not_utf8", f"event is not UTF-8: byte {e.start} is invalid")
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return Rejection("not_json", f"event is not JSON: {e}")
        return self.check(event)

    def check(self, event: Any) -> tuple[dict[str, Any], bytes] | Rejection:
        """Validate a decoded event; fills event_id/schema_version when absent."""
        if not isinstance(event, dict):
            return Rejection(
                "not_object", f"event must be a JSON object, got {type(event).__name__}"
            )
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or event_type not in self._validators:
            known = ", ".join(self.registry.event_types)
            return Rejection(
                "unknown_type",
                f"event_type {_short(event_type)} is not one of: {known}",
                "event_type",
                _short(event_type),
            )
        event = dict(event)
        if "event_id" not in event:
            event["event_id"] = new_event_id()
        if "schema_version" not in event:
            event["schema_version"] = self.registry.latest(event_type).version
        if isinstance(event.get("event_time"), datetime):
            event["event_time"] = event["event_time"].isoformat()
        if not self._fast[event_type](event):
            rejection = self._explain(event_type, event)
            if rejection is not None:
                return rejection
        when = canonical_time(event["event_time"])
        if isinstance(when, Rejection):
            return when
        event["event_time"] = when
        encoded = orjson.dumps(event)
        if len(encoded) > self.max_event_bytes:
            return Rejection(
                "oversized", f"event is {len(encoded)} bytes, over the {self.max_event_bytes} limit"
            )
        return event, encoded

    def _explain(self, event_type: str, event: dict[str, Any]) -> Rejection | None:
        """Why the fast check said no, in the full validator's words."""
        try:
            self._validators[event_type](event)
        except fastjsonschema.JsonSchemaValueException as e:
            return _schema_rejection(event, e)
        # The full validator accepts what the fast one refuses only for JSON Schema's loose
        # integers (3.0, True); they would not survive the lake's int64 columns.
        for name in self._int_fields[event_type]:
            value = event.get(name)
            if isinstance(value, bool | float):
                return Rejection(
                    "invalid_field",
                    f"{name} must be an integer, got {_short(value)}",
                    name,
                    _short(value),
                )
        return Rejection("invalid_field", "event does not match its schema")


def _schema_rejection(
    event: dict[str, Any], e: fastjsonschema.JsonSchemaValueException
) -> Rejection:
    path = [str(p) for p in (e.path or [])[1:]]
    if e.rule == "required":
        missing = [k for k in (e.rule_definition or []) if k not in _at(event, path)]
        name = ".".join([*path, missing[0]]) if missing else ".".join(path) or None
        return Rejection("missing_field", f"missing required field {name}", name)
    if e.rule == "additionalProperties":
        allowed = set(e.definition.get("properties", {})) if e.definition else set()
        extra = sorted(set(_at(event, path)) - allowed)
        name = ".".join([*path, extra[0]]) if extra else ".".join(path) or None
        return Rejection("unknown_field", f"unknown field {name} (not in the schema)", name)
    name = ".".join(path) or None
    message = (e.message or "").replace("data.", "", 1).replace("data ", "event ", 1)
    if name == "event_time":
        return _bad_time(e.value, "must be an RFC 3339 string")
    return Rejection("invalid_field", f"{message}, got {_short(e.value)}", name, _short(e.value))


def _at(event: dict[str, Any], path: list[str]) -> dict[str, Any]:
    node: Any = event
    for key in path:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}
