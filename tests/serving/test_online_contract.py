"""The online store contract (homefeed/serving/online/base.py), on every backend.

Redis runs on a real redis-server started by the fixture; a missing server fails, never skips.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from homefeed.models.data import Action
from homefeed.serving.online import OnlineStore, OnlineStoreError, Reaction, open_online_store
from homefeed.serving.online.base import HOUR_MS
from homefeed.serving.online.local import LocalOnlineStore
from homefeed.serving.settings import OnlineStoreConfig
from homefeed.testing.redis import RedisServer

T0 = 1_764_000_000_000  # an event time (ms), on an hour boundary plus some
HALF_LIFE_H = 2.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _config(backend: str, request: pytest.FixtureRequest, **kw: object) -> OnlineStoreConfig:
    settings: dict[str, object] = {
        "backend": backend,
        "recent_capacity": 5,
        "seen_capacity": 4,
        "dedup_capacity": 50,
        "affinity_half_life_hours": HALF_LIFE_H,
        "counter_window_hours": 3,
    }
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        settings |= {"redis_url": server.url, "key_prefix": f"t{uuid.uuid4().hex[:10]}:"}
    return OnlineStoreConfig.model_validate(settings | kw)


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    s = open_online_store(_config(request.param, request))
    yield s
    s.close()


def r(eid: str, user: int, pin: int, action: Action, t: int, *topics: str) -> Reaction:
    return Reaction(eid, user, pin, action, t, tuple(topics))


def test_unknown_user_and_pin_read_empty(store: OnlineStore) -> None:
    (state,) = store.user_state([123], now_ms=T0)
    assert state.user_id == 123
    assert len(state.recent_pins) == 0 and not state.hidden and not state.seen
    assert state.topic_affinity == {}
    assert store.pin_counters([5, 6], since_ms=0).tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]


def test_recent_is_a_ring_newest_first_without_impressions(store: OnlineStore) -> None:
    actions = [Action.CLICK, Action.SAVE, Action.CLOSEUP, Action.HIDE] * 2
    batch = [r(f"e{i}", 1, 100 + i, a, T0 + i) for i, a in enumerate(actions)]
    batch.append(r("imp", 1, 999, Action.IMPRESSION, T0 + 50))
    assert store.apply(batch) == 9
    (state,) = store.user_state([1], now_ms=T0)
    assert state.recent_pins.tolist() == [107, 106, 105, 104, 103]  # capacity 5
    assert state.recent_actions.tolist() == [int(a) for a in actions[::-1][:5]]
    assert state.recent_times.tolist() == [T0 + i for i in (7, 6, 5, 4, 3)]
    assert state.recent_pins.dtype == np.int64 and state.recent_actions.dtype == np.int8


def test_apply_is_idempotent_by_event_id(store: OnlineStore) -> None:
    batch = [
        r("a", 1, 10, Action.SAVE, T0, "art"),
        r("b", 1, 11, Action.HIDE, T0 + 1, "food"),
        r("c", 2, 10, Action.IMPRESSION, T0 + 2),
    ]
    assert store.apply(batch) == 3
    before = store.user_state([1, 2], now_ms=T0)
    counters = store.pin_counters([10, 11], since_ms=0)
    assert store.apply(batch) == 0
    assert store.apply([batch[1], r("d", 1, 12, Action.CLICK, T0 + 3)]) == 1
    after = store.user_state([1, 2], now_ms=T0)
    assert after[0].recent_pins.tolist() == [12, 11, 10]
    assert after[0].topic_affinity == pytest.approx(before[0].topic_affinity)
    assert after[1].seen == before[1].seen
    assert store.pin_counters([10, 11], since_ms=0).tolist() == counters.tolist()


def test_hidden_pins_and_seen_pins(store: OnlineStore) -> None:
    store.apply([r("h1", 1, 10, Action.HIDE, T0), r("h2", 1, 11, Action.HIDE, T0 + 1)])
    store.apply([r("i1", 1, 20, Action.IMPRESSION, T0 + 5)])
    store.mark_seen(1, [21, 22], T0 + 10)
    store.mark_seen(1, [20], T0 + 3)  # older than the impression: the latest time wins
    (state,) = store.user_state([1], now_ms=T0)
    assert state.hidden == {10, 11}
    assert state.seen == {20: T0 + 5, 21: T0 + 10, 22: T0 + 10}
    (other,) = store.user_state([2], now_ms=T0)
    assert other.hidden == frozenset() and other.seen == {}


def test_seen_keeps_the_latest_by_time(store: OnlineStore) -> None:
    store.mark_seen(1, [1, 2, 3], T0)
    store.mark_seen(1, [4, 5], T0 + 10)
    store.mark_seen(1, [6], T0 + 20)  # capacity 4: pins 1..3 at T0 are the oldest
    (state,) = store.user_state([1], now_ms=T0)
    assert len(state.seen) == 4
    assert {4, 5, 6} <= set(state.seen)
    assert all(t == T0 for p, t in state.seen.items() if p not in (4, 5, 6))


def test_affinity_adds_action_weights_and_decays(store: OnlineStore) -> None:
    half = HALF_LIFE_H * HOUR_MS
    store.apply([r("s", 1, 10, Action.SAVE, T0, "art", "food")])  # +3 split over 2 topics
    store.apply([r("h", 1, 11, Action.HIDE, int(T0 + half), "art")])  # -2, one half-life later
    (at_hide,) = store.user_state([1], now_ms=int(T0 + half))
    assert at_hide.topic_affinity["art"] == pytest.approx(1.5 * 0.5 - 2.0)
    assert at_hide.topic_affinity["food"] == pytest.approx(0.75)
    (later,) = store.user_state([1], now_ms=int(T0 + 3 * half))
    assert later.topic_affinity["food"] == pytest.approx(1.5 / 8)
    assert later.topic_affinity["art"] == pytest.approx((0.75 - 2.0) / 4)


def test_affinity_does_not_depend_on_apply_order(store: OnlineStore) -> None:
    events = [
        r(f"e{i}", 1, i, a, T0 + i * 997_000, "art")
        for i, a in enumerate([Action.SAVE, Action.CLICK, Action.HIDE, Action.CLOSEUP])
    ]
    store.apply(events)
    prefix = store.config.key_prefix + "reversed:"  # a second, empty store on the same backend
    other = open_online_store(store.config.model_copy(update={"key_prefix": prefix}))
    other.apply(events[::-1])
    now = T0 + 10 * HOUR_MS
    (a,) = store.user_state([1], now_ms=now)
    (b,) = other.user_state([1], now_ms=now)
    assert a.topic_affinity == pytest.approx(b.topic_affinity, rel=1e-9)
    other.close()


def test_pin_counters_by_hour_and_window(store: OnlineStore) -> None:
    hour = (T0 // HOUR_MS) * HOUR_MS
    store.apply(
        [
            r("i1", 1, 10, Action.IMPRESSION, hour),
            r("i2", 2, 10, Action.IMPRESSION, hour + 1),
            r("c1", 1, 10, Action.CLICK, hour + 2),
            r("s1", 2, 10, Action.SAVE, hour + HOUR_MS),
            r("h1", 3, 10, Action.HIDE, hour + 2 * HOUR_MS),
            r("x1", 3, 10, Action.CLOSEUP, hour + 2 * HOUR_MS),  # not a counter
            r("i3", 3, 11, Action.IMPRESSION, hour),
        ]
    )
    got = store.pin_counters([10, 11, 12], since_ms=0)
    assert got.tolist() == [[2, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert store.pin_counters([10], since_ms=hour + HOUR_MS).tolist() == [[0, 0, 1, 1]]
    # The window is 3 hours: an event 3 hours later drops the first hour.
    store.apply([r("i4", 1, 10, Action.IMPRESSION, hour + 3 * HOUR_MS)])
    assert store.pin_counters([10], since_ms=0).tolist() == [[1, 0, 1, 1]]
    # An event older than the window is not counted.
    store.apply([r("i5", 1, 10, Action.IMPRESSION, hour)])
    assert store.pin_counters([10], since_ms=0).tolist() == [[1, 0, 1, 1]]


def test_record_served_is_one_impression_per_pin(store: OnlineStore) -> None:
    hour = (T0 // HOUR_MS) * HOUR_MS
    store.record_served(1, [10, 11], hour + 5)
    store.record_served(2, [10], hour + 6)
    store.apply([r("c1", 2, 10, Action.CLICK, hour + 7)])
    (one, two) = store.user_state([1, 2], now_ms=hour)
    assert one.seen == {10: hour + 5, 11: hour + 5} and two.seen == {10: hour + 6}
    assert one.recent_pins.size == 0  # served is not engagement
    assert store.pin_counters([10, 11], since_ms=0).tolist() == [[2, 1, 0, 0], [1, 0, 0, 0]]
    store.record_served(1, [], hour)
    # The counter window (3 hours) holds as for applied impressions.
    store.record_served(1, [11], hour + 3 * HOUR_MS)
    assert store.pin_counters([11], since_ms=0).tolist() == [[1, 0, 0, 0]]
    store.record_served(1, [11], hour)  # older than the window: seen, not counted
    assert store.pin_counters([11], since_ms=0).tolist() == [[1, 0, 0, 0]]
    with pytest.raises(OnlineStoreError, match="pin_ids"):
        store.record_served(1, [-3], hour)


def test_batch_reads_keep_the_order_given(store: OnlineStore) -> None:
    store.apply([r(f"e{u}", u, 100 + u, Action.CLICK, T0) for u in range(1, 6)])
    states = store.user_state([5, 3, 9, 1], now_ms=T0)
    assert [s.user_id for s in states] == [5, 3, 9, 1]
    assert [s.recent_pins.tolist() for s in states] == [[105], [103], [], [101]]


def test_dedup_is_bounded_per_user(store: OnlineStore) -> None:
    store.apply([r(f"e{i}", 1, i, Action.CLICK, T0 + i) for i in range(60)])  # capacity 50
    assert store.apply([r("e59", 1, 59, Action.CLICK, T0 + 59)]) == 0  # still remembered
    assert store.apply([r("e0", 1, 0, Action.CLICK, T0)]) == 1  # forgotten: applies again


def test_concurrent_applies_count_each_event_once(store: OnlineStore) -> None:
    batch = [r(f"e{i}", i % 7, 10, Action.IMPRESSION, T0 + i) for i in range(200)]
    applied: list[int] = []
    threads = [
        threading.Thread(target=lambda: applied.append(store.apply(batch))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(applied) == 200
    assert store.pin_counters([10], since_ms=0)[0, 0] == 200


def test_bad_ids_name_the_argument(store: OnlineStore) -> None:
    with pytest.raises(OnlineStoreError, match="user_ids"):
        store.user_state([-1])
    with pytest.raises(OnlineStoreError, match="pin_ids"):
        store.mark_seen(1, ["x"], T0)  # type: ignore[list-item]
    with pytest.raises(OnlineStoreError, match="event_id"):
        Reaction("", 1, 2, Action.CLICK, T0)


def test_local_snapshot_round_trip(tmp_path: Path) -> None:
    config = OnlineStoreConfig(snapshot_path=str(tmp_path / "online.pickle"), recent_capacity=3)
    store = LocalOnlineStore(config)
    store.apply([r(f"e{i}", 1, i, Action.HIDE, T0 + i, "art") for i in range(5)])
    store.close()
    again = LocalOnlineStore(config)
    (state,) = again.user_state([1], now_ms=T0)
    assert state.recent_pins.tolist() == [4, 3, 2]
    assert state.hidden == {0, 1, 2, 3, 4}
    assert again.apply([r("e1", 1, 1, Action.HIDE, T0 + 1)]) == 0  # dedup survives too
    again.apply([r("e9", 1, 9, Action.CLICK, T0 + 9)])
    assert again.user_state([1], now_ms=T0)[0].recent_pins.tolist() == [9, 4, 3]


def test_redis_unreachable_is_a_clear_error() -> None:
    from homefeed.testing.process import free_port

    config = OnlineStoreConfig(
        backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5
    )
    store = open_online_store(config)
    with pytest.raises(OnlineStoreError, match=r"redis online store at redis://127\.0\.0\.1"):
        store.user_state([1])
    store.close()
