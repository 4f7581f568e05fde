"""What the feed service needs from the models and the online state: the ``FeedBackend`` protocol.

The HTTP layer never touches a model, a store or a ranking client directly. It asks a backend
for a user's candidate pool, its features, scores of that pool, and the pins the user must not
see, then blends, pages and logs (``blending.py``, ``session.py``, ``service.py``).

``SimpleBackend`` is the embedded implementation: a frozen snapshot built from ``TrainingData``
and fitted ``CandidateSource``s. It has no clock of its own, so "recent" engagement is measured
back from the snapshot's ``as_of_ms``; pins the service served are remembered in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np

from homefeed.models.data import Action, TrainingData, action_weights
from homefeed.models.sources.base import CandidateSource

EMPTY_I64 = np.empty(0, dtype=np.int64)
TRENDING = "trending"
FEATURE_NAMES = (
    "source_score",
    "source_rank",
    "pin_popularity",
    "pin_age_hours",
    "user_topic_affinity",
)
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class CandidatePool:
    """One user's candidates from every source; row i describes pins[i] (duplicates allowed).

    ``SimpleBackend`` pools are grouped by source, each source's pins best first; other
    backends may order rows as they like and keep what ``features`` needs in ``state``.
    """

    user_id: int
    pins: np.ndarray  # int64 (n,)
    source: np.ndarray  # int16 (n,) codes into source_names
    source_names: tuple[str, ...]
    source_score: np.ndarray  # float32 (n,) as the source gave it (not comparable across sources)
    topic: np.ndarray  # int32 (n,) the pin's primary topic, a code into topic_names; -1 none
    topic_names: tuple[str, ...]
    features: np.ndarray  # float32 (n, len(feature_names)); (n, 0) until features() ran
    feature_names: tuple[str, ...]
    cold_start: bool = False  # no personal source had anything: the pool is trending
    state: object = None  # backend-private, carried from candidates() to features()

    def __len__(self) -> int:
        return len(self.pins)

    def per_source(self) -> dict[str, int]:
        counts = np.bincount(self.source, minlength=len(self.source_names))
        return {name: int(c) for name, c in zip(self.source_names, counts, strict=True)}


@dataclass(frozen=True)
class Exclusions:
    """Pins a user must not be shown: hidden ones, recently seen ones, blocked ones."""

    hidden: np.ndarray = field(default_factory=lambda: EMPTY_I64)
    seen: np.ndarray = field(default_factory=lambda: EMPTY_I64)
    blocked: np.ndarray = field(default_factory=lambda: EMPTY_I64)

    @cached_property
    def pins(self) -> np.ndarray:
        """Every excluded pin, sorted and unique (computed once: a request asks twice)."""
        return np.unique(np.concatenate([self.hidden, self.seen, self.blocked]))


@dataclass(frozen=True)
class PinInfo:
    pin_id: int
    creator_id: int | None
    created_ms: int
    topics: tuple[str, ...]


@dataclass(frozen=True)
class UserInfo:
    user_id: int
    engagements: int
    saves: int
    hides: int
    following: int
    top_topics: tuple[str, ...]
    cold_start: bool


@runtime_checkable
class FeedBackend(Protocol):
    """What the feed service calls. Every method answers for any int64 id without raising.

    ``candidates`` returns the pool for a user ``known_user`` accepted: for a user with no
    history, trending candidates (never an empty pool while the catalogue has pins).
    ``features`` returns the same pool with its feature matrix filled (a separate step so its
    cost is measured apart). ``rank(pool)`` returns one float per pool row, higher is better.
    ``exclusions`` lists pins never to show that user now; ``served`` records what the service
    showed, so a later session can skip it.
    """

    @property
    def model_version(self) -> str: ...

    def known_user(self, user_id: int) -> bool: ...

    def candidates(self, user_id: int, now_ms: int) -> CandidatePool: ...

    def features(self, pool: CandidatePool, now_ms: int) -> CandidatePool: ...

    def rank(self, pool: CandidatePool) -> np.ndarray: ...

    def exclusions(self, user_id: int, now_ms: int) -> Exclusions: ...

    def served(self, user_id: int, pins: np.ndarray, now_ms: int) -> None: ...

    def pin(self, pin_id: int) -> PinInfo | None: ...

    def user(self, user_id: int) -> UserInfo | None: ...


Scorer = Callable[[CandidatePool], np.ndarray]


def source_rank_scores(pool: CandidatePool) -> np.ndarray:
    """Scores without a ranker: a pin's percentile within its own source (1.0 = its best).

    Raw source scores are not comparable (a cosine next to a count); ranks within a source are.
    """
    rank = _rank_within_source(pool.source)
    size = np.bincount(pool.source, minlength=len(pool.source_names)).astype(np.float32)
    return (1.0 - rank / np.maximum(size[pool.source], 1.0)).astype(np.float32)


class TrendingFallback:
    """Pins by time-decayed positive engagement: what a user without history is shown."""

    def __init__(self, data: TrainingData, half_life_h: float = 24.0, keep: int = 5000) -> None:
        eng = data.engagements
        weight = np.maximum(action_weights()[eng.action], 0.0)
        age_h = np.maximum(data.as_of_ms - eng.time_ms, 0) / HOUR_MS
        decayed = weight * np.exp2(-age_h / half_life_h)
        idx = data.pins.index.index(eng.pin_id)
        known = idx >= 0
        score = np.bincount(idx[known], decayed[known], minlength=len(data.pins))
        order = np.argsort(-score, kind="stable")[:keep]
        self.pins = data.pins.pin_id[order]
        self.scores = score[order].astype(np.float32)

    def top(self, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = ~np.isin(self.pins, exclude)
        return self.pins[keep][:k], self.scores[keep][:k]


class _UserHistory:
    """Per-user slices of the engagement log (CSR by user), built once."""

    def __init__(self, data: TrainingData) -> None:
        eng = data.engagements
        order = np.argsort(eng.user_id, kind="stable")
        self.user_ids, starts = np.unique(eng.user_id[order], return_index=True)
        self.indptr = np.append(starts, len(order)).astype(np.int64)
        self.pin_id = eng.pin_id[order]
        self.action = eng.action[order]
        self.time_ms = eng.time_ms[order]

    def rows(self, user_id: int) -> slice:
        pos = int(np.searchsorted(self.user_ids, user_id))
        if pos == len(self.user_ids) or self.user_ids[pos] != user_id:
            return slice(0, 0)
        return slice(int(self.indptr[pos]), int(self.indptr[pos + 1]))


class _ServedLog:
    """Pins recently served per user, bounded in users (LRU) and per user (newest kept)."""

    def __init__(self, max_users: int = 100_000, per_user: int = 2000) -> None:
        self._lock = threading.Lock()
        self._users: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.max_users, self.per_user = max_users, per_user

    def add(self, user_id: int, pins: np.ndarray, now_ms: int) -> None:
        with self._lock:
            old_pins, old_times = self._users.pop(user_id, (EMPTY_I64, EMPTY_I64))
            times = np.full(len(pins), now_ms, dtype=np.int64)
            all_pins = np.concatenate([old_pins, pins.astype(np.int64)])[-self.per_user :]
            all_times = np.concatenate([old_times, times])[-self.per_user :]
            self._users[user_id] = (all_pins, all_times)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def since(self, user_id: int, since_ms: int) -> np.ndarray:
        with self._lock:
            pins, times = self._users.get(user_id, (EMPTY_I64, EMPTY_I64))
        return pins[times >= since_ms]


class SimpleBackend:
    """A ``FeedBackend`` over a ``TrainingData`` snapshot and fitted candidate sources.

    Without a ``trending`` source among ``sources`` it computes its own (``TrendingFallback``).
    Without a ``scorer`` it ranks by ``source_rank_scores``.
    """

    def __init__(
        self,
        data: TrainingData,
        sources: Mapping[str, CandidateSource],
        *,
        scorer: Scorer | None = None,
        candidates_per_source: int = 300,
        recent_window_hours: float = 24.0,
        model_version: str | None = None,
    ) -> None:
        self.data = data
        self.sources = dict(sources)
        self.scorer = scorer or source_rank_scores
        self.k = candidates_per_source
        self.recent_ms = int(recent_window_hours * HOUR_MS)
        self._version = model_version or f"simple-{data.as_of_ms}"
        self._history = _UserHistory(data)
        self._fallback = None if TRENDING in self.sources else TrendingFallback(data)
        self._source_names = (*[n for n in self.sources if n != TRENDING], TRENDING)
        users = [data.engagements.user_id, data.follows.user_id, data.board_owner.dst]
        self._users = np.unique(np.concatenate(users).astype(np.int64))
        self._pin_index = data.pins.index
        self._pin_topic = _primary_topics(data)
        self._pin_popularity = _popularity(data)
        self._served = _ServedLog()

    @property
    def model_version(self) -> str:
        return self._version

    def known_user(self, user_id: int) -> bool:
        pos = int(np.searchsorted(self._users, user_id))
        return pos < len(self._users) and int(self._users[pos]) == user_id

    def exclusions(self, user_id: int, now_ms: int) -> Exclusions:
        rows = self._history.rows(user_id)
        pins, actions = self._history.pin_id[rows], self._history.action[rows]
        times = self._history.time_ms[rows]
        # The snapshot's clock: nothing after as_of_ms is in it, so "recent" counts from there.
        since = min(now_ms, self.data.as_of_ms) - self.recent_ms
        hidden = np.unique(pins[actions == Action.HIDE])
        seen_before = pins[(times >= since) & (actions != Action.HIDE)]
        served = self._served.since(user_id, now_ms - self.recent_ms)
        return Exclusions(hidden=hidden, seen=np.unique(np.concatenate([seen_before, served])))

    def served(self, user_id: int, pins: np.ndarray, now_ms: int) -> None:
        self._served.add(user_id, pins, now_ms)

    def candidates(self, user_id: int, now_ms: int) -> CandidatePool:
        hidden = self.exclusions(user_id, now_ms).hidden
        parts = [self._retrieve(name, user_id, hidden) for name in self._source_names]
        pins = np.concatenate([p for p, _ in parts])
        sizes = [len(p) for p, _ in parts]
        return CandidatePool(
            user_id=user_id,
            pins=pins,
            source=np.repeat(np.arange(len(parts), dtype=np.int16), sizes),
            source_names=self._source_names,
            source_score=np.concatenate([s for _, s in parts]).astype(np.float32),
            topic=self._topics_of(pins),
            topic_names=self.data.pins.topics,
            features=np.empty((len(pins), 0), dtype=np.float32),
            feature_names=(),
            cold_start=sum(sizes[:-1]) == 0,
        )

    def features(self, pool: CandidatePool, now_ms: int) -> CandidatePool:
        ranks = _rank_within_source(pool.source)
        matrix = self._features(pool.user_id, pool.pins, pool.source_score, ranks, now_ms)
        return replace(pool, features=matrix, feature_names=FEATURE_NAMES)

    def rank(self, pool: CandidatePool) -> np.ndarray:
        scores = np.asarray(self.scorer(pool), dtype=np.float32)
        if scores.shape != (len(pool),):
            raise ValueError(f"scorer returned shape {scores.shape}, expected ({len(pool)},)")
        return np.nan_to_num(scores, nan=-np.inf)

    def pin(self, pin_id: int) -> PinInfo | None:
        i = int(self._pin_index.index(np.array([pin_id], dtype=np.int64))[0])
        if i < 0:
            return None
        pins = self.data.pins
        codes = pins.topic_codes[pins.topic_indptr[i] : pins.topic_indptr[i + 1]]
        creator = int(pins.creator_id[i])
        return PinInfo(
            pin_id=pin_id,
            creator_id=None if creator < 0 else creator,
            created_ms=int(pins.created_ms[i]),
            topics=tuple(pins.topics[c] for c in codes),
        )

    def user(self, user_id: int) -> UserInfo | None:
        if not self.known_user(user_id):
            return None
        rows = self._history.rows(user_id)
        actions = self._history.action[rows]
        profile = self._topic_profile(user_id)
        top = np.argsort(-profile, kind="stable")[:3]
        return UserInfo(
            user_id=user_id,
            engagements=int(rows.stop - rows.start),
            saves=int(np.count_nonzero(actions == Action.SAVE)),
            hides=int(np.count_nonzero(actions == Action.HIDE)),
            following=int(np.count_nonzero(self.data.follows.user_id == user_id)),
            top_topics=tuple(self.data.pins.topics[t] for t in top if profile[t] > 0),
            cold_start=not np.any(profile > 0),
        )

    def _retrieve(
        self, name: str, user_id: int, hidden: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if name == TRENDING and self._fallback is not None:
            return self._fallback.top(self.k, hidden)
        got = self.sources[name].retrieve(
            np.array([user_id], dtype=np.int64), self.k, exclude={user_id: hidden}
        )
        return got.of(0)

    def _topics_of(self, pins: np.ndarray) -> np.ndarray:
        idx = self._pin_index.index(pins)
        return np.where(idx >= 0, self._pin_topic[np.maximum(idx, 0)], -1).astype(np.int32)

    def _topic_profile(self, user_id: int) -> np.ndarray:
        """The user's interest per topic: action-weighted counts of engaged pins' topics."""
        rows = self._history.rows(user_id)
        weight = action_weights()[self._history.action[rows]]
        topics = self._topics_of(self._history.pin_id[rows])
        ok = topics >= 0
        profile = np.bincount(topics[ok], weight[ok], minlength=len(self.data.pins.topics))
        total = np.abs(profile).sum()
        return profile / total if total > 0 else profile

    def _features(
        self,
        user_id: int,
        pins: np.ndarray,
        scores: np.ndarray,
        ranks: np.ndarray,
        now_ms: int,
    ) -> np.ndarray:
        idx = self._pin_index.index(pins)
        safe, known = np.maximum(idx, 0), idx >= 0
        created = self.data.pins.created_ms[safe] if len(self.data.pins) else np.zeros(len(pins))
        topics = self._topics_of(pins)
        profile = self._topic_profile(user_id)
        out = np.empty((len(pins), len(FEATURE_NAMES)), dtype=np.float32)
        out[:, 0] = np.nan_to_num(scores, neginf=0.0, posinf=0.0)
        out[:, 1] = ranks
        out[:, 2] = np.where(known, self._pin_popularity[safe], 0.0)
        out[:, 3] = np.where(known, np.maximum(now_ms - created, 0) / HOUR_MS, 0.0)
        out[:, 4] = np.where(topics >= 0, profile[np.maximum(topics, 0)], 0.0)
        return out


def _rank_within_source(source: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of one source code (a pool is grouped by source)."""
    n = len(source)
    if not n:
        return np.empty(0, dtype=np.float32)
    starts = np.flatnonzero(np.r_[True, source[1:] != source[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return (np.arange(n) - np.repeat(starts, lengths)).astype(np.float32)


def _primary_topics(data: TrainingData) -> np.ndarray:
    pins = data.pins
    if not len(pins.topic_codes):
        return np.full(len(pins), -1, dtype=np.int32)
    has = np.diff(pins.topic_indptr) > 0
    first = pins.topic_codes[np.minimum(pins.topic_indptr[:-1], len(pins.topic_codes) - 1)]
    return np.where(has, first, -1).astype(np.int32)


def _popularity(data: TrainingData) -> np.ndarray:
    """log1p of each pin's positive engagement weight."""
    eng = data.engagements
    idx = data.pins.index.index(eng.pin_id)
    weight = np.maximum(action_weights()[eng.action], 0.0)
    ok = idx >= 0
    return np.log1p(np.bincount(idx[ok], weight[ok], minlength=len(data.pins))).astype(np.float32)
