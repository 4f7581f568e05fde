"""The reaction consumer: events logged through the SDK reach the online store.

Runs on the embedded local log with the local store and with Redis (a real redis-server).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from homefeed.config import LocalLogConfig, SdkConfig
from homefeed.events import EventLogger
from homefeed.log.local import LocalLog
from homefeed.models.data import Action
from homefeed.serving.online import OnlineStore, open_online_store
from homefeed.serving.online.reactions import TOPICS, ReactionConsumer
from homefeed.serving.settings import OnlineStoreConfig
from homefeed.testing.events import valid_event
from homefeed.testing.redis import RedisServer

EVENT_TIME = "2026-11-21T13:05:01.123Z"
EVENT_MS = 1_795_266_301_123


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    config = OnlineStoreConfig()  # type: ignore[call-arg]
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        config = OnlineStoreConfig(
            backend="redis", redis_url=server.url, key_prefix=f"t{uuid.uuid4().hex[:10]}:"
        )
    s = open_online_store(config)
    yield s
    s.close()


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[LocalLog]:
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "log"), fsync="never"))
    yield log
    log.close()


@pytest.fixture
def sdk(event_log: LocalLog) -> Iterator[EventLogger]:
    logger = EventLogger(event_log, config=SdkConfig(linger_ms=10), strict=True)
    yield logger
    logger.close()


def _wait_for(condition: object, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_a_hide_logged_through_the_sdk_reaches_the_hidden_set(
    event_log: LocalLog, sdk: EventLogger, store: OnlineStore
) -> None:
    consumer = ReactionConsumer(event_log, store)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        sdk.log(valid_event("hide", user_id=42, pin_id=777, event_time=EVENT_TIME))
        sdk.flush()
        assert _wait_for(lambda: 777 in store.user_state([42])[0].hidden)
        (state,) = store.user_state([42])
        assert state.recent_pins.tolist() == [777]
        assert state.recent_actions.tolist() == [int(Action.HIDE)]
        assert state.recent_times.tolist() == [EVENT_MS]
        assert _wait_for(lambda: sum(consumer.lag().values()) == 0)
    finally:
        stop.set()
        thread.join()
        consumer.close()


def test_every_engagement_topic_is_applied_with_topics(
    event_log: LocalLog, sdk: EventLogger, store: OnlineStore
) -> None:
    def topics_of(pins: Sequence[int]) -> list[tuple[str, ...]]:
        return [("art",) if p == 5 else () for p in pins]

    for kind in ("impression", "closeup", "click", "save", "hide"):
        sdk.log(valid_event(kind, user_id=1, pin_id=5, event_time=EVENT_TIME))
    sdk.flush()
    consumer = ReactionConsumer(event_log, store, pin_topics=topics_of)
    assert sum(consumer.lag().values()) == 5
    while consumer.step():
        pass
    assert sum(consumer.lag().values()) == 0
    (state,) = store.user_state([1], now_ms=EVENT_MS)
    assert sorted(state.recent_actions.tolist()) == [1, 2, 3, 5]  # impressions are not engagements
    assert state.seen == {5: EVENT_MS}
    assert state.topic_affinity == pytest.approx({"art": 0.5 + 1.0 + 3.0 - 2.0})
    assert store.pin_counters([5], since_ms=0).tolist() == [[1, 1, 1, 1]]
    consumer.close()


def test_a_batch_redelivered_after_a_crash_counts_once(
    event_log: LocalLog, sdk: EventLogger, store: OnlineStore
) -> None:
    sdk.log_many(valid_event("impression", user_id=u, pin_id=9) for u in range(10))
    sdk.flush()
    crashing = ReactionConsumer(event_log, store)

    def crash(offsets: object) -> None:
        raise RuntimeError("killed between apply and commit")

    crashing._consumer.commit = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="killed"):
        crashing.step()
    crashing.close()
    assert store.pin_counters([9], since_ms=0)[0, 0] == 10
    again = ReactionConsumer(event_log, store)
    assert sum(again.lag().values()) == 10  # nothing was committed
    while again.step():
        pass
    assert again.stats.duplicates == 10 and again.stats.applied == 0
    assert store.pin_counters([9], since_ms=0)[0, 0] == 10
    assert sum(again.lag().values()) == 0
    again.close()


def test_a_malformed_record_is_counted_and_skipped(
    event_log: LocalLog, sdk: EventLogger, store: OnlineStore
) -> None:
    click_topic = next(t for t in TOPICS if t.endswith(".click"))
    consumer = ReactionConsumer(event_log, store)
    with event_log.producer() as producer:
        producer.send(click_topic, b"not json", key=b"3")
        producer.flush()
    sdk.log(valid_event("click", user_id=3, pin_id=4, event_time=EVENT_TIME))
    sdk.flush()
    while consumer.step():
        pass
    assert consumer.stats.malformed == 1
    assert store.user_state([3])[0].recent_pins.tolist() == [4]
    assert sum(consumer.lag().values()) == 0
    consumer.close()


def test_a_commit_interval_batches_commits_and_close_commits_the_rest(
    event_log: LocalLog, sdk: EventLogger, store: OnlineStore
) -> None:
    consumer = ReactionConsumer(event_log, store, commit_interval_s=3600.0)
    consumer.step()  # nothing yet; the first step commits (nothing) and starts the interval
    sdk.log_many(valid_event("click", user_id=u, pin_id=3) for u in range(6))
    sdk.flush()
    while consumer.step():
        pass
    assert consumer.stats.applied == 6
    assert sum(consumer.lag().values()) == 6  # applied, not yet committed
    consumer.close()
    again = ReactionConsumer(event_log, store)
    assert sum(again.lag().values()) == 0  # close committed them
    again.close()
    with pytest.raises(ValueError, match="commit_interval_s = -1"):
        ReactionConsumer(event_log, store, commit_interval_s=-1)


def test_yielding_between_chunks_applies_every_record_once(
    event_log: LocalLog, sdk: EventLogger, store: OnlineStore
) -> None:
    sdk.log_many(valid_event("impression", user_id=u % 7, pin_id=u) for u in range(300))
    sdk.flush()
    consumer = ReactionConsumer(event_log, store, yield_s=0.0001, max_records=1000)
    polls = []
    while n := consumer.step():
        polls.append(n)
    assert sum(polls) == 300 and consumer.stats.applied == 300
    assert max(polls) > 128  # so a poll was applied in chunks of at most 128
    assert consumer.stats.batches == sum(-(-n // 128) for n in polls)
    consumer.close()
    with pytest.raises(ValueError, match=r"yield_s = -0\.5"):
        ReactionConsumer(event_log, store, yield_s=-0.5)


def test_impressions_of_the_servers_own_requests_are_skipped(
    event_log: LocalLog, sdk: EventLogger, store: OnlineStore
) -> None:
    own, other = "ab12cd34ef56ab78", "0011223344556677"
    sdk.log_many(
        valid_event("impression", user_id=1, pin_id=p, request_id=f"{own}{p:016x}")
        for p in range(5)
    )
    sdk.log(valid_event("impression", user_id=1, pin_id=50, request_id=f"{other}{0:016x}"))
    sdk.log(valid_event("impression", user_id=1, pin_id=51))  # request_id "req-1"
    sdk.log(valid_event("save", user_id=1, pin_id=3))  # engagement: applied whoever served it
    sdk.flush()
    consumer = ReactionConsumer(event_log, store, skip_request_prefix=own)
    while consumer.step():
        pass
    assert consumer.stats.skipped == 5 and consumer.stats.applied == 3
    (state,) = store.user_state([1])
    assert set(state.seen) == {50, 51}
    assert state.recent_pins.tolist() == [3]
    assert sum(consumer.lag().values()) == 0  # skipped records are committed past too
    consumer.close()
    with pytest.raises(ValueError, match="skip_request_prefix"):
        ReactionConsumer(event_log, store, skip_request_prefix="")
