"""The event log contract (homefeed/log/base.py), run against every backend.

Each test uses fresh topic and group names: the Kafka backend shares one broker per session.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest

from homefeed.log.base import Consumer, EventLog, Record, TopicSpec, UnknownTopicError

Unique = Callable[[str], str]


def make_topic(log: EventLog, unique: Unique, partitions: int = 3) -> str:
    name = unique("t")
    log.ensure_topic(TopicSpec(name, partitions, retention_ms=3_600_000))
    return name


def produce(log: EventLog, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    with log.producer() as producer:
        producer.send_many(topic, records)
        producer.flush()


def consume(consumer: Consumer, count: int, timeout_s: float = 15.0) -> list[Record]:
    """Poll until ``count`` records arrived (or fail at the deadline); then expect no more."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count:
        assert time.monotonic() < deadline, f"only {len(out)} of {count} records in {timeout_s} s"
        out += consumer.poll(max_records=count - len(out), timeout_s=0.5)
    return out


def by_partition(records: list[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        out[r.partition].append(r)
    return out


def keyed(n: int, keys: int = 7) -> list[tuple[bytes | None, bytes]]:
    return [(f"user-{i % keys}".encode(), f"{i}".encode()) for i in range(n)]


def test_ensure_topic_is_idempotent_and_listed(event_log: EventLog, unique: Unique) -> None:
    name = unique("t")
    event_log.ensure_topic(TopicSpec(name, 3, retention_ms=7_200_000))
    event_log.ensure_topic(TopicSpec(name, 3, retention_ms=7_200_000))
    event_log.ensure_topic(TopicSpec(name, 5))  # an existing topic is left as it is
    other = make_topic(event_log, unique, partitions=1)

    specs = event_log.topics()
    names = [s.name for s in specs]
    assert names == sorted(names)
    assert TopicSpec(name, 3, 7_200_000) in specs
    assert TopicSpec(other, 1, 3_600_000) in specs
    assert len(event_log.partitions(name)) == 3


def test_unknown_topic(event_log: EventLog, unique: Unique) -> None:
    missing = unique("missing")
    with pytest.raises(UnknownTopicError):
        event_log.partitions(missing)
    with pytest.raises(UnknownTopicError):
        event_log.consumer(unique("g"), [missing])
    with event_log.producer() as producer, pytest.raises(UnknownTopicError):
        producer.send(missing, b"x")
    # Asking about a topic must not create it (Kafka brokers may auto-create on metadata).
    assert missing not in [s.name for s in event_log.topics()]


def test_empty_topic(event_log: EventLog, unique: Unique) -> None:
    topic = make_topic(event_log, unique)
    infos = event_log.partitions(topic)
    assert [(i.partition, i.start_offset, i.end_offset) for i in infos] == [
        (0, 0, 0),
        (1, 0, 0),
        (2, 0, 0),
    ]
    assert event_log.group_offsets(unique("g"), topic) == {}
    with event_log.consumer(unique("g"), [topic]) as consumer:
        assert consumer.assignment() == [(topic, 0), (topic, 1), (topic, 2)]
        started = time.monotonic()
        assert consumer.poll(max_records=100, timeout_s=0.3) == []
        assert time.monotonic() - started < 2.0
        assert consumer.committed() == {}


def test_round_trip_no_loss_no_duplicates(event_log: EventLog, unique: Unique) -> None:
    topic = make_topic(event_log, unique)
    records = keyed(3000, keys=50) + [(None, f"unkeyed-{i}".encode()) for i in range(500)]
    before_ms = time.time() * 1000
    with event_log.producer() as producer:
        producer.send(topic, b"single", key=b"k")
        producer.send_many(topic, records)
        producer.flush()
    after_ms = time.time() * 1000
    sent = Counter(value for _, value in records) + Counter([b"single"])

    with event_log.consumer(unique("g"), [topic]) as consumer:
        assert len(consumer.poll(max_records=10, timeout_s=5.0)) <= 10
        consumer.seek(topic, 0, 0)
        consumer.seek(topic, 1, 0)
        consumer.seek(topic, 2, 0)
        got = consume(consumer, sum(sent.values()))
        assert consumer.poll(max_records=100, timeout_s=0.3) == []

    assert Counter(r.value for r in got) == sent
    assert {r.topic for r in got} == {topic}
    # Timestamps are append times: between the first send and the end of flush (allowing
    # for the producer's clock where the broker keeps create time, see kafka.py).
    assert all(before_ms - 5000 <= r.timestamp_ms <= after_ms + 5000 for r in got)


def test_offsets_and_partition_info(event_log: EventLog, unique: Unique) -> None:
    topic = make_topic(event_log, unique)
    produce(event_log, topic, keyed(5000, keys=20))
    with event_log.consumer(unique("g"), [topic]) as consumer:
        got = by_partition(consume(consumer, 5000))

    infos = event_log.partitions(topic)
    assert [i.partition for i in infos] == [0, 1, 2]
    for info in infos:
        offsets = [r.offset for r in got[info.partition]]
        assert offsets[0] == 0 == info.start_offset
        assert all(a < b for a, b in itertools.pairwise(offsets))
        # end_offset is the offset the next record gets: one past the last record.
        assert info.end_offset == offsets[-1] + 1
    assert sum(i.end_offset - i.start_offset for i in infos) == 5000


def test_partitions_of_several_topics_equals_each(event_log: EventLog, unique: Unique) -> None:
    first, second = make_topic(event_log, unique), make_topic(event_log, unique)
    produce(event_log, first, keyed(300, keys=7))
    produce(event_log, second, keyed(40, keys=3))
    together = event_log.partitions_of([first, second])
    assert together == event_log.partitions(first) + event_log.partitions(second)
    assert sum(i.end_offset for i in together) == 340


def test_same_key_same_partition_in_order(event_log: EventLog, unique: Unique) -> None:
    topic = make_topic(event_log, unique, partitions=4)
    records = keyed(2000, keys=40)
    produce(event_log, topic, records)
    with event_log.consumer(unique("g"), [topic]) as consumer:
        got = consume(consumer, len(records))

    partitions_of: dict[bytes | None, set[int]] = defaultdict(set)
    values_of: dict[bytes | None, list[int]] = defaultdict(list)
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        partitions_of[r.key].add(r.partition)
        values_of[r.key].append(int(r.value))
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({next(iter(p)) for p in partitions_of.values()}) > 1  # keys do spread out
    for key, values in values_of.items():
        assert values == sorted(values), f"records of {key!r} out of order"


def test_commit_and_restart_at_committed_offset(event_log: EventLog, unique: Unique) -> None:
    topic = make_topic(event_log, unique, partitions=2)
    produce(event_log, topic, keyed(400, keys=10))
    ends = {i.partition: i.end_offset for i in event_log.partitions(topic)}
    group = unique("g")
    with event_log.consumer(group, [topic]) as consumer:
        consume(consumer, 400)
        assert consumer.position(topic, 0) == ends[0]
        consumer.commit({(topic, 0): 5, (topic, 1): ends[1]})
        assert consumer.committed() == {(topic, 0): 5, (topic, 1): ends[1]}
        consumer.commit({(topic, 0): 7})  # a later commit replaces the earlier one
        assert consumer.committed() == {(topic, 0): 7, (topic, 1): ends[1]}
    assert event_log.group_offsets(group, topic) == {0: 7, 1: ends[1]}

    with event_log.consumer(group, [topic]) as consumer:
        assert consumer.position(topic, 0) == 7
        assert consumer.position(topic, 1) == ends[1]
        rest = consume(consumer, ends[0] - 7)
        assert [(r.partition, r.offset) for r in rest] == [(0, o) for o in range(7, ends[0])]
        assert consumer.poll(max_records=10, timeout_s=0.3) == []


def test_new_group_starts_at_start_offset(event_log: EventLog, unique: Unique) -> None:
    topic = make_topic(event_log, unique, partitions=2)
    produce(event_log, topic, keyed(100, keys=10))
    first = unique("g")
    with event_log.consumer(first, [topic]) as consumer:
        consume(consumer, 100)
        consumer.commit({(topic, 0): 3, (topic, 1): 4})

    second = unique("g")
    assert event_log.group_offsets(second, topic) == {}
    with event_log.consumer(second, [topic]) as consumer:
        starts = {i.partition: i.start_offset for i in event_log.partitions(topic)}
        assert consumer.position(topic, 0) == starts[0]
        assert consumer.position(topic, 1) == starts[1]
        assert consumer.committed() == {}
        assert len(consume(consumer, 100)) == 100
    assert event_log.group_offsets(first, topic) == {0: 3, 1: 4}


def test_seek_and_position(event_log: EventLog, unique: Unique) -> None:
    topic = make_topic(event_log, unique, partitions=1)
    produce(event_log, topic, [(None, f"{i}".encode()) for i in range(50)])
    with event_log.consumer(unique("g"), [topic]) as consumer:
        assert consumer.position(topic, 0) == 0
        consumer.seek(topic, 0, 20)
        assert consumer.position(topic, 0) == 20
        got = consume(consumer, 30)
        assert [r.offset for r in got] == list(range(20, 50))
        assert [r.value for r in got] == [f"{i}".encode() for i in range(20, 50)]
        assert consumer.position(topic, 0) == 50

        consumer.seek(topic, 0, 10)  # back over records already read
        assert consumer.position(topic, 0) == 10
        again = consume(consumer, 5)
        assert [r.offset for r in again] == list(range(10, 15))
        assert consumer.position(topic, 0) == 15
