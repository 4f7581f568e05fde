"""The candidate pool cache: retrieval once per TTL, yet hides and model swaps still count."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from homefeed.models.data import Action
from homefeed.serving.api.app import create_app
from homefeed.serving.api.online_backend import OnlineBackend
from homefeed.serving.api.pool_cache import PoolCache
from homefeed.serving.online import open_online_store
from homefeed.serving.online.base import Reaction


def test_entries_expire_after_the_ttl_and_the_oldest_user_goes_first():
    cache: PoolCache[str] = PoolCache(ttl_ms=1000, max_users=2, jitter=0.0)
    cache.put(1, 0, "a")
    cache.put(2, 0, "b")
    assert cache.get(1, 999) == "a" and cache.get(1, 1000) is None  # expired
    cache.put(3, 10, "c")  # 2 is now the least recently used
    assert cache.get(2, 10) is None and cache.get(3, 10) == "c"
    assert cache.get(1, -5) is None  # a clock that went back: never trust the entry
    assert (cache.hits, cache.misses) == (2, 3)


def test_entries_filled_together_expire_spread_over_the_jitter():
    cache: PoolCache[int] = PoolCache(ttl_ms=1000, max_users=1000, jitter=0.2, seed=3)
    for user in range(1000):
        cache.put(user, 0, user)
    alive = [sum(cache.get(u, t) is not None for u in range(1000)) for t in (799, 900, 1000)]
    assert alive[0] == 1000 and 300 < alive[1] < 700 and alive[2] == 0
    with pytest.raises(ValueError, match="jitter = 1"):
        PoolCache(ttl_ms=5, max_users=5, jitter=1.0)


def test_a_zero_ttl_disables_it_and_bad_sizes_are_refused():
    cache: PoolCache[str] = PoolCache(ttl_ms=0, max_users=5)
    cache.put(1, 0, "a")
    assert cache.get(1, 0) is None and len(cache) == 0
    with pytest.raises(ValueError, match="ttl_ms = -1"):
        PoolCache(ttl_ms=-1, max_users=5)
    with pytest.raises(ValueError, match="max_users = 0"):
        PoolCache(ttl_ms=5, max_users=0)


def _active_user(data) -> int:
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    return int(users[np.argmax(counts)])


def test_a_cached_pool_is_reused_but_a_pin_hidden_since_is_never_served(
    bundle, data, shared_logger, config
):
    store = open_online_store()
    # pool_min_fresh 0: the pool is never refreshed for being scrolled through (tested below).
    backend = OnlineBackend(bundle, data, store, pool_ttl_s=600, pool_min_fresh=0)
    client = TestClient(create_app(backend, shared_logger, config))
    user = _active_user(data)
    first = client.get(f"/v1/users/{user}/feed").json()["items"]
    assert backend.pools.misses == 1 and len(backend.pools) == 1
    hidden = first[0]["pin_id"]
    now = int(time.time() * 1000)
    store.apply([Reaction("hide-1", user, hidden, Action.HIDE, now)])
    again = client.get(f"/v1/users/{user}/feed").json()["items"]
    assert backend.pools.hits >= 1, "the second session should reuse the retrieved pool"
    assert hidden in backend.candidates(user, now).pins  # still in the cached pool ...
    assert hidden not in {i["pin_id"] for i in again}  # ... but filtered from the page


def test_without_a_ttl_every_session_retrieves(bundle, data):
    backend = OnlineBackend(bundle, data, open_online_store())
    user = _active_user(data)
    now = bundle.context.as_of_ms
    assert backend.candidates(user, now) is not backend.candidates(user, now + 1)
    assert len(backend.pools) == 0


def test_a_user_who_scrolled_through_the_pool_gets_a_deeper_one_once_per_ttl(
    bundle, data, shared_logger, config
):
    backend = OnlineBackend(bundle, data, open_online_store(), pool_ttl_s=600, pool_min_fresh=60)
    client = TestClient(create_app(backend, shared_logger, config))
    user = _active_user(data)
    first_pool = backend.candidates(user, int(time.time() * 1000)).pins
    served: list[int] = []
    for _ in range(6):  # new sessions: the ~110-pin pool runs thin after two
        items = client.get(f"/v1/users/{user}/feed", params={"limit": 25}).json()["items"]
        served += [i["pin_id"] for i in items]
        assert len(items) == 25, f"a short page after {len(served)} served pins"
    assert backend.pool_refreshes == 1
    deeper = backend.candidates(user, int(time.time() * 1000)).pins
    assert len(set(deeper) - set(first_pool)) > 0  # pins the first pool did not have
    assert len(set(served)) == len(served)  # nothing served twice across the sessions
    for _ in range(4):  # the deeper pool runs thin too: no second retrieval within the TTL
        client.get(f"/v1/users/{user}/feed", params={"limit": 25})
    assert backend.pool_refreshes == 1
