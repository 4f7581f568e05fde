"""What models fit on: engagement, the pin catalogue and the graphs, as compact NumPy columns.

Sources never read the lake themselves: a loader (``homefeed.models.lake_data`` for the lake,
``homefeed.models.evaluation.movielens`` for ratings) builds one ``TrainingData`` and every
source fits on it. Ids stay the lake's int64 ids; ``IdIndex`` maps them to dense indices for
matrices. Columns are arrays, never DataFrames, so 10M events cost ~40 bytes each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

EMPTY_I64 = np.empty(0, dtype=np.int64)


class Action(IntEnum):
    """Engagement kinds, in the order of how much they say about interest."""

    IMPRESSION = 0
    CLOSEUP = 1
    CLICK = 2
    SAVE = 3
    CREATE = 4  # the user created the pin
    HIDE = 5  # negative


# How much each action says a user likes a pin (hides count against it).
ACTION_WEIGHT = {
    Action.IMPRESSION: 0.0,
    Action.CLOSEUP: 0.5,
    Action.CLICK: 1.0,
    Action.SAVE: 3.0,
    Action.CREATE: 2.0,
    Action.HIDE: -2.0,
}


def action_weights() -> np.ndarray:
    """ACTION_WEIGHT as an array indexed by Action code."""
    out = np.zeros(max(Action) + 1, dtype=np.float32)
    for action, weight in ACTION_WEIGHT.items():
        out[action] = weight
    return out


@dataclass(frozen=True)
class IdIndex:
    """Sorted unique int64 ids <-> dense indices 0..n-1."""

    ids: np.ndarray

    @classmethod
    def of(cls, *columns: np.ndarray) -> IdIndex:
        parts = [np.asarray(c, dtype=np.int64) for c in columns]
        return cls(np.unique(np.concatenate(parts)) if parts else EMPTY_I64)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, ids: np.ndarray) -> np.ndarray:
        """Dense index of each id, -1 where the id is unknown."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.ids):
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
        return np.where(self.ids[pos] == ids, pos, -1)


@dataclass(frozen=True)
class Engagements:
    """One row per event: who did what to which pin, when (epoch ms). Not sorted."""

    user_id: np.ndarray  # int64
    pin_id: np.ndarray  # int64
    action: np.ndarray  # int8, an Action
    time_ms: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.user_id)

    def select(self, mask: np.ndarray) -> Engagements:
        return Engagements(
            self.user_id[mask], self.pin_id[mask], self.action[mask], self.time_ms[mask]
        )


@dataclass(frozen=True)
class Pins:
    """The catalogue: one row per pin, sorted by pin_id."""

    pin_id: np.ndarray  # int64, sorted unique
    creator_id: np.ndarray  # int64, -1 unknown
    created_ms: np.ndarray  # int64
    topic_indptr: np.ndarray  # CSR over topic codes: pin i has topic_codes[indptr[i]:indptr[i+1]]
    topic_codes: np.ndarray  # int32 codes into ``topics``
    topics: tuple[str, ...]  # topic names
    text: tuple[str, ...] | None = None  # optional title/description per pin

    def __len__(self) -> int:
        return len(self.pin_id)

    @property
    def index(self) -> IdIndex:
        return IdIndex(self.pin_id)

    def topic_matrix(self) -> np.ndarray:
        """Dense (pins x topics) float32, each row L1-normalised (rows without topics stay 0)."""
        out = np.zeros((len(self), len(self.topics)), dtype=np.float32)
        rows = np.repeat(np.arange(len(self)), np.diff(self.topic_indptr))
        out[rows, self.topic_codes] = 1.0
        sums = out.sum(axis=1, keepdims=True)
        return np.divide(out, sums, out=out, where=sums > 0)


@dataclass(frozen=True)
class Edges:
    """A weighted bipartite edge list, e.g. pin -> board (``src`` pins, ``dst`` boards).

    ``first_ms``, when known, is when each edge came to exist (epoch ms, its first event, or
    the end of the first day it was seen when only days are known): ``data_before`` drops
    edges that did not exist yet. The weight is the whole window's.
    """

    src: np.ndarray  # int64
    dst: np.ndarray  # int64
    weight: np.ndarray  # float32
    first_ms: np.ndarray | None = None  # int64

    def __post_init__(self) -> None:
        _same_lengths("Edges", src=self.src, dst=self.dst, weight=self.weight,
                      first_ms=self.first_ms)  # fmt: skip

    def __len__(self) -> int:
        return len(self.src)

    def select(self, mask: np.ndarray) -> Edges:
        first = None if self.first_ms is None else self.first_ms[mask]
        return Edges(self.src[mask], self.dst[mask], self.weight[mask], first)

    def existing_before(self, ms: int) -> Edges:
        """The edges that existed before ``ms`` (all of them when their times are unknown)."""
        return self if self.first_ms is None else self.select(self.first_ms < ms)


@dataclass(frozen=True)
class Follows:
    """Who follows what: target_type 0 = user, 1 = board.

    ``since_ms``, when known, is the time of the follow that made each one current; a follow
    made, dropped and made again counts from the last time.
    """

    user_id: np.ndarray  # int64
    target_type: np.ndarray  # int8
    target_id: np.ndarray  # int64
    since_ms: np.ndarray | None = None  # int64

    def __post_init__(self) -> None:
        _same_lengths("Follows", user_id=self.user_id, target_type=self.target_type,
                      target_id=self.target_id, since_ms=self.since_ms)  # fmt: skip

    def existing_before(self, ms: int) -> Follows:
        """The follows current before ``ms`` (all of them when their times are unknown)."""
        if self.since_ms is None:
            return self
        m = self.since_ms < ms
        return Follows(self.user_id[m], self.target_type[m], self.target_id[m], self.since_ms[m])


def _same_lengths(kind: str, **columns: np.ndarray | None) -> None:
    lengths = {name: len(c) for name, c in columns.items() if c is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{kind} columns differ in length: {lengths}")


USER, BOARD = 0, 1


@dataclass(frozen=True)
class TrainingData:
    """Everything a source fits on, as of ``as_of_ms`` (nothing later is in here)."""

    engagements: Engagements
    pins: Pins
    pin_boards: Edges  # pin (src) saved to / created on board (dst)
    board_owner: Edges  # board (src) owned by user (dst), weight 1
    follows: Follows
    as_of_ms: int
    meta: dict[str, object] = field(default_factory=dict)  # source of the data, ranges

    def users(self) -> IdIndex:
        return IdIndex.of(self.engagements.user_id)

    def positives(self) -> Engagements:
        """Engagements that say the user likes the pin (weight > 0)."""
        weights = action_weights()[self.engagements.action]
        return self.engagements.select(weights > 0)
