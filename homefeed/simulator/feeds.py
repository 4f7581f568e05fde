"""The baseline feed served while no model exists: following, popular and exploration.

Each feed interleaves three candidate sources in a fixed slot pattern: recent pins of the
users and boards the viewer follows ("following"), pins drawn by global popularity
("popular") and uniformly random pins ("explore"). A following slot with nothing fresh falls
back to a popular pin. Duplicates and pins the user hid are dropped. Feeds for a batch of
sessions are built at once (``build``); ``feed`` builds one.
"""

from __future__ import annotations

import numpy as np

from homefeed.simulator import arrays
from homefeed.simulator.behavior import Feeds, UserState
from homefeed.simulator.world import DAY_MS, World

BASELINE_VERSION = "baseline-0"
SOURCES = ("following", "popular", "explore")
FOLLOWING, POPULAR, EXPLORE = range(3)
SLOT_PATTERN = np.array([FOLLOWING, POPULAR, FOLLOWING, EXPLORE, POPULAR])  # 40/40/20
FRESH_MS = 30 * DAY_MS  # followed pins older than this leave the following source
RECENT = 5  # a following slot shows one of the target's newest pins


class BaselineFeed:
    """Builds baseline feeds of ``size`` pins; call ``set_time`` as simulated time advances
    (pins not yet created at that time are never served)."""

    model_version = BASELINE_VERSION
    sources = SOURCES

    def __init__(self, world: World, size: int = 40) -> None:
        self.world = world
        self.size = size
        created = world.pin_created_ms
        self._t0 = int(created.min()) if len(created) else 0
        self._span = int(max(created.max(), world.end_ms) - self._t0 + 1) if len(created) else 1
        self._by_creator = self._index(world.pin_creator)
        self._by_board = self._index(world.pin_board)
        self.set_time(world.start_ms)

    def _index(self, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pins sorted by (owner, creation time), with one searchable int64 key per pin."""
        key = owner * self._span + (self.world.pin_created_ms - self._t0)
        order = np.argsort(key, kind="stable")
        return key[order], order

    def set_time(self, now_ms: int) -> None:
        """Serve pins created at or before ``now_ms``, popular ones by their popularity."""
        self.now_ms = now_ms
        self.available = np.flatnonzero(self.world.pin_created_ms <= now_ms)
        weights = self.world.pin_popularity[self.available]
        self._cumulative = np.cumsum(weights) / weights.sum() if len(weights) else weights

    def feed(
        self, user: int, state: UserState, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[str]]:
        """One feed for ``user`` at the current time: (pin ids top first, their sources)."""
        batch = self.build(
            np.array([user]), np.array([self.now_ms]), np.zeros(1, np.int64), state, rng
        )
        return batch.pins, [SOURCES[s] for s in batch.sources.tolist()]

    def build(
        self,
        users: np.ndarray,
        start_ms: np.ndarray,
        sessions: np.ndarray,
        state: UserState,
        rng: np.random.Generator,
    ) -> Feeds:
        """Feeds for sessions of ``users`` (at ``start_ms``, numbered ``sessions``); following
        slots use the users' follows at the start plus those in ``state``."""
        n, size = len(users), self.size
        if not len(self.available) or not n:
            lengths = np.zeros(n, dtype=np.int64)
            empty = np.empty(0, dtype=np.int64)
            return Feeds(
                users, start_ms, arrays.offsets_of(lengths), empty, empty, SOURCES, sessions
            )
        source = np.broadcast_to(SLOT_PATTERN[np.arange(size) % len(SLOT_PATTERN)], (n, size))
        popular = self.available[
            np.minimum(
                np.searchsorted(self._cumulative, rng.random((n, size))), len(self.available) - 1
            )
        ]
        explore = self.available[rng.integers(0, len(self.available), size=(n, size))]
        following = np.full((n, size), -1, dtype=np.int64)
        rows, cols = np.nonzero(source == FOLLOWING)
        following[rows, cols] = self._following(users[rows], rng, state)
        source = np.where((source == FOLLOWING) & (following < 0), POPULAR, source)
        pins = np.select([source == FOLLOWING, source == POPULAR], [following, popular], explore)
        keep = ~_duplicates(pins) & ~_hidden(state, users, pins)
        lengths = keep.sum(axis=1)
        return Feeds(
            users.astype(np.int64), start_ms.astype(np.int64), arrays.offsets_of(lengths),
            pins[keep], source[keep].astype(np.int64), SOURCES, sessions.astype(np.int64),
        )  # fmt: skip

    def _following(
        self, users: np.ndarray, rng: np.random.Generator, state: UserState
    ) -> np.ndarray:
        """Per entry, a recent pin of a random target the user follows, or -1."""
        w = self.world
        fu, fb = w.follows_users, w.follows_boards
        n_users = fu.lengths[users]
        n_boards = fb.lengths[users]
        n_new = np.minimum(state.follows_count[users], state.follows.shape[1])
        total = n_users + n_boards + n_new
        pick = (rng.random(len(users)) * total).astype(np.int64)
        as_user = pick < n_users
        as_board = ~as_user & (pick < n_users + n_boards)
        static_user = fu.values[np.minimum(fu.offsets[users] + pick, max(len(fu.values) - 1, 0))]
        static_board = fb.values[
            np.minimum(fb.offsets[users] + pick - n_users, max(len(fb.values) - 1, 0))
        ]
        new = state.follows[
            users, np.clip(pick - n_users - n_boards, 0, state.follows.shape[1] - 1)
        ]
        is_board = np.where(as_user, False, np.where(as_board, True, (new & 1) == 1))
        target = np.where(as_user, static_user, np.where(as_board, static_board, new >> 1))
        draw = rng.random(len(users))
        pins = np.where(
            is_board,
            self._recent(self._by_board, target, draw),
            self._recent(self._by_creator, target, draw),
        )
        return np.asarray(np.where(total > 0, pins, -1))

    def _recent(
        self, index: tuple[np.ndarray, np.ndarray], owners: np.ndarray, draw: np.ndarray
    ) -> np.ndarray:
        """One of each owner's RECENT newest pins created within FRESH_MS, or -1."""
        if not len(self.world.pin_created_ms):
            return np.full(len(owners), -1, dtype=np.int64)
        keys, order = index
        owners = np.maximum(owners, 0)
        upto = min(self.now_ms - self._t0, self._span - 1)
        since = max(self.now_ms - FRESH_MS - self._t0, 0)
        hi = np.searchsorted(keys, owners * self._span + upto, side="right")
        lo = np.searchsorted(keys, owners * self._span + since, side="left")
        count = np.minimum(hi - lo, RECENT)
        at = np.maximum(hi - 1 - (draw * count).astype(np.int64), 0)
        return np.asarray(np.where(count > 0, order[np.minimum(at, len(order) - 1)], -1))


def _duplicates(pins: np.ndarray) -> np.ndarray:
    """Per row, True for a pin already shown higher in the same feed."""
    order = np.argsort(pins, axis=1, kind="stable")
    ordered = np.take_along_axis(pins, order, axis=1)
    dup = np.zeros(pins.shape, dtype=bool)
    rows = np.arange(len(pins))[:, None]
    dup[rows, order[:, 1:]] = ordered[:, 1:] == ordered[:, :-1]
    return dup


def _hidden(state: UserState, users: np.ndarray, pins: np.ndarray) -> np.ndarray:
    """Per cell, whether the row's user recently hid that pin."""
    acted = state.acted[users][:, None, :]
    return np.asarray((pins[:, :, None] * 2 + 1 == acted).any(axis=2))
