"""The persister: event topics to Parquet in the lake, exactly once.

How exactly once holds, with the log and the lake as the only state:

1. **Cut points depend only on the input.** A partition's records are cut into batches at
   offsets that are multiples of ``batch_records``: batch k holds offsets [k*N, (k+1)*N).
   Whoever reads the partition, from wherever, cuts it the same way.
2. **File names derive from the batch.** ``part-<partition>-<batch start offset>.parquet`` in
   each event hour the batch touches, written atomically: writing a batch again replaces its
   files, it never adds a second copy.
3. **Offsets are committed after the files are durable.** A crash before the commit repeats
   the batch into the same files.
4. **A tail is a prefix of its batch.** When the persister catches up in the middle of a batch
   it writes what it has under the batch's name and commits. The next run starts reading at
   the batch start again (at most N records back), so the batch's files are rewritten as a
   superset once more records arrive: still one copy of each record.

5. **A change of** ``batch_records`` starts the new cuts at each partition's committed
   offset (recorded in the lake), so old partial batches are never re-cut. A *new* group
   replaying into a lake cut with another size history is the one case this cannot cover:
   clear the event tables before such a replay.

So every (topic, partition, offset) lands once; every row carries ``_partition`` and
``_offset`` so that can be checked (tests/persister/test_crash.py does, under SIGKILL). If
retention removed the start of a batch before it could be re-read, the rest of that batch is
written under the first offset it still has instead (no duplicates; the removed records were
already in the lake).

Hour markers: ``_SUCCESS`` is written in every event table's hour directory once the
watermark (the oldest newest-event-time among partitions that still have unread records, or the
newest event time overall when all are caught up) is past the hour's end plus
``late_delay_minutes``. A late event (its hour already marked) is written to its event-time
hour like any other, counted, and the marker is rewritten with ``late_rows`` increased and a
new ``updated_at``, so a job can see that an hour it already processed has changed.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
import pyarrow.compute as pc

from homefeed.config import PersisterConfig
from homefeed.events.registry import DEAD_LETTER_TOPIC, TOPIC_PREFIX, SchemaRegistry
from homefeed.events.validate import EventValidator
from homefeed.lake.base import LakeStore
from homefeed.lake.layout import HOUR_MS, event_table, hour_label, part_file, success_marker
from homefeed.log.base import Consumer, EventLog, PartitionInfo, Record, TopicPartition
from homefeed.persister.batch import hour_floor, parse_batch
from homefeed.persister.state import Batching, PartitionProgress, PersisterState

log = logging.getLogger(__name__)

POLL_RECORDS = 50_000
MARKER_THREADS = 16
MARKER_CHUNK_HOURS = 256


@dataclass
class PersistReport:
    batches: int = 0
    files: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    late_rows: int = 0
    dead_lettered: int = 0
    reread_records: int = 0  # records read again to rewrite a batch's tail
    hours_marked: int = 0
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


class Persister:
    def __init__(
        self,
        event_log: EventLog,
        lake: LakeStore,
        *,
        config: PersisterConfig | None = None,
        registry: SchemaRegistry | None = None,
        on_batch: Callable[[PersistReport], None] | None = None,
    ) -> None:
        self.log = event_log
        self.lake = lake
        self.config = config or PersisterConfig()  # type: ignore[call-arg]
        self.registry = registry or SchemaRegistry()
        self.validator = EventValidator(self.registry)
        self.state = PersisterState(lake, self.config.group)
        self.on_batch = on_batch
        self.report = PersistReport()
        existing = {t.name for t in event_log.topics()}
        self.topics = [t for t in self.registry.topics() if t in existing]
        self._progress = {t: self.state.read_progress(t) for t in self.topics}
        self._last_marked = self.state.last_marked_hour()

    def run(self, follow: bool = False, stop: threading.Event | None = None) -> PersistReport:
        """Persist until caught up (``follow=False``) or until ``stop`` is set."""
        stop = stop or threading.Event()
        started = time.monotonic()
        with self.log.consumer(self.config.group, self.topics) as consumer:
            loop = _Loop(self, consumer)
            loop.run(follow, stop)
        self.report.seconds = time.monotonic() - started
        return self.report

    # -- one batch ------------------------------------------------------------------------

    def persist_batch(
        self, consumer: Consumer, name: int, records: list[Record], persisted: int
    ) -> None:
        """Write ``records`` (batch ``name``, offsets from ``name`` on) and commit past them.

        Records below ``persisted`` are already in the lake (an earlier prefix of this batch);
        they are rewritten into the same files, and only the others count as new.
        """
        topic, partition = records[0].topic, records[0].partition
        schema = self.registry.latest(topic.removeprefix(TOPIC_PREFIX))
        table = event_table(schema.event_type)
        parsed = parse_batch(records, schema, self.validator)
        files = [part_file(table, hour, partition, name) for hour, _ in parsed.hours]
        for (_, rows), path in zip(parsed.hours, files, strict=True):
            self.lake.write_parquet(path, rows)
        new_rejected = [(r, why) for r, why in parsed.rejected if r.offset >= persisted]
        if new_rejected:
            self._dead_letter(new_rejected)
        end = records[-1].offset + 1
        consumer.commit({(topic, partition): end})
        self._record_progress(topic, partition, end, parsed.hours, table, persisted)
        self.report.batches += 1
        self.report.files += len(files)
        self.report.rows[table] += sum(
            int(pc.sum(pc.greater_equal(rows.column("_offset"), persisted)).as_py() or 0)
            for _, rows in parsed.hours
        )
        if self.on_batch is not None:
            self.on_batch(self.report)

    def _dead_letter(self, rejected: list) -> None:
        with self.log.producer() as producer:
            for record, rejection in rejected:
                where = f"persister:{record.topic}[{record.partition}]@{record.offset}"
                producer.send(DEAD_LETTER_TOPIC, rejection.dead_letter(record.value, where))
        self.report.dead_lettered += len(rejected)
        log.warning("dead-lettered %d invalid records found on event topics", len(rejected))

    def _record_progress(
        self, topic: str, partition: int, end: int, hours: list, table: str, persisted: int
    ) -> None:
        progress = self._progress[topic].setdefault(partition, PartitionProgress())
        progress.committed = end
        for hour, rows in hours:
            millis = rows.column("event_time").cast("int64").to_numpy()
            progress.min_event_ms = min(progress.min_event_ms or hour, hour)
            progress.max_event_ms = max(progress.max_event_ms or 0, int(millis.max()))
            if self._last_marked is not None and hour <= self._last_marked:
                new = int(pc.sum(pc.greater_equal(rows.column("_offset"), persisted)).as_py() or 0)
                if new:
                    progress.late_rows += new
                    self.report.late_rows += new
                    self._rewrite_marker(table, hour, new)
        self.state.write_progress(topic, self._progress[topic])

    # -- hour markers ---------------------------------------------------------------------

    def partition_snapshot(self) -> dict[TopicPartition, PartitionInfo]:
        """Start and end offsets of every partition persisted (one look-up per topic: on Kafka
        each finds true end offsets with a fetch, so callers reuse the snapshot)."""
        return {(info.topic, info.partition): info for info in self.log.partitions_of(self.topics)}

    def mark_complete_hours(
        self, consumer: Consumer, partitions: dict[TopicPartition, PartitionInfo]
    ) -> int:
        """Write ``_SUCCESS`` for hours the watermark has passed; ``partitions`` is a recent
        snapshot of end offsets, to tell partitions with unread records from idle ones."""
        watermark = self._watermark(consumer, partitions)
        if watermark is None:
            return 0
        first = min(
            (
                p.min_event_ms
                for t in self.topics
                for p in self._progress[t].values()
                if p.min_event_ms
            ),
            default=None,
        )
        if first is None:
            return 0
        delay_ms = int(self.config.late_delay_minutes * 60_000)
        last_complete = hour_floor(watermark - delay_ms) - HOUR_MS
        first_hour = (
            self._last_marked + HOUR_MS if self._last_marked is not None else hour_floor(first)
        )
        hours = list(range(first_hour, last_complete + 1, HOUR_MS))
        for i in range(0, len(hours), MARKER_CHUNK_HOURS):
            chunk = hours[i : i + MARKER_CHUNK_HOURS]
            # Markers are small and many (every table, every hour): write them concurrently, and
            # record the chunk as marked only once all of its markers are durable.
            jobs = [(event_table(t), h) for h in chunk for t in self.registry.event_types]
            with ThreadPoolExecutor(MARKER_THREADS) as pool:
                list(pool.map(lambda job: self._write_marker(job[0], job[1], watermark), jobs))
            self._last_marked = chunk[-1]
            self.state.set_last_marked_hour(chunk[-1])
        self.report.hours_marked += len(hours)
        return len(hours)

    def _watermark(
        self, consumer: Consumer, partitions: dict[TopicPartition, PartitionInfo]
    ) -> int | None:
        behind: list[int | None] = []
        newest: list[int] = []
        for (topic, partition), info in partitions.items():
            progress = self._progress[topic].get(partition)
            seen = progress.max_event_ms if progress else None
            if seen is not None:
                newest.append(seen)
            if consumer.position(topic, partition) < info.end_offset:
                behind.append(seen)
        if any(b is None for b in behind):
            return None  # a partition with unread records and no known event time yet
        if behind:
            return min(b for b in behind if b is not None)
        return max(newest, default=None)

    def _write_marker(self, table: str, hour: int, watermark: int) -> None:
        doc = {
            "table": table,
            "hour": hour_label(hour),
            "watermark": watermark,
            "marked_at_ms": int(time.time() * 1000),
            "late_rows": 0,
        }
        self.lake.put_bytes(success_marker(table, hour), orjson.dumps(doc))

    def _rewrite_marker(self, table: str, hour: int, late_rows: int) -> None:
        path = success_marker(table, hour)
        doc = orjson.loads(self.lake.get_bytes(path)) if self.lake.exists(path) else {}
        doc["late_rows"] = doc.get("late_rows", 0) + late_rows
        doc["updated_at_ms"] = int(time.time() * 1000)
        self.lake.put_bytes(path, orjson.dumps(doc))


@dataclass
class _Batch:
    name: int  # offset the batch's files are named after
    persisted: int  # records below this offset are already in the lake
    records: list[Record] = field(default_factory=list)
    unwritten: int = 0  # records since the last write


def _offset(record: Record) -> int:
    return record.offset


def _runs(records: list[Record]) -> Iterator[list[Record]]:
    """Split a poll's records into runs of one partition each (consumers return them so)."""
    start = 0
    for i in range(1, len(records) + 1):
        if (
            i == len(records)
            or records[i].partition != records[start].partition
            or (records[i].topic != records[start].topic)
        ):
            yield records[start:i]
            start = i


