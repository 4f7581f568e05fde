"""``LocalLog``: the embedded, durable event log (the default backend).

Layout under ``log.local.path``::

    topics/<topic>/topic.json               partitions and retention
    topics/<topic>/<partition>/<base>.log   segment files (see segment.py)
    groups/<group>/<topic>.json             committed offsets, replaced atomically
    groups/<group>/.lock                    held by the group's one live consumer

Not a cluster: a consumer group here has one member, which reads every partition. A second
live consumer in the same group is refused rather than silently splitting or duplicating work.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from homefeed.config import LocalLogConfig
from homefeed.log.base import (
    Consumer,
    EventLog,
    LogError,
    PartitionInfo,
    Producer,
    Record,
    TopicPartition,
    TopicSpec,
    UnknownTopicError,
)
from homefeed.log.local import segment as seg
from homefeed.log.local.partition import PartitionReader, PartitionWriter

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_FLUSH_BYTES = 4 << 20  # write buffered records once this much is queued
IDLE_WAIT_S = 0.05  # a consumer with nothing to read looks again after this (other writers)


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    """Keyed records hash to a fixed partition; unkeyed ones are spread round-robin."""
    return zlib.crc32(key) % partitions if key is not None else counter % partitions


def write_json_atomic(path: Path, doc: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LocalLog(EventLog):
    name = "local"

    def __init__(self, config: LocalLogConfig | None = None) -> None:
        self.config = config or LocalLogConfig()  # type: ignore[call-arg]
        self.root = Path(self.config.path).resolve()
        (self.root / "topics").mkdir(parents=True, exist_ok=True)
        (self.root / "groups").mkdir(parents=True, exist_ok=True)
        # Appends through this object wake its consumers at once; appends by other processes
        # are found by the consumers' next read, at most IDLE_WAIT_S later.
        self._appended = threading.Condition()
        self._appends = 0

    def notify_appended(self) -> None:
        with self._appended:
            self._appends += 1
            self._appended.notify_all()

    def wait_for_append(self, seen: int, timeout_s: float) -> None:
        """Sleep until an append through this object after ``seen`` appends, or the timeout."""
        with self._appended:
            if self._appends == seen:
                self._appended.wait(timeout_s)

    @property
    def appends(self) -> int:
        return self._appends

    def _topic_dir(self, topic: str) -> Path:
        return self.root / "topics" / topic

    def spec(self, topic: str) -> TopicSpec:
        meta = self._topic_dir(topic) / "topic.json"
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnknownTopicError(topic) from None
        return TopicSpec(topic, doc["partitions"], doc["retention_ms"])

    def ensure_topic(self, spec: TopicSpec) -> None:
        if not _TOPIC_NAME.match(spec.name):
            raise LogError(f"invalid topic name {spec.name!r}: use letters, digits, '.', '_', '-'")
        if spec.partitions < 1:
            raise LogError(f"topic {spec.name!r}: partitions must be >= 1, got {spec.partitions}")
        directory = self._topic_dir(spec.name)
        if (directory / "topic.json").exists():
            return
        for p in range(spec.partitions):
            (directory / str(p)).mkdir(parents=True, exist_ok=True)
        meta = {"partitions": spec.partitions, "retention_ms": spec.retention_ms}
        write_json_atomic(directory / "topic.json", meta)

    def topics(self) -> list[TopicSpec]:
        found = (p.parent.name for p in (self.root / "topics").glob("*/topic.json"))
        return [self.spec(name) for name in sorted(found)]

    def partitions(self, topic: str) -> list[PartitionInfo]:
        spec = self.spec(topic)
        return [self._partition_info(topic, p) for p in range(spec.partitions)]

    def _partition_info(self, topic: str, partition: int) -> PartitionInfo:
        directory = self._topic_dir(topic) / str(partition)
        segments = seg.list_segments(directory)
        if not segments:
            return PartitionInfo(topic, partition, 0, 0)
        end = seg.scan_cached(segments[-1], seg.segment_base(segments[-1])).next_offset
        return PartitionInfo(topic, partition, seg.segment_base(segments[0]), end)

    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        path = self.root / "groups" / group / f"{topic}.json"
        try:
            return {int(p): o for p, o in json.loads(path.read_text(encoding="utf-8")).items()}
        except FileNotFoundError:
            return {}

    def groups(self) -> list[str]:
        return sorted(p.name for p in (self.root / "groups").iterdir() if p.is_dir())

    def producer(self) -> LocalProducer:
        return LocalProducer(self)

    def consumer(self, group: str, topics: Sequence[str]) -> LocalConsumer:
        return LocalConsumer(self, group, topics)

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete closed segments whose newest record is older than the topic's retention.

        Timestamps are append times, so a closed segment's mtime is its newest timestamp.
        The active segment is kept, so a partition's end offset never goes back.
        """
        now_s = (now_ms if now_ms is not None else time.time() * 1000) / 1000
        dropped = 0
        for spec in self.topics():
            for p in range(spec.partitions):
                segments = seg.list_segments(self._topic_dir(spec.name) / str(p))
                for path in segments[:-1]:
                    if path.stat().st_mtime < now_s - spec.retention_ms / 1000:
                        dropped += seg.scan(path, seg.segment_base(path)).records
                        path.unlink()
        return dropped


