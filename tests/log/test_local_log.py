"""What only the embedded log has to prove: its files, its locks, its crash recovery."""

import multiprocessing
import os
import time

import pytest

from homefeed.config import LocalLogConfig
from homefeed.log.base import LogError, TopicSpec
from homefeed.log.local import LocalLog
from homefeed.log.local import segment as seg


def _log(tmp_path, **kw) -> LocalLog:
    return LocalLog(LocalLogConfig(path=str(tmp_path / "log"), **kw))


def _read_all(log: LocalLog, topic: str, group: str = "reader"):
    with log.consumer(group, [topic]) as c:
        out = []
        while batch := c.poll(10_000, 0.05):
            out += batch
    return out


def test_torn_tail_is_invisible_then_truncated(tmp_path):
    log = _log(tmp_path)
    log.ensure_topic(TopicSpec("t", 1))
    with log.producer() as p:
        p.send_many("t", [(None, b"a"), (None, b"b")])
    segment = seg.list_segments(tmp_path / "log/topics/t/0")[0]
    # A writer killed mid-frame leaves half a frame behind.
    with segment.open("ab") as f:
        f.write(seg.encode(2, 0, None, b"never acknowledged")[:10])
    assert [r.value for r in _read_all(log, "t", "g1")] == [b"a", b"b"]
    assert log.partitions("t")[0].end_offset == 2
    with log.producer() as p:
        p.send("t", b"c")
    assert [(r.offset, r.value) for r in _read_all(log, "t", "g2")] == [
        (0, b"a"),
        (1, b"b"),
        (2, b"c"),
    ]


def test_corrupt_frame_stops_readers(tmp_path):
    log = _log(tmp_path)
    log.ensure_topic(TopicSpec("t", 1))
    with log.producer() as p:
        p.send_many("t", [(None, b"first"), (None, b"second")])
    segment = seg.list_segments(tmp_path / "log/topics/t/0")[0]
    data = bytearray(segment.read_bytes())
    data[-2] ^= 0xFF  # flip a bit in the last frame's value
    segment.write_bytes(bytes(data))
    assert [r.value for r in _read_all(log, "t")] == [b"first"]


def _produce(path: str, worker: int, count: int) -> None:
    log = LocalLog(LocalLogConfig(path=path))
    with log.producer() as p:
        for i in range(count):
            p.send("t", f"{worker}:{i}".encode(), key=b"same-key")
            if i % 50 == 0:
                p.flush()


def test_writers_in_several_processes_never_share_an_offset(tmp_path):
    log = _log(tmp_path)
    log.ensure_topic(TopicSpec("t", 2))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_produce, args=(str(tmp_path / "log"), w, 500)) for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    records = _read_all(log, "t")
    assert len(records) == 1500
    assert len({(r.partition, r.offset) for r in records}) == 1500
    for worker in range(3):  # each writer's records keep their order
        mine = [
            int(r.value.split(b":")[1])
            for r in records
            if r.value.startswith(f"{worker}:".encode())
        ]
        assert mine == list(range(500))


def test_segments_roll_and_retention_drops_old_closed_segments(tmp_path):
    log = _log(tmp_path, segment_bytes=2_000)
    log.ensure_topic(TopicSpec("t", 1, retention_ms=3_600_000))
    with log.producer() as p:
        for i in range(100):
            p.send("t", b"x" * 100 + str(i).encode())
            p.flush()
    segments = seg.list_segments(tmp_path / "log/topics/t/0")
    assert len(segments) > 3
    old = time.time() - 7200
    for s in segments[:2]:
        os.utime(s, (old, old))
    dropped = log.enforce_retention()
    info = log.partitions("t")[0]
    assert dropped > 0
    assert info.start_offset == dropped and info.end_offset == 100
    # A group whose committed offset fell out of retention resumes at the start offset.
    records = _read_all(log, "t", "late-group")
    assert records[0].offset == info.start_offset and records[-1].offset == 99


def test_active_segment_is_never_removed(tmp_path):
    log = _log(tmp_path)
    log.ensure_topic(TopicSpec("t", 1, retention_ms=1))
    with log.producer() as p:
        p.send("t", b"x")
    assert log.enforce_retention(now_ms=int(time.time() * 1000) + 10_000_000) == 0
    assert log.partitions("t")[0].end_offset == 1


def test_one_live_consumer_per_group(tmp_path):
    log = _log(tmp_path)
    log.ensure_topic(TopicSpec("t", 1))
    with log.consumer("g", ["t"]), pytest.raises(LogError, match="already has a live consumer"):
        log.consumer("g", ["t"])
    log.consumer("g", ["t"]).close()  # released on close


def test_invalid_topic_names_are_refused(tmp_path):
    with pytest.raises(LogError, match="invalid topic name"):
        _log(tmp_path).ensure_topic(TopicSpec("../escape", 1))
