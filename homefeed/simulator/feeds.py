"""The baseline feed shown while no model exists: following, popular and exploration."""

from __future__ import annotations

import numpy as np

from homefeed.simulator.world import World

BASELINE_VERSION = "baseline-0"
FRESH_SECONDS = 14 * 86_400  # followed pins older than this leave the following source


class BaselineFeed:
    """Pins from followed users and boards (newest first), popular pins, random pins."""

    def __init__(self, world: World, rng: np.random.Generator, size: int = 40) -> None:
        self.world = world
        self.rng = rng
        self.size = size
        order = np.lexsort((world.pin_created, world.pin_creator))
        self._by_creator = _group(world.pin_creator[order], order, world.users)
        order_b = np.lexsort((world.pin_created, world.pin_board))
        self._by_board = _group(world.pin_board[order_b], order_b, len(world.board_owner))
        self.set_time(world.start)

    def set_time(self, now: float) -> None:
        """Which pins exist at ``now`` (epoch seconds), and their popularity distribution."""
        self.now = now
        self.available = np.flatnonzero(self.world.pin_created <= now)
        weights = self.world.pin_popularity[self.available]
        self._cumulative = np.cumsum(weights / weights.sum()) if len(weights) else np.empty(0)

    def feed(
        self, user: int, following: set[int], hidden: set[int]
    ) -> tuple[np.ndarray, list[str]]:
        """A ranked feed for ``user``: (pin ids, the candidate source of each)."""
        w = self.world
        followed = [self._recent(self._by_creator[c]) for c in following]
        followed += [self._recent(self._by_board[b]) for b in w.follows_boards[user].tolist()]
        following_pins = np.concatenate(followed) if followed else np.empty(0, dtype=np.int64)
        following_pins = following_pins[np.argsort(-w.pin_created[following_pins], kind="stable")]
        popular = np.empty(0, dtype=np.int64)
        if len(self.available):
            draws = np.searchsorted(self._cumulative, self.rng.random(self.size // 2))
            popular = self.available[draws.clip(0, len(self.available) - 1)]
        explore = self.rng.choice(self.available, size=min(self.size // 4, len(self.available)))
        pools: list[tuple[np.ndarray, str]] = [
            (following_pins[: self.size // 2], "following"),
            (popular, "popular"),
            (explore, "explore"),
        ]
        return _interleave(pools, hidden, self.size)

    def _recent(self, pins: np.ndarray) -> np.ndarray:
        created = self.world.pin_created[pins]
        return pins[(created <= self.now) & (created > self.now - FRESH_SECONDS)][-5:]


def _group(keys: np.ndarray, values: np.ndarray, count: int) -> list[np.ndarray]:
    bounds = np.searchsorted(keys, np.arange(count + 1))
    return [values[bounds[i] : bounds[i + 1]] for i in range(count)]


def _interleave(
    pools: list[tuple[np.ndarray, str]], hidden: set[int], size: int
) -> tuple[np.ndarray, list[str]]:
    """Round-robin over the sources, dropping duplicates and hidden pins."""
    pins: list[int] = []
    sources: list[str] = []
    seen: set[int] = set(hidden)
    iters = [(iter(np.asarray(p).tolist()), name) for p, name in pools]
    while iters and len(pins) < size:
        for it, name in list(iters):
            pin = next(it, None)
            if pin is None:
                iters.remove((it, name))
            elif pin not in seen:
                seen.add(pin)
                pins.append(pin)
                sources.append(name)
    return np.array(pins, dtype=np.int64), sources
