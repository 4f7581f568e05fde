"""Reactions within seconds: the online overlay (pure functions) and the whole path over HTTP.

The end-to-end tests run the feed API (TestClient) on an ``OnlineBackend`` over a bundle
trained on a small simulated world, a real ``LocalLog``, the reaction consumer on its own
thread, and the local store or a real redis-server. Events go in through POST /v1/events and
come out as the next feed request's exclusions, candidates and features.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from homefeed.config import LocalLogConfig, ModelsConfig, RankerConfig, SdkConfig, SourceConfig
from homefeed.events.sdk import EventLogger
from homefeed.events.validate import new_event_id
from homefeed.log.local import LocalLog
from homefeed.models.bundle import ModelBundle
from homefeed.models.data import Action, TrainingData, action_weights
from homefeed.models.features import RECENT_PINS, CandidateSet, FeatureContext, build_features
from homefeed.models.online import (
    REALTIME,
    OnlineSignals,
    RealtimeCandidates,
    coengaged_pins,
    engagement_seeds,
    merged_recent_pins,
    online_exclusions,
    overlay_context,
    pixie_pins,
    realtime_candidates,
    recommend_with_recent,
    signals_from_recent,
    similar_content,
    topic_delta,
)
from homefeed.models.pipeline import train_bundle
from homefeed.serving.api.app import create_app
from homefeed.serving.api.backend import FeedBackend
from homefeed.serving.api.online_backend import (
    OnlineBackend,
    ReactionThread,
    signals_of,
    with_realtime_rows,
)
from homefeed.serving.api.service import FeedService
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.serving.online import (
    OnlineStore,
    OnlineStoreError,
    UserOnlineState,
    open_online_store,
)
from homefeed.serving.settings import OnlineStoreConfig
from homefeed.testing.events import valid_event
from homefeed.testing.models import simulated_training_data
from homefeed.testing.redis import RedisServer
from tests.serving.conftest import TestClient

HOUR_MS = 3_600_000
NOW = 1_800_000_000_000
TIMEOUT_S = 60.0  # generous: the machine is shared; no assertion is about time
MODELS = ModelsConfig(
    sources={
        "following": SourceConfig(k=100),
        "pixie": SourceConfig(k=150),
        "content": SourceConfig(k=150),
        "trending": SourceConfig(k=60),
    },
    ranker=RankerConfig(rounds=30, min_data_in_leaf=20, learning_rate=0.1),
)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return simulated_training_data()


@pytest.fixture(scope="module")
def bundle(data: TrainingData) -> ModelBundle:
    return train_bundle(data, MODELS)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _signals(user: int = 1, **arrays: object) -> OnlineSignals:
    return OnlineSignals(user, **arrays)  # type: ignore[arg-type]


def _engaged(pins: Sequence[int], actions: Sequence[Action], times: Sequence[int], **kw: object):
    return _signals(
        recent_pins=np.array(pins, np.int64),
        recent_actions=np.array([int(a) for a in actions], np.int8),
        recent_times=np.array(times, np.int64),
        **kw,
    )


def _primary_topic(data: TrainingData) -> dict[int, str]:
    pins = data.pins
    first = pins.topic_indptr[:-1]
    has = np.diff(pins.topic_indptr) > 0
    return {
        int(p): pins.topics[int(pins.topic_codes[s])]
        for p, s, h in zip(pins.pin_id.tolist(), first.tolist(), has.tolist(), strict=True)
        if h
    }


def _popular_pins(data: TrainingData) -> list[int]:
    eng = data.engagements
    pins, counts = np.unique(eng.pin_id[action_weights()[eng.action] > 0], return_counts=True)
    return pins[np.argsort(-counts, kind="stable")].tolist()


def _active_user(data: TrainingData) -> int:
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    return int(users[np.argmax(counts)])


# -- pure functions ------------------------------------------------------------------------


def test_signals_with_misaligned_arrays_name_the_field() -> None:
    with pytest.raises(ValueError, match="recent_times"):
        OnlineSignals(1, recent_pins=np.array([1, 2]), recent_actions=np.array([2, 2], np.int8))
    with pytest.raises(ValueError, match="seen_times"):
        OnlineSignals(1, seen_pins=np.array([1]))


def test_seeds_are_positive_engagements_weighted_by_action_and_age() -> None:
    signals = _engaged(
        [10, 11, 12, 13, 10],
        [Action.SAVE, Action.CLICK, Action.HIDE, Action.IMPRESSION, Action.CLICK],
        [NOW, NOW, NOW, NOW, NOW - 2 * HOUR_MS],
    )
    pins, weights = engagement_seeds(signals, NOW, half_life_ms=2 * HOUR_MS, max_seeds=10)
    assert pins.tolist() == [10, 11]  # the hide and the impression are no seeds
    assert weights == pytest.approx([3.0 + 0.5, 1.0])  # the old click counts half
    assert engagement_seeds(signals, NOW, half_life_ms=HOUR_MS, max_seeds=1)[0].tolist() == [10]
    with pytest.raises(ValueError, match="max_seeds"):
        engagement_seeds(signals, NOW, half_life_ms=HOUR_MS, max_seeds=0)


def test_exclusions_keep_every_hide_and_only_recent_seen() -> None:
    signals = _signals(
        hidden=np.array([5, 3]), seen_pins=np.array([7, 8]), seen_times=np.array([NOW, NOW - 10])
    )
    hidden, seen = online_exclusions(signals, since_ms=NOW - 5)
    assert hidden.tolist() == [3, 5] and seen.tolist() == [7]


def test_coengaged_pins_are_the_context_neighbours_scaled_by_seed_weight(bundle) -> None:
    ctx = bundle.context
    degree = np.diff(ctx.neighbour_indptr)
    seed = int(np.argmax(degree))
    lo, hi = ctx.neighbour_indptr[seed], ctx.neighbour_indptr[seed + 1]
    pins, scores = coengaged_pins(ctx, ctx.pins[[seed]], np.array([2.0]))
    expected = dict(zip(ctx.pins[ctx.neighbour_indices[lo:hi]].tolist(),
                        (2.0 * ctx.neighbour_weights[lo:hi]).tolist(), strict=True))  # fmt: skip
    assert dict(zip(pins.tolist(), scores.tolist(), strict=True)) == pytest.approx(expected)
    assert coengaged_pins(ctx, np.array([-5]), np.array([1.0]))[0].size == 0  # unknown pin


def test_pixie_walks_from_seeds_and_other_sources_yield_nothing(bundle, data) -> None:
    seeds = np.array(_popular_pins(data)[:3], np.int64)
    pins, counts = pixie_pins(bundle.sources["pixie"], seeds, np.ones(3), seed=7)
    assert len(pins) > 10 and np.all(counts > 0) and set(pins.tolist()) <= set(
        data.pins.pin_id.tolist())  # fmt: skip
    again = pixie_pins(bundle.sources["pixie"], seeds, np.ones(3), seed=7)
    assert pins.tolist() == again[0].tolist()  # seeded: deterministic
    assert pixie_pins(bundle.sources["following"], seeds, np.ones(3), seed=7)[0].size == 0


def test_similar_content_finds_pins_of_the_seed_topic(bundle, data) -> None:
    topic_of = _primary_topic(data)
    topic, _ = Counter(topic_of.values()).most_common(3)[-1]
    seed = next(p for p in _popular_pins(data) if topic_of.get(p) == topic)
    pins, scores = similar_content(bundle.sources["content"], np.array([seed]), np.ones(1), 20)
    top = pins[np.argsort(-scores)][:10]
    assert sum(topic_of.get(int(p)) == topic for p in top) >= 8


def test_realtime_candidates_exclude_seeds_and_exclusions(bundle, data) -> None:
    seeds = _popular_pins(data)[:3]
    signals = _engaged(seeds, [Action.SAVE] * 3, [NOW] * 3)
    found = realtime_candidates(bundle.context, bundle.sources, signals, NOW, 50)
    pins, scores = found.pins, found.scores
    assert 0 < len(pins) <= 50 and len(set(pins.tolist())) == len(pins)
    assert np.all(np.diff(scores) <= 0) and not set(seeds) & set(pins.tolist())
    banned = pins[:5]
    again = realtime_candidates(bundle.context, bundle.sources, signals, NOW, 50, exclude=banned)
    assert not set(banned.tolist()) & set(again.pins.tolist())
    assert set(found.proposals) == {"pixie", "content"}  # the bundle's sources among the queries
    for proposed, proposed_scores in found.proposals.values():
        assert np.all(np.diff(proposed_scores) <= 0) and not set(seeds) & set(proposed.tolist())
    hides_only = _engaged(seeds, [Action.HIDE] * 3, [NOW] * 3)
    assert not len(realtime_candidates(bundle.context, bundle.sources, hides_only, NOW, 50))


def _context_copy(ctx: FeatureContext) -> dict[str, object]:
    return {f.name: np.array(getattr(ctx, f.name), copy=True) for f in fields(ctx)}


def test_overlay_is_a_one_user_copy_and_never_touches_the_shared_context(bundle, data) -> None:
    ctx = bundle.context
    before = _context_copy(ctx)
    user = _active_user(data)
    u = int(np.searchsorted(ctx.users, user))
    saved = _popular_pins(data)[:2]
    topic = ctx.topics[3]
    signals = _engaged(saved, [Action.SAVE, Action.CLICK], [NOW, NOW - 1], user=user,
                       topic_affinity={topic: 4.0, "not-a-topic": 9.0})  # fmt: skip
    over = overlay_context(ctx, signals, NOW)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(ctx, name), value, err_msg=name)
    assert over.users.tolist() == [user] and over.pins is ctx.pins
    expected = ctx.user_topic[u] + topic_delta(ctx.topics, {topic: 4.0})
    np.testing.assert_allclose(over.user_topic[0], expected)
    assert over.user_topic[0, 3] == pytest.approx(ctx.user_topic[u, 3] + 4.0)
    assert over.user_recent_pins[0, :2].tolist() == saved
    assert over.user_counts[0, Action.SAVE] == ctx.user_counts[u, Action.SAVE] + 1
    assert overlay_context(ctx, _signals(user), NOW) is ctx


def test_overlay_without_news_gives_the_same_features(bundle, data) -> None:
    user = _active_user(data)
    cs = CandidateSet.gather(bundle.sources, bundle.ks, np.array([user]))
    only_seen = _signals(user, seen_pins=np.array([1]), seen_times=np.array([NOW]))
    base, _ = build_features(bundle.context, cs, bundle.context.as_of_ms)
    # A context of this user alone, with no online change, must give identical features.
    no_change = _engaged([], [], [], user=user, topic_affinity={bundle.context.topics[0]: 0.0})
    for signals in (only_seen, no_change):
        got, _ = build_features(overlay_context(bundle.context, signals, NOW), cs,
                                bundle.context.as_of_ms)  # fmt: skip
        np.testing.assert_array_equal(got, base)


def test_recent_pins_merge_online_first_without_duplicates() -> None:
    offline = np.array([7, 8, 9, *([-1] * (RECENT_PINS - 3))])
    signals = _engaged([8, 4, 5], [Action.CLICK, Action.HIDE, Action.SAVE], [3, 2, 1])
    assert merged_recent_pins(signals, offline)[:5].tolist() == [8, 5, 7, 9, -1]


def test_realtime_rows_join_the_pool_with_exact_scores(bundle, data) -> None:
    backend = OnlineBackend(bundle, data, open_online_store())
    user = _active_user(data)
    now = bundle.context.as_of_ms
    pool = backend.candidates(user, now)
    fresh = np.setdiff1d(data.pins.pin_id, pool.pins)[:4]
    topics = backend._topics_of(fresh)
    # Pixie's walk from the new pins found the last two (best first), content found none.
    walked = (fresh[[3, 2]], np.array([9.0, 4.0]))
    found = RealtimeCandidates(fresh, np.ones(4, np.float32), {"pixie": walked})
    grown = with_realtime_rows(pool, found, bundle, topics)
    assert grown.source_names[-1] == REALTIME and len(grown) == len(pool) + 4
    assert grown.pins[-4:].tolist() == fresh.tolist()
    assert all(grown.source_names[s] == REALTIME for s in grown.source[-4:])
    cs = grown.state
    assert isinstance(cs, CandidateSet) and len(cs) == len(grown)
    content = cs.sources.index("content")  # has a pair scorer: filled for the new rows
    assert np.all(np.isfinite(cs.scores[-4:, content]))
    pixie = cs.sources.index("pixie")
    assert cs.ranks[-4:, pixie].tolist() == [pixie_k := cs.ks[pixie] + 1, pixie_k, 2, 1]
    assert cs.scores[-2:, pixie].tolist() == [4.0, 9.0] and np.isnan(cs.scores[-4, pixie])
    following = cs.sources.index("following")
    assert np.all(cs.ranks[-4:, following] == cs.ks[following] + 1)
    assert backend.features(grown, now).features.shape == (len(grown), len(bundle.spec.names))


def test_recommend_with_recent_excludes_hides_and_follows_saves(bundle, data) -> None:
    user = _active_user(data)
    now = bundle.context.as_of_ms + HOUR_MS
    users = np.array([user, user + 10**9])  # the second has no recent events
    plain = bundle.recommend(users, 30, now_ms=now).pins
    topic_of = _primary_topic(data)
    topic = min((t for t, n in Counter(topic_of.values()).most_common(10) if n >= 60),
                key=lambda t: sum(topic_of.get(int(p)) == t for p in plain[0]))  # fmt: skip
    saves = [p for p in _popular_pins(data) if topic_of.get(p) == topic][:5]
    hidden = int(plain[0, 0])
    recent = {user: [(p, int(Action.SAVE), now - 1000) for p in saves]}
    recent[user].append((hidden, int(Action.HIDE), now - 10))
    got = recommend_with_recent(bundle, users, 30, None, now, recent)
    assert got.shape == (2, 30) and got[1].tolist() == plain[1].tolist()
    assert hidden not in got[0].tolist()
    share = [sum(topic_of.get(int(p)) == topic for p in row) for row in (plain[0], got[0])]
    assert share[1] > share[0]
    signals = signals_from_recent(user, recent[user], bundle.context, now)
    assert signals.recent_pins[0] == hidden and signals.hidden.tolist() == [hidden]
    assert signals.topic_affinity[topic] == pytest.approx(
        sum(3.0 / np.diff(bundle.context.pin_topic_indptr)[np.searchsorted(
            bundle.context.pins, p)] * 2 ** (-1000 / (12 * HOUR_MS)) for p in saves
            if topic_of[p] == topic), rel=0.2)  # fmt: skip


# -- the backend -----------------------------------------------------------------------------


class CountingStore(OnlineStore):
    """A store around another that counts reads and can be told to fail."""

    def __init__(self, inner: OnlineStore) -> None:
        self.inner, self.config = inner, inner.config
        self.reads, self.failing = 0, False

    def apply(self, reactions):  # type: ignore[no-untyped-def]
        return self.inner.apply(reactions)

    def user_state(self, user_ids, now_ms=None) -> list[UserOnlineState]:  # type: ignore[no-untyped-def]
        self.reads += 1
        if self.failing:
            raise OnlineStoreError("store down")
        return self.inner.user_state(user_ids, now_ms)

    def mark_seen(self, user_id, pin_ids, time_ms) -> None:  # type: ignore[no-untyped-def]
        if self.failing:
            raise OnlineStoreError("store down")
        self.inner.mark_seen(user_id, pin_ids, time_ms)

    def pin_counters(self, pin_ids, since_ms):  # type: ignore[no-untyped-def]
        return self.inner.pin_counters(pin_ids, since_ms)


class _NoLog:
    def log_many(self, events: object) -> list[object]:
        return []


def test_one_store_read_per_request_and_a_failing_store_degrades(bundle, data) -> None:
    store = CountingStore(open_online_store())
    backend = OnlineBackend(bundle, data, store)
    assert isinstance(backend, FeedBackend)
    clock = iter(range(NOW, NOW + 1000))
    config = FeedServiceConfig(session_items=60)  # type: ignore[call-arg]
    service = FeedService(backend, _NoLog(), config, clock_ms=lambda: next(clock))  # type: ignore[arg-type]
    user = _active_user(data)
    first = service.feed(user, 10, None)
    assert store.reads == 1
    assert set(store.inner.user_state([user])[0].seen) == {i.pin_id for i in first.items}
    store.failing = True
    page = service.feed(user, 10, None)  # served from the offline state, not failed
    assert len(page.items) == 10 and backend.store_errors == 2  # the read and mark_seen
    store.failing = False
    third = service.feed(user, 10, None)  # the store is back: its seen pins count again
    assert store.reads == 3
    assert not {i.pin_id for i in third.items} & {i.pin_id for i in first.items}


def test_signals_of_a_store_state() -> None:
    store = open_online_store()
    store.mark_seen(3, [9, 8], NOW)
    signals = signals_of(store.user_state([3], now_ms=NOW)[0])
    assert sorted(signals.seen_pins.tolist()) == [8, 9] and signals.seen_times.tolist() == [NOW] * 2
    assert signals.recent_pins.size == 0 and signals.hidden.size == 0


# -- end to end over HTTP --------------------------------------------------------------------


@dataclass
class Stack:
    client: TestClient
    backend: OnlineBackend
    reactions: ReactionThread
    service: FeedService


@pytest.fixture(params=["local", "redis"])
def stack(request: pytest.FixtureRequest, bundle, data, tmp_path: Path) -> Iterator[Stack]:
    config = OnlineStoreConfig()  # type: ignore[call-arg]
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"t{uuid.uuid4().hex[:10]}:"
        config = OnlineStoreConfig(backend="redis", redis_url=server.url, key_prefix=prefix)
    store = open_online_store(config)
    event_log = LocalLog(LocalLogConfig(path=str(tmp_path / "log"), fsync="never"))
    logger = EventLogger(event_log, config=SdkConfig(linger_ms=10), source="feed-api")
    # Wired as `homefeed serve` wires them: pages applied as served, their impressions skipped.
    backend = OnlineBackend(bundle, data, store, record_served=True)
    feed_config = FeedServiceConfig(session_items=120, max_limit=50)  # type: ignore[call-arg]
    app = create_app(backend, logger, feed_config)
    own = new_event_id.prefix
    with ReactionThread(event_log, store, data.pins, skip_request_prefix=own) as reactions:
        yield Stack(TestClient(app), backend, reactions, app.state.service)
    logger.close()
    event_log.close()
    store.close()


def _rfc3339(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _post(client: TestClient, kind: str, user: int, pins: Sequence[int]) -> None:
    when = _rfc3339(int(time.time() * 1000))
    events = [valid_event(kind, user_id=user, pin_id=int(p), event_time=when) for p in pins]
    body = client.post("/v1/events", json={"events": events}).json()
    assert body == {"accepted": len(pins), "rejected": []}, body


def _page(client: TestClient, user: int, limit: int, cursor: str | None = None) -> dict:
    params: dict[str, object] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
    response = client.get(f"/v1/users/{user}/feed", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _session_pins(stack: Stack, page: dict) -> list[int]:
    """Every pin of the session behind a page (read from the service, none of them served)."""
    cursor = stack.service.cursors.decode(page["next_cursor"])
    session = stack.service.sessions.get(cursor.session_id)
    assert session is not None
    return session.pins.tolist()


def _walk(client: TestClient, user: int) -> list[int]:
    page, pins = _page(client, user, 50), []
    while True:
        pins += [i["pin_id"] for i in page["items"]]
        if page["next_cursor"] is None:
            return pins
        page = _page(client, user, 50, page["next_cursor"])


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, "the reaction never reached the feed"
        time.sleep(0.02)


def test_a_hidden_pin_never_returns(stack: Stack, data) -> None:
    user = _active_user(data)
    first = _page(stack.client, user, 10)
    on_page = first["items"][0]["pin_id"]
    deep = _session_pins(stack, first)[60]  # ranked high, not served yet
    assert deep in _session_pins(stack, _page(stack.client, user, 1))  # it would come back
    _post(stack.client, "hide", user, [on_page, deep])
    # Each poll is a new session whose first pin only is served, so `deep` stays unserved.
    _until(lambda: deep not in _session_pins(stack, _page(stack.client, user, 1)))
    for _ in range(2):  # two whole new sessions, every page
        assert not {on_page, deep} & set(_walk(stack.client, user))
    excluded = stack.backend.exclusions(user, int(time.time() * 1000))
    assert {on_page, deep} <= set(excluded.hidden.tolist())


def test_served_pages_are_seen_and_counted_once(stack: Stack, data) -> None:
    user = _active_user(data)
    first = _page(stack.client, user, 10)
    second = _page(stack.client, user, 10, first["next_cursor"])
    served = [i["pin_id"] for i in first["items"] + second["items"]]
    consumer = stack.reactions.consumer
    # The impressions reach the log and the consumer, which skips them: served() applied them.
    _until(lambda: consumer.stats.skipped == len(served))
    _until(lambda: sum(consumer.lag().values()) == 0)
    (state,) = stack.backend.store.user_state([user])
    assert set(served) <= set(state.seen)
    counts = stack.backend.store.pin_counters(served, since_ms=0)
    assert counts[:, 0].tolist() == [1] * len(served)  # one impression each, not two
    assert consumer.stats.applied == 0


def test_a_pin_hidden_mid_session_is_skipped_on_later_pages(stack: Stack, data) -> None:
    user = _active_user(data)
    first = _page(stack.client, user, 10)
    later = _session_pins(stack, first)[10:30]  # the next two pages, ranked, not served yet
    _post(stack.client, "hide", user, later[:3])
    _until(lambda: set(later[:3]) <= set(
        stack.backend.exclusions(user, int(time.time() * 1000)).hidden.tolist()))  # fmt: skip
    second = _page(stack.client, user, 10, first["next_cursor"])
    third = _page(stack.client, user, 10, second["next_cursor"])
    shown = [i["pin_id"] for i in second["items"] + third["items"]]
    assert not set(later[:3]) & set(shown)
    assert shown == [p for p in later if p not in later[:3]]  # the rest, in session order


def _share(stack: Stack, page: dict, topic: str, topic_of: dict[int, str]) -> tuple[float, float]:
    """Share of ``topic`` on the page and in its whole session."""
    on_page = [topic_of.get(i["pin_id"]) == topic for i in page["items"]]
    session = [topic_of.get(p) == topic for p in _session_pins(stack, page)]
    return float(np.mean(on_page)), float(np.mean(session))


def test_saves_of_a_topic_shift_the_next_page_toward_it(stack: Stack, data) -> None:
    topic_of = _primary_topic(data)
    user = _active_user(data)
    before = _page(stack.client, user, 25)
    # A topic with plenty of pins that this user's feed barely shows.
    big = [t for t, n in Counter(topic_of.values()).most_common(10) if n >= 60]
    topic = min(big, key=lambda t: _share(stack, before, t, topic_of))
    shown = set(_session_pins(stack, before))
    saves = [p for p in _popular_pins(data) if topic_of.get(p) == topic and p not in shown][:5]
    _post(stack.client, "save", user, saves)
    _until(
        lambda: (
            sum(stack.reactions.consumer.lag().values()) == 0
            and set(saves) <= set(stack.backend.store.user_state([user])[0].recent_pins.tolist())
        )
    )
    after = _page(stack.client, user, 25)
    page_before, session_before = _share(stack, before, topic, topic_of)
    page_after, session_after = _share(stack, after, topic, topic_of)
    assert page_after > page_before and session_after > session_before
    assert REALTIME in {i["source"] for i in after["items"]} | {
        s for s in stack.service.sessions.get(
            stack.service.cursors.decode(after["next_cursor"]).session_id).sources  # type: ignore[union-attr]
    }  # fmt: skip