class _Loop:
    """Buffers each partition's current batch and decides when to write it."""

    def __init__(self, persister: Persister, consumer: Consumer) -> None:
        self.p = persister
        self.consumer = consumer
        self.n = persister.config.batch_records
        self.batches: dict[TopicPartition, _Batch] = {}
        self.partitions = persister.partition_snapshot()
        self._rewind_to_batch_starts()

    def _rewind_to_batch_starts(self) -> None:
        """Start each partition at its current batch's first offset, to rewrite that batch whole.

        Never before the offset where the current ``batch_records`` took over (state.Batching):
        after a change of size, completing an old partial batch under the new alignment would
        write some of its records twice, so the new cuts start at the committed offset.
        """
        starts = {tp: info.start_offset for tp, info in self.partitions.items()}
        batching = self.p.state.batching() or Batching(self.n)
        if batching.batch_records != self.n:
            log.warning("persister.batch_records changed to %d: new cuts start here", self.n)
            positions = {f"{t}/{p}": self.consumer.position(t, p) for t, p in self.partitions}
            batching = Batching(self.n, positions)
        self.p.state.set_batching(batching)
        for tp in self.consumer.assignment():
            position = self.consumer.position(*tp)
            since = batching.since.get(f"{tp[0]}/{tp[1]}", 0)
            aligned = max(position - position % self.n, since)
            name = aligned if aligned >= starts[tp] else position
            if name < position:
                self.consumer.seek(tp[0], tp[1], name)
            self.batches[tp] = _Batch(name, persisted=position)

    def run(self, follow: bool, stop: threading.Event) -> None:
        targets = {tp: info.end_offset for tp, info in self.partitions.items()}
        last_flush = time.monotonic()
        while not stop.is_set():
            records = self.consumer.poll(
                POLL_RECORDS, self.p.config.poll_interval_s if follow else 0.2
            )
            for run in _runs(records):
                self._add_run(run)
            caught_up = not records if follow else self._reached(targets)
            due = time.monotonic() - last_flush >= self.p.config.flush_interval_s
            if caught_up or (follow and due):
                for tp in list(self.batches):
                    self._write(tp)
                if follow:  # once: the snapshot taken at the start is the end we read to
                    self.partitions = self.p.partition_snapshot()
                self.p.mark_complete_hours(self.consumer, self.partitions)
                last_flush = time.monotonic()
                if not follow:
                    return

    def _add_run(self, run: list[Record]) -> None:
        """Add records of one partition, in offset order, cutting at batch boundaries."""
        tp = (run[0].topic, run[0].partition)
        while run:
            batch = self.batches[tp]
            boundary = batch.name - batch.name % self.n + self.n
            if run[0].offset >= boundary:  # the batch is complete: write it, start the next
                self._write(tp)
                batch = self.batches[tp] = _Batch(boundary, persisted=boundary)
                boundary += self.n
            cut = bisect.bisect_left(run, boundary, key=_offset)
            head, run = run[:cut], run[cut:]
            batch.records += head
            new = len(head) - bisect.bisect_left(head, batch.persisted, key=_offset)
            batch.unwritten += new
            self.p.report.reread_records += len(head) - new

    def _write(self, tp: TopicPartition) -> None:
        batch = self.batches[tp]
        if not batch.unwritten:
            return
        self.p.persist_batch(self.consumer, batch.name, batch.records, batch.persisted)
        batch.persisted = batch.records[-1].offset + 1
        batch.unwritten = 0

    def _reached(self, targets: dict[TopicPartition, int]) -> bool:
        return all(self.consumer.position(t, p) >= end for (t, p), end in targets.items())
