"""Each user's retrieved candidate pool, kept for a while: retrieval once per TTL, not per session.

Retrieval (every source's top k, exact pair scores) is most of a first page's CPU; the
features and the ranker, which read the user's state as of the request, are not. Pinterest's
home feed likewise materialises candidates ahead of the request and ranks them at request
time. What changes within the TTL still reaches the page: hidden and seen pins are filtered
when the session is blended, and ``OnlineBackend`` adds realtime candidates per request.
A backend holds one cache, so a model swap (a new backend) starts from an empty one.

Each entry lives a random share of the TTL, between ``1 - jitter`` and 1 of it: pools filled
together (every user's first page after a start or a swap) then expire spread out instead of
all at once. Without it, a 7-minute run at 300 req/s saturated the server when the pools
warmed in its first 16 s all expired within 16 s of each other, 300 s later.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class PoolCache(Generic[T]):
    """An LRU of ``max_users`` entries, each valid for ``ttl_ms`` of the caller's clock, less
    a random share of up to ``jitter`` of it.

    ``ttl_ms == 0`` disables it (``get`` always misses, ``put`` keeps nothing).
    """

    def __init__(
        self, ttl_ms: int, max_users: int, jitter: float = 0.2, seed: int | None = None
    ) -> None:
        if ttl_ms < 0:
            raise ValueError(f"ttl_ms = {ttl_ms}: must be >= 0")
        if max_users < 1:
            raise ValueError(f"max_users = {max_users}: must be >= 1")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter = {jitter}: must be in [0, 1)")
        self.ttl_ms, self.max_users, self.jitter = ttl_ms, max_users, jitter
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        # user -> (put time, lifetime in ms, pool)
        self._entries: OrderedDict[int, tuple[int, float, T]] = OrderedDict()

    def get(self, user_id: int, now_ms: int) -> T | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None or not 0 <= now_ms - entry[0] < entry[1]:
                self.misses += 1
                return None
            self._entries.move_to_end(user_id)
            self.hits += 1
            return entry[2]

    def put(self, user_id: int, now_ms: int, value: T) -> None:
        if self.ttl_ms == 0:
            return
        with self._lock:
            life = self.ttl_ms * (1.0 - self.jitter * self._random.random())
            self._entries[user_id] = (now_ms, life, value)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
