"""Following: recent pins saved or created by the users and boards a user follows.

A followee is an *actor*: a followed user acts through their saves and creations, a followed
board through the pins put on it (timed by its owner's save or creation of the pin). Each
actor's recent pins carry a recency weight ``0.5 ** (age / half_life)`` relative to
``data.as_of_ms``; a user's score for a pin is the sum over the actors they follow, so a pin
several followees saved ranks above one only a single followee saved.

Fitting builds two sparse matrices, follower x actor (F) and actor x pin (A); retrieval
multiplies the requested rows, F[rows] @ A, so memory is the followees' recent pins, never a
dense users x pins matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from homefeed.models.data import BOARD, USER, Action, IdIndex, TrainingData
from homefeed.models.sources.base import Candidates, CandidateSource, excluded_keys

DAY_MS = 86_400_000
STATE_FILE = "following.npz"
_BATCH_USERS = 4096  # users per sparse product: bounds the intermediate matrix


class FollowingSource(CandidateSource):
    """Pins from followed users and boards, recency-decayed and summed over followees."""

    name = "following"

    def __init__(
        self, *, half_life_days: float = 3.0, max_age_days: float = 14.0, per_followee: int = 50
    ) -> None:
        _require_positive("half_life_days", half_life_days)
        _require_positive("max_age_days", max_age_days)
        if not isinstance(per_followee, int) or per_followee < 1:
            raise ValueError(f"per_followee must be an int >= 1, got {per_followee!r}")
        self.half_life_days = float(half_life_days)
        self.max_age_days = float(max_age_days)
        self.per_followee = per_followee
        self._pin_ids = np.empty(0, dtype=np.int64)
        self._followers = IdIndex(np.empty(0, dtype=np.int64))
        self._follow = sparse.csr_matrix((0, 0), dtype=np.float32)
        self._actor_pins = sparse.csr_matrix((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {
            "half_life_days": self.half_life_days,
            "max_age_days": self.max_age_days,
            "per_followee": self.per_followee,
        }

    def fit(self, data: TrainingData) -> None:
        actors = _Actors.of(data)
        actor, pin, time = _actor_events(data, actors, self.max_age_days)
        actor, pin, time = _latest_per_actor(actor, pin, time, self.per_followee)
        age_days = (data.as_of_ms - time) / DAY_MS
        weight = np.power(0.5, age_days / self.half_life_days).astype(np.float32)
        self._pin_ids = data.pins.pin_id.copy()
        self._actor_pins = sparse.csr_matrix(
            (weight, (actor, pin)), shape=(len(actors), len(self._pin_ids)), dtype=np.float32
        )
        self._followers, self._follow = _follow_matrix(data, actors)

    def retrieve(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None = None
    ) -> Candidates:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = Candidates.empty(user_ids, k)
        rows = self._followers.index(user_ids)
        known = np.flatnonzero(rows >= 0)
        for start in range(0, len(known), _BATCH_USERS):
            chunk = known[start : start + _BATCH_USERS]
            scores = (self._follow[rows[chunk]] @ self._actor_pins).tocoo()
            banned = excluded_keys(user_ids[chunk], exclude, self._pin_ids)
            _fill_top_k(out, chunk, scores, banned, self._pin_ids, k)
        return out

    def save_state(self, path: Path) -> None:
        f, a = self._follow, self._actor_pins
        np.savez(
            path / STATE_FILE,
            pin_ids=self._pin_ids,
            follower_ids=self._followers.ids,
            follow_indptr=f.indptr,
            follow_indices=f.indices,
            follow_shape=np.array(f.shape, dtype=np.int64),
            actor_indptr=a.indptr,
            actor_indices=a.indices,
            actor_weight=a.data,
            actor_shape=np.array(a.shape, dtype=np.int64),
        )

    def load_state(self, path: Path) -> None:
        with np.load(path / STATE_FILE, allow_pickle=False) as z:
            self._pin_ids = z["pin_ids"]
            self._followers = IdIndex(z["follower_ids"])
            ones = np.ones(len(z["follow_indices"]), dtype=np.float32)
            self._follow = sparse.csr_matrix(
                (ones, z["follow_indices"], z["follow_indptr"]), shape=tuple(z["follow_shape"])
            )
            self._actor_pins = sparse.csr_matrix(
                (z["actor_weight"], z["actor_indices"], z["actor_indptr"]),
                shape=tuple(z["actor_shape"]),
            )


class _Actors:
    """Dense actor indices: followed-able users first, then boards."""

    def __init__(self, users: IdIndex, boards: IdIndex) -> None:
        self.users, self.boards = users, boards

    @classmethod
    def of(cls, data: TrainingData) -> _Actors:
        creators = data.engagements.user_id[_is_save_or_create(data.engagements.action)]
        return cls(IdIndex.of(creators), IdIndex.of(data.board_owner.src, data.pin_boards.dst))

    def __len__(self) -> int:
        return len(self.users) + len(self.boards)

    def index(self, target_type: np.ndarray, target_id: np.ndarray) -> np.ndarray:
        """Actor index of each (type, id), -1 when that followee never acted."""
        user_idx = self.users.index(target_id)
        board_idx = self.boards.index(target_id)
        board_idx = np.where(board_idx >= 0, board_idx + len(self.users), -1)
        return np.where(
            target_type == USER, user_idx, np.where(target_type == BOARD, board_idx, -1)
        )


def _is_save_or_create(action: np.ndarray) -> np.ndarray:
    return (action == Action.SAVE) | (action == Action.CREATE)


def _actor_events(
    data: TrainingData, actors: _Actors, max_age_days: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(actor, pin index, time) of every recent action by a user actor or on a board actor."""
    eng = data.engagements
    pin_index = data.pins.index
    oldest = data.as_of_ms - max_age_days * DAY_MS
    acted = _is_save_or_create(eng.action) & (eng.time_ms >= oldest) & (eng.time_ms < data.as_of_ms)
    user_actor = actors.users.index(eng.user_id[acted])
    user_pin = pin_index.index(eng.pin_id[acted])
    user_time = eng.time_ms[acted]
    board_actor, board_pin, board_time = _board_events(data, actors, acted)
    actor = np.concatenate([user_actor, board_actor])
    pin = np.concatenate([user_pin, board_pin])
    time = np.concatenate([user_time, board_time])
    keep = (actor >= 0) & (pin >= 0) & (time >= oldest)
    return actor[keep], pin[keep], time[keep]


