"""Build ``TrainingData`` from event dicts: the simulator's stream, an import, a test's events.

The lake loader (``lake_data.py``) builds the same thing with SQL over the lake; this one is
for streams that never reached a lake. Events are consumed one at a time into growable
columns, so memory is the columns, not the dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np

from homefeed.models.data import (
    BOARD,
    USER,
    Action,
    Edges,
    Engagements,
    Follows,
    Pins,
    TrainingData,
)

_ACTIONS = {
    "impression": Action.IMPRESSION,
    "closeup": Action.CLOSEUP,
    "click": Action.CLICK,
    "save": Action.SAVE,
    "hide": Action.HIDE,
}


def event_ms(value: str | int | float) -> int:
    """An event_time (RFC 3339 string or epoch seconds) as epoch milliseconds."""
    if isinstance(value, int | float):
        return int(value * 1000)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


class TrainingDataBuilder:
    """Feed events with ``add``; ``build(as_of_ms)`` keeps only what happened before it."""

    def __init__(self) -> None:
        self._eng: list[tuple[int, int, int, int]] = []
        self._pins: dict[int, tuple[int, int, tuple[str, ...], str]] = {}
        self._pin_board: list[tuple[int, int, float, int]] = []
        self._boards: dict[int, tuple[int, int]] = {}
        self._follows: dict[tuple[int, int, int], tuple[bool, int]] = {}

    def add_all(self, events: Iterable[Mapping[str, Any]]) -> TrainingDataBuilder:
        for event in events:
            self.add(event)
        return self

    def add(self, event: Mapping[str, Any]) -> None:
        kind, user, t = event["event_type"], int(event["user_id"]), event_ms(event["event_time"])
        if kind in _ACTIONS:
            self._eng.append((user, int(event["pin_id"]), _ACTIONS[kind], t))
            if kind == "save":
                self._pin_board.append((int(event["pin_id"]), int(event["board_id"]), 1.0, t))
        elif kind == "pin_create":
            pin = int(event["pin_id"])
            self._pins[pin] = (user, t, tuple(event.get("topics") or ()), event.get("title", ""))
            self._eng.append((user, pin, Action.CREATE, t))
            self._pin_board.append((pin, int(event["board_id"]), 1.0, t))
        elif kind == "board_create":
            self._boards[int(event["board_id"])] = (user, t)
        elif kind == "follow":
            target = 0 if event["target_type"] == "user" else 1
            key = (user, target, int(event["target_id"]))
            self._follows[key] = (event.get("action", "follow") == "follow", t)

    def build(
        self, as_of_ms: int | None = None, meta: dict[str, object] | None = None
    ) -> TrainingData:
        eng = np.array(self._eng, dtype=np.int64).reshape(-1, 4)
        as_of = int(eng[:, 3].max(initial=0)) + 1 if as_of_ms is None else as_of_ms
        eng = eng[eng[:, 3] < as_of]
        engagements = Engagements(
            eng[:, 0].copy(), eng[:, 1].copy(), eng[:, 2].astype(np.int8), eng[:, 3].copy()
        )
        return TrainingData(
            engagements=engagements,
            pins=self._build_pins(as_of),
            pin_boards=self._build_pin_boards(as_of),
            board_owner=self._build_boards(as_of),
            follows=self._build_follows(as_of),
            as_of_ms=as_of,
            meta=meta or {},
        )

    def _build_pins(self, as_of: int) -> Pins:
        items = sorted((p, v) for p, v in self._pins.items() if v[1] < as_of)
        topics = sorted({t for _, v in items for t in v[2]})
        code = {t: i for i, t in enumerate(topics)}
        lengths = [len(v[2]) for _, v in items]
        return Pins(
            pin_id=np.array([p for p, _ in items], dtype=np.int64),
            creator_id=np.array([v[0] for _, v in items], dtype=np.int64),
            created_ms=np.array([v[1] for _, v in items], dtype=np.int64),
            topic_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            topic_codes=np.array([code[t] for _, v in items for t in v[2]], dtype=np.int32),
            topics=tuple(topics),
            text=tuple(v[3] for _, v in items),
        )

    def _build_pin_boards(self, as_of: int) -> Edges:
        rows = np.array(self._pin_board, dtype=np.float64).reshape(-1, 4)
        rows = rows[rows[:, 3] < as_of]
        pairs, weight, first = _sum_by_pair(
            rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2],
            rows[:, 3].astype(np.int64),
        )  # fmt: skip
        return Edges(pairs[:, 0], pairs[:, 1], weight.astype(np.float32), first)

    def _build_boards(self, as_of: int) -> Edges:
        items = sorted((b, v) for b, v in self._boards.items() if v[1] < as_of)
        return Edges(
            np.array([b for b, _ in items], dtype=np.int64),
            np.array([v[0] for _, v in items], dtype=np.int64),
            np.ones(len(items), dtype=np.float32),
            np.array([v[1] for _, v in items], dtype=np.int64),
        )

    def _build_follows(self, as_of: int) -> Follows:
        # The latest follow/unfollow before as_of decides; replaying keeps only the final state.
        state: dict[tuple[int, int, int], tuple[bool, int]] = {}
        for key, (on, t) in sorted(self._follows.items(), key=lambda kv: kv[1][1]):
            if t < as_of:
                state[key] = (on, t)
        rows = sorted((*k, t) for k, (on, t) in state.items() if on)
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        return Follows(arr[:, 0].copy(), arr[:, 1].astype(np.int8), arr[:, 2].copy(),
                       arr[:, 3].copy())  # fmt: skip


def _sum_by_pair(
    a: np.ndarray, b: np.ndarray, w: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (a, b) pairs, their summed weights and their earliest times."""
    pairs = np.stack([a, b], axis=1)
    if not len(pairs):
        return pairs.reshape(0, 2), np.empty(0), np.empty(0, dtype=np.int64)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    first = np.full(len(uniq), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inverse, t)
    return uniq, np.bincount(inverse, weights=w, minlength=len(uniq)), first


__all__ = ["BOARD", "USER", "TrainingDataBuilder", "event_ms"]
