"""``OnlineBackend``: a ``BundleBackend`` whose answers move with the user's last minutes.

Per feed request it reads the user's online state once (one batched ``user_state`` call,
reused by every stage of that request) and applies ``homefeed.models.online``: realtime
candidates seeded by the just-engaged pins, the user's feature row overlaid with the online
affinity and recent pins, and hidden and seen pins excluded. ``served`` marks the page's pins
seen in the store, so every feed server sharing the store (Redis) skips them.

The store is fed by a ``ReactionConsumer`` (``ReactionThread`` runs one beside the server):
an event POSTed to /v1/events reaches the next request once the SDK has flushed it and the
consumer has polled it. If the store fails, the request is served from the offline state
(logged), never failed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from types import TracebackType
from typing import Generic, TypeVar

import numpy as np

from homefeed.log.base import EventLog
from homefeed.models.bundle import ModelBundle
from homefeed.models.data import Pins, TrainingData
from homefeed.models.features import CandidateSet, FeatureContext
from homefeed.models.online import (
    REALTIME,
    OnlineSignals,
    RealtimeCandidates,
    online_exclusions,
    overlay_context,
    realtime_candidates,
    with_pins,
)
from homefeed.serving.api.backend import CandidatePool, Exclusions
from homefeed.serving.api.bundle_backend import BundleBackend
from homefeed.serving.online.base import OnlineStore, OnlineStoreError, UserOnlineState
from homefeed.serving.online.reactions import (
    GROUP,
    PinTopics,
    ReactionConsumer,
    pin_topics_from_catalogue,
)

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000
T = TypeVar("T")


def signals_of(state: UserOnlineState) -> OnlineSignals:
    """The store's view of a user as the overlay's plain arrays."""
    seen = np.array(list(state.seen.items()), dtype=np.int64).reshape(-1, 2)
    return OnlineSignals(
        user_id=state.user_id,
        recent_pins=np.asarray(state.recent_pins, dtype=np.int64),
        recent_actions=np.asarray(state.recent_actions, dtype=np.int8),
        recent_times=np.asarray(state.recent_times, dtype=np.int64),
        hidden=np.fromiter(state.hidden, dtype=np.int64, count=len(state.hidden)),
        seen_pins=seen[:, 0].copy(),
        seen_times=seen[:, 1].copy(),
        topic_affinity=dict(state.topic_affinity),
    )


class _RequestCache(Generic[T]):
    """A value per user for their current request (its ``now_ms``): computed once per request.

    The service calls candidates, features and exclusions with the same ``now_ms``; a later
    request has a later time, and ``served`` (the end of a request) drops the user's entry, so
    the next request reads the store again even within the same millisecond. Bounded to
    ``size`` users (LRU).
    """

    def __init__(self, size: int = 1024) -> None:
        self._lock = threading.Lock()
        self._users: OrderedDict[int, tuple[int, T]] = OrderedDict()
        self.size = size

    def get(self, user_id: int, now_ms: int) -> T | None:
        with self._lock:
            hit = self._users.get(user_id)
        return hit[1] if hit is not None and hit[0] == now_ms else None

    def put(self, user_id: int, now_ms: int, value: T) -> None:
        with self._lock:
            self._users[user_id] = (now_ms, value)
            self._users.move_to_end(user_id)
            while len(self._users) > self.size:
                self._users.popitem(last=False)

    def drop(self, user_id: int) -> None:
        with self._lock:
            self._users.pop(user_id, None)


class OnlineBackend(BundleBackend):
    def __init__(
        self,
        bundle: ModelBundle,
        data: TrainingData,
        store: OnlineStore,
        *,
        realtime_k: int = 100,
        seed_half_life_hours: float = 6.0,
        max_seeds: int = 10,
        recent_window_hours: float = 24.0,
        model_version: str | None = None,
        pool_ttl_s: float = 0.0,
        pool_cache_users: int = 10_000,
        pool_min_fresh: int = 100,
        record_served: bool = False,
    ) -> None:
        if realtime_k < 0:
            raise ValueError(f"realtime_k = {realtime_k}: must be >= 0")
        super().__init__(
            bundle, data, recent_window_hours=recent_window_hours, model_version=model_version,
            pool_ttl_s=pool_ttl_s, pool_cache_users=pool_cache_users,
            pool_min_fresh=pool_min_fresh,
        )  # fmt: skip
        self.store = store
        self.realtime_k, self.max_seeds = realtime_k, max_seeds
        self.seed_half_life_ms = seed_half_life_hours * HOUR_MS
        self.store_errors = 0
        # True when this process's reaction consumer skips the impressions of its own pages
        # (``skip_request_prefix``): ``served`` then applies them (seen and counted) itself.
        self.record_served = record_served
        self._cache: _RequestCache[OnlineSignals] = _RequestCache()
        self._exclusions: _RequestCache[Exclusions] = _RequestCache()

    def online_signals(self, user_id: int, now_ms: int) -> OnlineSignals:
        """The user's online state at ``now_ms`` (read once per request; empty on failure)."""
        cached = self._cache.get(user_id, now_ms)
        if cached is not None:
            return cached
        try:
            (state,) = self.store.user_state([user_id], now_ms=now_ms)
            signals = signals_of(state)
        except OnlineStoreError:
            self.store_errors += 1
            log.exception("online store read failed; serving user %d from offline state", user_id)
            signals = OnlineSignals(user_id)
        self._cache.put(user_id, now_ms, signals)
        return signals

    def exclusions(self, user_id: int, now_ms: int) -> Exclusions:
        cached = self._exclusions.get(user_id, now_ms)
        if cached is not None:
            return cached
        offline = super().exclusions(user_id, now_ms)
        hidden, seen = online_exclusions(
            self.online_signals(user_id, now_ms), now_ms - self.recent_ms
        )
        out = replace(
            offline,
            hidden=np.union1d(offline.hidden, hidden),
            seen=np.union1d(offline.seen, seen),
        )
        self._exclusions.put(user_id, now_ms, out)
        return out

    def served(self, user_id: int, pins: np.ndarray, now_ms: int) -> None:
        self._cache.drop(user_id)
        self._exclusions.drop(user_id)
        try:
            pin_ids = np.asarray(pins, dtype=np.int64).tolist()
            if self.record_served:
                self.store.record_served(user_id, pin_ids, now_ms)
            else:
                self.store.mark_seen(user_id, pin_ids, now_ms)
        except OnlineStoreError:
            self.store_errors += 1
            log.exception("online store mark_seen failed; remembering user %d's pins here", user_id)
            super().served(user_id, pins, now_ms)

    def candidates(self, user_id: int, now_ms: int) -> CandidatePool:
        pool = super().candidates(user_id, now_ms)
        if not isinstance(pool.state, CandidateSet) or self.realtime_k == 0:
            return pool  # the trending pool of a user the bundle knows nothing of
        signals = self.online_signals(user_id, now_ms)
        excluded = self.exclusions(user_id, now_ms).pins
        found = realtime_candidates(
            self.bundle.context, self.bundle.sources, signals, now_ms, self.realtime_k,
            exclude=np.concatenate([excluded, pool.pins]),
            half_life_ms=self.seed_half_life_ms, max_seeds=self.max_seeds,
        )  # fmt: skip
        return with_realtime_rows(pool, found, self.bundle, self._topics_of(found.pins))

    def feature_context(self, user_id: int, now_ms: int) -> FeatureContext:
        return overlay_context(self.bundle.context, self.online_signals(user_id, now_ms), now_ms)


