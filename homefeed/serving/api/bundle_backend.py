"""``BundleBackend``: serve a trained ``ModelBundle`` (its sources, features and ranker).

Candidates, features and scores are exactly the bundle's ``recommend`` path (the same
``CandidateSet.gather`` and ``build_features`` as training), split into the service's stages.
The catalogue, the users and their exclusions come from the ``TrainingData`` the bundle was
trained on, through ``SimpleBackend``; so does the trending fallback for a user the bundle's
sources have nothing for.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from homefeed.models.bundle import ModelBundle
from homefeed.models.data import TrainingData
from homefeed.models.features import CandidateSet, FeatureContext, build_features
from homefeed.serving.api.backend import CandidatePool, SimpleBackend
from homefeed.serving.api.pool_cache import PoolCache


class BundleBackend(SimpleBackend):
    def __init__(
        self,
        bundle: ModelBundle,
        data: TrainingData,
        *,
        recent_window_hours: float = 24.0,
        model_version: str | None = None,
        pool_ttl_s: float = 0.0,
        pool_cache_users: int = 10_000,
        pool_min_fresh: int = 100,
    ) -> None:
        version = model_version or str(
            bundle.metadata.get("version") or f"{bundle.config.name}-{bundle.context.as_of_ms}"
        )
        super().__init__(
            data, {}, recent_window_hours=recent_window_hours, model_version=version[:64]
        )
        self.bundle = bundle
        # A cached pool, its count of pins not excluded when retrieved, and whether it is
        # itself a refresh (a pool is refreshed at most once per TTL: each costs a retrieval).
        self.pools: PoolCache[tuple[CandidatePool, int, bool]] = PoolCache(
            int(pool_ttl_s * 1000), pool_cache_users
        )
        self.pool_min_fresh = pool_min_fresh
        self.pool_refreshes = 0

    def candidates(self, user_id: int, now_ms: int) -> CandidatePool:
        exclusions = self.exclusions(user_id, now_ms)
        cached = self.pools.get(user_id, now_ms)
        if cached is None:
            pool = self._retrieve_pool(user_id, now_ms, exclusions.hidden)
            fresh = _unexcluded(pool, exclusions.pins) if self.pools.ttl_ms else 0
            self.pools.put(user_id, now_ms, (pool, fresh, False))
            return pool
        pool, fresh, refreshed = cached
        if refreshed or _unexcluded(pool, exclusions.pins) >= min(self.pool_min_fresh, fresh / 2):
            return pool
        # A user who scrolled through most of the pool within the TTL: retrieve deeper, past
        # every excluded pin, rather than serve short sessions until it expires. Once per TTL:
        # a 7-minute run whose users opened a session every 10 s spent 40% more CPU
        # refreshing thin pools again and again, and queued.
        self.pool_refreshes += 1
        pool = self._retrieve_pool(user_id, now_ms, exclusions.pins)
        self.pools.put(user_id, now_ms, (pool, len(pool), True))
        return pool

    def _retrieve_pool(self, user_id: int, now_ms: int, hidden: np.ndarray) -> CandidatePool:
        """Every source's candidates for the user (the cached part of a first page), none of
        ``hidden``."""
        users = np.array([user_id], dtype=np.int64)
        cs = CandidateSet.gather(self.bundle.sources, self.bundle.ks, users, {user_id: hidden})
        if not len(cs):
            return super().candidates(user_id, now_ms)  # trending, ranked without the ranker
        # Each pin is credited to the source that ranked it best (relative to its k).
        best = np.argmin(cs.ranks / np.asarray(cs.ks, dtype=np.float32), axis=1)
        return CandidatePool(
            user_id=user_id,
            pins=cs.pin,
            source=best.astype(np.int16),
            source_names=cs.sources,
            source_score=cs.scores[np.arange(len(cs)), best].astype(np.float32),
            topic=self._topics_of(cs.pin),
            topic_names=self.data.pins.topics,
            features=np.empty((len(cs), 0), dtype=np.float32),
            feature_names=(),
            state=cs,
        )

    def features(self, pool: CandidatePool, now_ms: int) -> CandidatePool:
        if not isinstance(pool.state, CandidateSet):
            return super().features(pool, now_ms)
        context = self.feature_context(pool.user_id, now_ms)
        # The context is a snapshot: ages and recency are measured from its time at the latest.
        now = min(now_ms, context.as_of_ms)
        x, spec = build_features(context, pool.state, now)
        if spec != self.bundle.spec:
            raise ValueError(f"features {spec.names} differ from the bundle's {self.bundle.spec}")
        return replace(pool, features=x, feature_names=spec.names)

    def feature_context(self, user_id: int, now_ms: int) -> FeatureContext:
        """The context this request's features read; ``OnlineBackend`` overlays the user's row."""
        return self.bundle.context

    def rank(self, pool: CandidatePool) -> np.ndarray:
        if not isinstance(pool.state, CandidateSet):
            return super().rank(pool)
        scores = np.asarray(self.bundle.ranker.score(pool.features), dtype=np.float32)
        return np.nan_to_num(scores, nan=-np.inf)


def _unexcluded(pool: CandidatePool, excluded: np.ndarray) -> int:
    """Pins of ``pool`` still servable (not among ``excluded``)."""
    return len(pool) - int(np.count_nonzero(np.isin(pool.pins, excluded)))
