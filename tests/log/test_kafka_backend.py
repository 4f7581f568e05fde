"""Kafka-specific behaviour of ``KafkaLog``, against a real Tansu broker (no mocks)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from homefeed.config import KafkaLogConfig
from homefeed.log.base import DeliveryError, LogError, TopicSpec
from homefeed.log.kafka import KafkaLog
from homefeed.testing.broker import TansuBroker

pytestmark = pytest.mark.kafka

Unique = Callable[[str], str]


@pytest.fixture
def kafka_log(tansu_broker: TansuBroker) -> KafkaLog:
    return KafkaLog(KafkaLogConfig(bootstrap_servers=tansu_broker.bootstrap_servers))


def test_created_topic_carries_retention_and_append_time(
    kafka_log: KafkaLog, tansu_broker: TansuBroker, unique: Unique
) -> None:
    topic = unique("t")
    kafka_log.ensure_topic(TopicSpec(topic, 2, retention_ms=12_345_678))
    admin = AdminClient({"bootstrap.servers": tansu_broker.bootstrap_servers})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["retention.ms"].value == "12345678"
    assert configs["message.timestamp.type"].value == "LogAppendTime"


def test_end_offset_counts_every_record_of_large_batches(
    kafka_log: KafkaLog, unique: Unique
) -> None:
    # Tansu's ListOffsets reports the last batch's base offset + 1; partitions() must not.
    topic = unique("t")
    kafka_log.ensure_topic(TopicSpec(topic, 1))
    with kafka_log.producer() as producer:
        for _ in range(3):
            producer.send_many(topic, [(None, b"x" * 100)] * 7000)
            producer.flush()
            producer.send(topic, b"tail")  # a one-record batch at the end
            producer.flush()
    [info] = kafka_log.partitions(topic)
    assert (info.start_offset, info.end_offset) == (0, 21_003)


def test_flush_raises_delivery_error_when_broker_is_gone(unique: Unique) -> None:
    with TansuBroker() as broker:  # its own broker: this test kills it
        log = KafkaLog(KafkaLogConfig(bootstrap_servers=broker.bootstrap_servers))
        topic = unique("t")
        log.ensure_topic(TopicSpec(topic, 1))
        producer = log.producer()
        producer.send(topic, b"acknowledged")
        producer.flush(timeout_s=10)

        broker.stop()
        producer.send_many(topic, [(None, b"lost")] * 100)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="not acknowledged"):
            producer.flush(timeout_s=2.0)
        assert time.monotonic() - started < 10
        producer.flush(timeout_s=1.0)  # the failed records were purged, not left to re-send
        started = time.monotonic()
        producer.close()  # nothing left to flush: no wait for the dead broker
        producer.close()  # closing twice is harmless
        assert time.monotonic() - started < 5
        log.close()


def test_settings_from_config_are_merged(tansu_broker: TansuBroker) -> None:
    config = KafkaLogConfig(
        bootstrap_servers=tansu_broker.bootstrap_servers,
        producer={"linger.ms": 0},
        consumer={"fetch.wait.max.ms": 50, "group.id": "ignored"},
    )
    log = KafkaLog(config)
    producer_conf = log.producer_config()
    assert producer_conf["linger.ms"] == 0
    assert producer_conf["enable.idempotence"] is True
    assert producer_conf["acks"] == "all"
    consumer_conf = log.consumer_config("persister")
    assert consumer_conf["fetch.wait.max.ms"] == 50
    assert consumer_conf["group.id"] == "persister"  # the group is the caller's, not config's
    assert consumer_conf["enable.auto.commit"] is False


def test_two_consumers_of_one_group_each_read_every_partition(
    kafka_log: KafkaLog, unique: Unique
) -> None:
    # assign(), not subscribe(): no group membership, so no rebalance splits the partitions.
    topic, group = unique("t"), unique("g")
    kafka_log.ensure_topic(TopicSpec(topic, 3))
    with kafka_log.producer() as producer:
        producer.send_many(topic, [(f"k{i}".encode(), b"v") for i in range(300)])
        producer.flush()
    with kafka_log.consumer(group, [topic]) as a, kafka_log.consumer(group, [topic]) as b:
        for consumer in (a, b):
            assert consumer.assignment() == [(topic, 0), (topic, 1), (topic, 2)]
            got = 0
            deadline = time.monotonic() + 10
            while got < 300 and time.monotonic() < deadline:
                got += len(consumer.poll(max_records=1000, timeout_s=0.5))
            assert got == 300


def test_unassigned_partitions_are_refused(kafka_log: KafkaLog, unique: Unique) -> None:
    topic = unique("t")
    kafka_log.ensure_topic(TopicSpec(topic, 1))
    with kafka_log.consumer(unique("g"), [topic]) as consumer:
        with pytest.raises(LogError, match="not assigned"):
            consumer.commit({(topic, 5): 1})
        with pytest.raises(LogError, match="not assigned"):
            consumer.seek(topic, 5, 0)
        with pytest.raises(LogError, match="not assigned"):
            consumer.position("other", 0)


def test_oversized_record_raises_delivery_error(kafka_log: KafkaLog, unique: Unique) -> None:
    topic = unique("t")
    kafka_log.ensure_topic(TopicSpec(topic, 1))
    with kafka_log.producer() as producer:
        with pytest.raises(DeliveryError, match="rejected"):
            producer.send_many(topic, [(None, b"ok"), (None, b"x" * 2_000_000)])
        producer.flush()
    [info] = kafka_log.partitions(topic)
    assert info.end_offset == 1  # the record before the oversized one was delivered