def with_realtime_rows(
    pool: CandidatePool,
    found: RealtimeCandidates,
    bundle: ModelBundle,
    topics: np.ndarray,
) -> CandidatePool:
    """``pool`` plus one row per realtime pin (none of them already in it), source REALTIME."""
    cs = pool.state
    if not isinstance(cs, CandidateSet) or not len(found):
        return pool
    grown = with_pins(cs, pool.user_id, found.pins, bundle.sources, found.proposals)
    names = (*pool.source_names, REALTIME)
    return replace(
        pool,
        pins=grown.pin,
        source=np.concatenate([pool.source, np.full(len(found), len(names) - 1, np.int16)]),
        source_names=names,
        source_score=np.concatenate([pool.source_score, found.scores.astype(np.float32)]),
        topic=np.concatenate([pool.topic, np.asarray(topics, np.int32)]),
        state=grown,
    )


class ReactionThread:
    """A ``ReactionConsumer`` on its own daemon thread: ``with ReactionThread(...) as t:``.

    It follows the engagement topics of ``event_log`` as consumer group ``online-features``
    and applies them to ``store`` with each pin's catalogue topics.
    """

    def __init__(
        self,
        event_log: EventLog,
        store: OnlineStore,
        pins: Pins | PinTopics,
        *,
        partitions: int = 4,
        poll_timeout_s: float = 0.05,
        commit_interval_s: float = 1.0,
        group: str = GROUP,
        yield_s: float = 0.0005,
        max_records: int = 1024,
        skip_request_prefix: str | None = None,
    ) -> None:
        self.consumer = ReactionConsumer(
            event_log, store, group=group,
            pin_topics=pin_topics_from_catalogue(pins) if isinstance(pins, Pins) else pins,
            partitions=partitions, poll_timeout_s=poll_timeout_s,
            commit_interval_s=commit_interval_s, yield_s=yield_s, max_records=max_records,
            skip_request_prefix=skip_request_prefix,
        )  # fmt: skip
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.consumer.run, args=(self._stop,), name="reaction-consumer", daemon=True
        )

    def start(self) -> ReactionThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.consumer.close()

    def __enter__(self) -> ReactionThread:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["OnlineBackend", "ReactionThread", "signals_of", "with_realtime_rows"]