def _board_events(
    data: TrainingData, actors: _Actors, acted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Board -> pin edges, timed by the board owner's latest save/create of that pin.

    Edges carry no time of their own; when the owner's action is missing the pin's creation
    time stands in (never later than the real save, so such edges are never over-promoted).
    """
    edges, eng, pins = data.pin_boards, data.engagements, data.pins
    owner = _board_owners(data, edges.dst)
    users = IdIndex.of(eng.user_id[acted], owner)
    pin_index = pins.index
    n_pins = max(len(pins), 1)
    act_keys = users.index(eng.user_id[acted]) * n_pins + pin_index.index(eng.pin_id[acted])
    edge_pin = pin_index.index(edges.src)
    edge_keys = users.index(owner) * n_pins + edge_pin
    time = _latest_time(act_keys, eng.time_ms[acted], edge_keys)
    created = np.where(edge_pin >= 0, pins.created_ms[edge_pin.clip(0)], -1)
    time = np.where((time < 0) & (edge_pin >= 0) & (owner >= 0), created, time)
    board_actor = actors.index(np.full(len(edges), BOARD, dtype=np.int8), edges.dst)
    return board_actor, edge_pin, time


def _board_owners(data: TrainingData, boards: np.ndarray) -> np.ndarray:
    """Owner user of each board, -1 when unknown."""
    src, dst = data.board_owner.src, data.board_owner.dst
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    if not len(src):
        return np.full(len(boards), -1, dtype=np.int64)
    pos = np.searchsorted(src, boards).clip(0, len(src) - 1)
    return np.where(src[pos] == boards, dst[pos], -1)


def _latest_time(keys: np.ndarray, times: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Latest time recorded under each query key, -1 where none."""
    if not len(keys):
        return np.full(len(queries), -1, dtype=np.int64)
    order = np.lexsort((times, keys))
    keys, times = keys[order], times[order]
    last = np.r_[keys[1:] != keys[:-1], True]
    keys, times = keys[last], times[last]
    pos = np.searchsorted(keys, queries).clip(0, len(keys) - 1)
    return np.where(keys[pos] == queries, times[pos], -1)


def _latest_per_actor(
    actor: np.ndarray, pin: np.ndarray, time: np.ndarray, cap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per (actor, pin) at its latest time; each actor's ``cap`` most recent pins."""
    order = np.lexsort((pin, -time, actor))
    actor, pin, time = actor[order], pin[order], time[order]
    pair = np.stack([actor, pin], axis=1)
    _, first = np.unique(pair, axis=0, return_index=True)
    first.sort()  # back to (actor, newest first) order
    actor, pin, time = actor[first], pin[first], time[first]
    keep = _rank_within(actor) < cap
    return actor[keep], pin[keep], time[keep]


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Position of each row inside its run of equal ``groups`` values (groups sorted)."""
    if not len(groups):
        return np.empty(0, dtype=np.int64)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    start_pos = np.maximum.accumulate(np.where(starts, np.arange(len(groups)), 0))
    return np.arange(len(groups)) - start_pos


def _follow_matrix(data: TrainingData, actors: _Actors) -> tuple[IdIndex, sparse.csr_matrix]:
    follows = data.follows
    followers = IdIndex.of(follows.user_id)
    actor = actors.index(follows.target_type, follows.target_id)
    keep = actor >= 0  # following someone who never acted contributes nothing
    matrix = sparse.csr_matrix(
        (
            np.ones(int(keep.sum()), dtype=np.float32),
            (followers.index(follows.user_id)[keep], actor[keep]),
        ),
        shape=(len(followers), len(actors)),
        dtype=np.float32,
    )
    matrix.data[:] = 1.0  # a duplicated follow row still counts once
    return followers, matrix


def _fill_top_k(
    out: Candidates,
    out_rows: np.ndarray,
    scores: sparse.coo_matrix,
    banned: np.ndarray,
    pin_ids: np.ndarray,
    k: int,
) -> None:
    """Write each row's best k non-banned pins (ties by pin id) into ``out`` at ``out_rows``."""
    row, col, val = scores.row.astype(np.int64), scores.col.astype(np.int64), scores.data
    keep = (val > 0) & ~np.isin(row * len(pin_ids) + col, banned)
    row, col, val = row[keep], col[keep], val[keep]
    order = np.lexsort((col, -val, row))
    row, col, val = row[order], col[order], val[order]
    rank = _rank_within(row)
    top = rank < k
    out.pins[out_rows[row[top]], rank[top]] = pin_ids[col[top]]
    out.scores[out_rows[row[top]], rank[top]] = val[top]


def _require_positive(field: str, value: float) -> None:
    if not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{field} must be a number > 0, got {value!r}")


__all__ = ["FollowingSource"]
