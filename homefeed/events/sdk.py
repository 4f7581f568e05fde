"""``EventLogger``: the SDK services call to log events.

It validates each event against the registry, batches accepted ones per topic (keyed by user,
so one user's events keep their order), and sends a batch when it is full, when it is older
than ``linger_ms``, on ``flush()`` and at interpreter exit. A rejected event never raises by
default: it goes to the dead-letter topic with its reason, is counted, and the ``Rejection`` is
returned so the caller can see the field and value at fault.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from homefeed.config import SdkConfig
from homefeed.events.registry import DEAD_LETTER_TOPIC, TOPIC_PREFIX, SchemaRegistry
from homefeed.events.validate import EventValidator, Rejection
from homefeed.log.base import DEFAULT_RETENTION_MS, EventLog, TopicSpec

log = logging.getLogger(__name__)


class RejectedEventError(ValueError):
    """Raised instead of dead-lettering when the logger is strict."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


def ensure_event_topics(
    event_log: EventLog, registry: SchemaRegistry, partitions: int, retention_ms: int
) -> None:
    for topic in [*registry.topics(), DEAD_LETTER_TOPIC]:
        event_log.ensure_topic(TopicSpec(topic, partitions, retention_ms))


class EventLogger:
    def __init__(
        self,
        event_log: EventLog,
        *,
        registry: SchemaRegistry | None = None,
        config: SdkConfig | None = None,
        source: str = "sdk",
        partitions: int = 4,
        retention_ms: int = DEFAULT_RETENTION_MS,
        strict: bool = False,
        on_reject: Callable[[Rejection], None] | None = None,
    ) -> None:
        self.config = config or SdkConfig()  # type: ignore[call-arg]
        self.registry = registry or SchemaRegistry()
        self.validator = EventValidator(self.registry, self.config.max_event_bytes)
        self.source = source
        self.strict = strict
        self.on_reject = on_reject
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        ensure_event_topics(event_log, self.registry, partitions, retention_ms)
        self._producer = event_log.producer()
        self._buffer: dict[str, list[tuple[bytes | None, bytes]]] = {}
        self._buffered = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._linger_loop, name="homefeed-sdk", daemon=True)
        self._flusher.start()
        # Flush on exit without keeping the logger alive just for that.
        atexit.register(_close_at_exit, weakref.ref(self))

    def log(self, event: Mapping[str, Any]) -> Rejection | None:
        """Validate and queue one event. Returns the rejection if it was dead-lettered."""
        result = self.validator.check(event)
        if isinstance(result, Rejection):
            return self._reject(result, _encode_for_dead_letter(event))
        self._queue(result[0], result[1])
        return None

    def log_raw(self, raw: bytes) -> Rejection | None:
        """Validate and queue one encoded event (a line of a file, an item of a request)."""
        result = self.validator.parse(raw)
        if isinstance(result, Rejection):
            return self._reject(result, raw)
        self._queue(result[0], result[1])
        return None

    def log_many(self, events: Iterable[Mapping[str, Any]]) -> list[Rejection]:
        """Validate and queue several events (one feed's impressions, say) under one lock."""
        accepted: list[tuple[dict[str, Any], bytes]] = []
        rejections: list[Rejection] = []
        for event in events:
            result = self.validator.check(event)
            if isinstance(result, Rejection):
                rejections.append(self._reject(result, _encode_for_dead_letter(event)))
            else:
                accepted.append(result)
        self._queue_many(accepted)
        return rejections

    def _queue(self, event: dict[str, Any], encoded: bytes) -> None:
        self._queue_many(((event, encoded),))

    def _queue_many(self, items: Iterable[tuple[dict[str, Any], bytes]]) -> None:
        with self._lock:
            buffer = self._buffer
            count = 0
            for event, encoded in items:
                topic = TOPIC_PREFIX + event["event_type"]
                records = buffer.get(topic)
                if records is None:
                    records = buffer[topic] = []
                records.append((str(event["user_id"]).encode(), encoded))
                count += 1
            self._buffered += count
            self.accepted += count
            full = self._buffered >= self.config.batch_size
        if full:
            self._send_buffer()

    def _reject(self, rejection: Rejection, raw: bytes) -> Rejection:
        if self.strict:
            raise RejectedEventError(rejection)
        with self._lock:
            self.rejected[rejection.reason] += 1
            self._buffer.setdefault(DEAD_LETTER_TOPIC, []).append(
                (None, rejection.dead_letter(raw, self.source))
            )
            self._buffered += 1
        if self.on_reject is not None:
            self.on_reject(rejection)
        else:
            log.warning("event rejected to %s: %s", DEAD_LETTER_TOPIC, rejection)
        return rejection

    def _send_buffer(self) -> None:
        with self._lock:
            buffer, self._buffer, self._buffered = self._buffer, {}, 0
            # Sent under the lock so batches reach the producer in the order they were queued.
            for topic, records in buffer.items():
                self._producer.send_many(topic, records)

    def _linger_loop(self) -> None:
        interval = max(self.config.linger_ms, 1) / 1000
        while not self._closed.wait(interval):
            if self._buffered:
                try:
                    self.flush()
                except Exception:  # the next flush() from the caller raises it again
                    log.exception("background flush failed; records stay queued in the producer")

    def flush(self, timeout_s: float = 60.0) -> None:
        """Send everything queued and wait until the log acknowledged it."""
        self._send_buffer()
        self._producer.flush(timeout_s)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.flush()
        self._producer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_at_exit(ref: weakref.ref[EventLogger]) -> None:
    logger = ref()
    if logger is not None:
        logger.close()


def _encode_for_dead_letter(event: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(event, default=repr)
    except TypeError:
        return repr(event).encode("utf-8", "replace")