class LocalProducer(Producer):
    def __init__(self, log: LocalLog) -> None:
        self._log = log
        self._writers: dict[TopicPartition, PartitionWriter] = {}
        self._pending: dict[TopicPartition, list[tuple[bytes | None, bytes]]] = {}
        self._pending_bytes = 0
        self._counter = 0
        self._specs: dict[str, TopicSpec] = {}
        self._lock = threading.RLock()

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.send_many(topic, ((key, value),))

    def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        with self._lock:
            spec = self._specs.get(topic) or self._specs.setdefault(topic, self._log.spec(topic))
            queues = [self._pending.setdefault((topic, p), []) for p in range(spec.partitions)]
            size = 0
            for key, value in records:
                p = partition_for(key, spec.partitions, self._counter)
                self._counter += 1
                queues[p].append((key, value))
                size += len(value) + 40
            self._pending_bytes += size
            if self._pending_bytes >= _FLUSH_BYTES:
                self._write_pending()

    def _write_pending(self) -> None:
        pending, self._pending, self._pending_bytes = self._pending, {}, 0
        wrote = False
        for (topic, p), records in sorted(pending.items()):
            if records:
                self._writer(topic, p).append(records)
                wrote = True
        if wrote:
            self._log.notify_appended()

    def _writer(self, topic: str, partition: int) -> PartitionWriter:
        writer = self._writers.get((topic, partition))
        if writer is None:
            c = self._log.config
            directory = self._log._topic_dir(topic) / str(partition)
            writer = PartitionWriter(directory, c.segment_bytes, c.fsync, c.fsync_interval_ms)
            self._writers[(topic, partition)] = writer
        return writer

    def flush(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            try:
                self._write_pending()
            except OSError as e:
                from homefeed.log.base import DeliveryError

                raise DeliveryError(f"local log write failed: {e}") from e

    def close(self) -> None:
        with self._lock:
            self.flush()
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()


class LocalConsumer(Consumer):
    def __init__(self, log: LocalLog, group: str, topics: Sequence[str]) -> None:
        self._log = log
        self.group = group
        group_dir = log.root / "groups" / group
        group_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(group_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LogError(
                f"consumer group {group!r} already has a live consumer on {log.root}; "
                "the local log runs one consumer per group"
            ) from None
        self._readers: dict[TopicPartition, PartitionReader] = {}
        for topic in topics:
            committed = log.group_offsets(group, topic)
            for info in log.partitions(topic):
                start = committed.get(info.partition, info.start_offset)
                directory = log._topic_dir(topic) / str(info.partition)
                self._readers[(topic, info.partition)] = PartitionReader(
                    topic, info.partition, directory, start
                )
        self._next = 0

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._readers)

    def poll(self, max_records: int = 10_000, timeout_s: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self._log.appends
            records = self._read_round(max_records)
            if records or time.monotonic() >= deadline:
                return records
            self._log.wait_for_append(seen, min(IDLE_WAIT_S, max(0.0, deadline - time.monotonic())))

    def _read_round(self, max_records: int) -> list[Record]:
        """Read from each partition in turn, starting after the one that went first last time."""
        keys = self.assignment()
        if not keys:
            return []
        out: list[Record] = []
        share = max(1, max_records // len(keys))
        for i in range(len(keys)):
            reader = self._readers[keys[(self._next + i) % len(keys)]]
            out += reader.read(min(share, max_records - len(out)))
            if len(out) >= max_records:
                break
        self._next = (self._next + 1) % len(keys)
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._reader(topic, partition).seek(offset)

    def position(self, topic: str, partition: int) -> int:
        return self._reader(topic, partition).offset

    def _reader(self, topic: str, partition: int) -> PartitionReader:
        try:
            return self._readers[(topic, partition)]
        except KeyError:
            raise LogError(f"{topic}[{partition}] is not assigned to this consumer") from None

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        by_topic: dict[str, dict[int, int]] = {}
        for (topic, partition), offset in offsets.items():
            self._reader(topic, partition)
            by_topic.setdefault(topic, {})[partition] = offset
        for topic, changes in by_topic.items():
            current = self._log.group_offsets(self.group, topic)
            current.update(changes)
            path = self._log.root / "groups" / self.group / f"{topic}.json"
            write_json_atomic(path, {str(p): o for p, o in sorted(current.items())})

    def committed(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for topic in {t for t, _ in self._readers}:
            for p, o in self._log.group_offsets(self.group, topic).items():
                out[(topic, p)] = o
        return out

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the group lock
            self._lock_fd = -1
