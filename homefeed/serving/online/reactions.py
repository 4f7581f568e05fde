"""The reaction consumer: the event log's engagement topics into the online store, live.

It reads ``events.{impression,closeup,click,save,hide}`` as consumer group
``online-features``, turns each poll into ``Reaction``s, applies them in one batch and only
then commits past them. A crash between apply and commit redelivers the batch; the store's
dedup by event id makes that harmless (at-least-once delivery, exactly-once effect).

A feed server that applies the pages it serves itself (``OnlineStore.record_served``) passes
``skip_request_prefix``, its request ids' prefix: impressions of its own requests are then
skipped here instead of applied twice. They are most of the stream, and the server applies
them at serve time, with no lag and no parsing.

Record values are events the SDK already validated (canonical JSON); a record that still does
not parse is counted in ``stats.malformed`` and skipped, so one bad record cannot stall the
feed's freshness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import orjson

from homefeed.events.registry import TOPIC_PREFIX
from homefeed.log.base import EventLog, Record, TopicPartition, TopicSpec
from homefeed.models.data import Action, Pins
from homefeed.serving.online.base import OnlineStore, Reaction, action_weight

log = logging.getLogger(__name__)

GROUP = "online-features"
YIELD_CHUNK = 128  # records applied between sleeps when ``yield_s`` is set
ACTION_OF_EVENT = {
    "impression": Action.IMPRESSION,
    "closeup": Action.CLOSEUP,
    "click": Action.CLICK,
    "save": Action.SAVE,
    "hide": Action.HIDE,
}
TOPICS = tuple(TOPIC_PREFIX + name for name in ACTION_OF_EVENT)
# Pin ids -> each pin's topics (empty tuple when unknown).
PinTopics = Callable[[Sequence[int]], Sequence[tuple[str, ...]]]


def pin_topics_from_catalogue(pins: Pins) -> PinTopics:
    """A ``PinTopics`` lookup over the pin catalogue (vectorised id lookup)."""
    index = pins.index
    by_row: dict[int, tuple[str, ...]] = {-1: ()}  # built as pins come up; one tuple per pin

    def topics_of(row: int) -> tuple[str, ...]:
        codes = pins.topic_codes[pins.topic_indptr[row] : pins.topic_indptr[row + 1]]
        return by_row.setdefault(row, tuple(pins.topics[c] for c in codes.tolist()))

    def lookup(pin_ids: Sequence[int]) -> list[tuple[str, ...]]:
        rows = index.index(np.asarray(pin_ids, dtype=np.int64)).tolist()
        return [by_row.get(row) or topics_of(row) for row in rows]

    return lookup


@dataclass
class ReactionStats:
    records: int = 0
    applied: int = 0  # new to the store
    duplicates: int = 0  # already applied (redelivered)
    malformed: int = 0
    skipped: int = 0  # impressions of this server's own pages (applied when served)
    batches: int = 0
    # Log append -> applied, ms, of the latest batch's records (the freshness of the store).
    last_delay_ms: list[float] = field(default_factory=list)


class ReactionConsumer:
    """Follow the engagement topics and apply them to ``store``; ``run(stop)`` in a thread."""

    def __init__(
        self,
        event_log: EventLog,
        store: OnlineStore,
        *,
        group: str = GROUP,
        pin_topics: PinTopics | None = None,
        max_records: int = 5000,
        poll_timeout_s: float = 0.05,
        partitions: int = 4,
        commit_interval_s: float = 0.0,
        yield_s: float = 0.0,
        skip_request_prefix: str | None = None,
    ) -> None:
        if commit_interval_s < 0:
            raise ValueError(f"commit_interval_s = {commit_interval_s}: must be >= 0")
        if yield_s < 0:
            raise ValueError(f"yield_s = {yield_s}: must be >= 0")
        self.event_log = event_log
        self.store = store
        self.group = group
        self.pin_topics = pin_topics
        self.max_records = max_records
        self.poll_timeout_s = poll_timeout_s
        # Offsets applied but not yet committed: committing is a file or broker write, so a
        # busy consumer does it at most once per interval (redelivery after a crash is
        # harmless, see the module docstring).
        self.commit_interval_s = commit_interval_s
        # Beside a server: applying a 5,000-record poll holds the GIL for ~50 ms, the whole
        # p99 of feed requests. Chunks with a short sleep between let requests run.
        self.yield_s = yield_s
        if skip_request_prefix == "":
            raise ValueError("skip_request_prefix = '': would skip every impression")
        self.skip_request_prefix = skip_request_prefix
        self._pending: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        for topic in TOPICS:  # a fresh log has no topics yet; the SDK makes the same ones
            event_log.ensure_topic(TopicSpec(topic, partitions))
        self._consumer = event_log.consumer(group, TOPICS)
        self.stats = ReactionStats()

    def step(self) -> int:
        """One poll, apply, commit. Returns the number of records consumed."""
        records = self._consumer.poll(self.max_records, self.poll_timeout_s)
        chunk = YIELD_CHUNK if self.yield_s else max(1, len(records))
        for start in range(0, len(records), chunk):
            if start:
                time.sleep(self.yield_s)
            self._apply(records[start : start + chunk])
        if time.monotonic() - self._committed_at >= self.commit_interval_s:
            self.commit()
        return len(records)

    def _apply(self, records: list[Record]) -> None:
        reactions = self._reactions(records)
        applied = self.store.apply(reactions)
        for tp, offset in _next_offsets(records).items():
            self._pending[tp] = max(self._pending.get(tp, 0), offset)
        self._count(records, len(reactions), applied)

    def commit(self) -> None:
        """Commit the offsets of every batch applied so far."""
        if self._pending:
            self._consumer.commit(self._pending)
            self._pending = {}
        self._committed_at = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; a failing batch is retried, not skipped."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                # Nothing was committed, so the batch comes again after the seek below.
                log.exception("reaction batch failed; retrying from the committed offsets")
                self._rewind()
                stop.wait(1.0)

    def lag(self) -> dict[TopicPartition, int]:
        """Records not yet committed, per partition (end offset minus committed offset)."""
        out: dict[TopicPartition, int] = {}
        committed = {t: self.event_log.group_offsets(self.group, t) for t in TOPICS}
        for info in self.event_log.partitions_of(TOPICS):
            done = committed[info.topic].get(info.partition, info.start_offset)
            out[(info.topic, info.partition)] = max(0, info.end_offset - done)
        return out

    def close(self) -> None:
        try:
            self.commit()
        except Exception:  # the batches come again to the next consumer, deduplicated
            log.exception("final commit of the reaction consumer failed")
        finally:
            self._consumer.close()

    def _reactions(self, records: list[Record]) -> list[Reaction]:
        out = [r for r in map(self._parse, records) if r is not None]
        # Only actions that move topic affinity need the pin's topics (not impressions: most
        # of the stream).
        weighted = [i for i, r in enumerate(out) if action_weight(r.action)]
        if self.pin_topics is None or not weighted:
            return out
        topics = self.pin_topics([out[i].pin_id for i in weighted])
        for i, t in zip(weighted, topics, strict=True):
            out[i] = _with_topics(out[i], t)
        return out

    def _parse(self, record: Record) -> Reaction | None:
        try:
            event = orjson.loads(record.value)
            if self._own_impression(event):
                self.stats.skipped += 1
                return None
            reaction = Reaction(
                event_id=str(event["event_id"]),
                user_id=int(event["user_id"]),
                pin_id=int(event["pin_id"]),
                action=ACTION_OF_EVENT[event["event_type"]],
                time_ms=_epoch_ms(event["event_time"]),
            )
        except Exception as e:  # validated upstream; anything else is counted, not fatal
            self.stats.malformed += 1
            log.warning("skipping malformed record %s[%d]@%d: %r", *_where(record), e)
            return None
        return reaction

    def _own_impression(self, event: dict[str, object]) -> bool:
        prefix = self.skip_request_prefix
        if prefix is None or event.get("event_type") != "impression":
            return False
        request_id = event.get("request_id")
        return isinstance(request_id, str) and request_id.startswith(prefix)

    def _count(self, records: list[Record], reactions: int, applied: int) -> None:
        now = time.time() * 1000
        self.stats.records += len(records)
        self.stats.applied += applied
        self.stats.duplicates += reactions - applied
        self.stats.batches += 1
        self.stats.last_delay_ms = [now - r.timestamp_ms for r in records]

    def _rewind(self) -> None:
        committed = self._consumer.committed()
        starts = {
            (i.topic, i.partition): i.start_offset for i in self.event_log.partitions_of(TOPICS)
        }
        for tp in self._consumer.assignment():
            self._consumer.seek(*tp, committed.get(tp, starts.get(tp, 0)))


def _next_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        out[tp] = max(out.get(tp, 0), r.offset + 1)
    return out


def _with_topics(r: Reaction, topics: tuple[str, ...]) -> Reaction:
    return Reaction(r.event_id, r.user_id, r.pin_id, r.action, r.time_ms, tuple(topics))


def _epoch_ms(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset
