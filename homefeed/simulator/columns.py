"""Events as columns while simulating, as schema-valid dicts when they leave.

The simulator computes events as parallel numpy arrays (``EventColumns``) so that sorting a
simulated hour by time, carrying its tail into the next hour and counting are vectorised.
``Renderer`` turns columns into the dicts the SDK validates, in small chunks: building a whole
hour of dicts at once would leave tens of thousands of live containers for the cyclic garbage
collector to rescan, which measured 3-5x slower than chunks of a few thousand.

Column meaning per kind (unused columns are 0):

============  ===========  ===============  =====================  ========
kind          ref          value            code                   session
============  ===========  ===============  =====================  ========
impression    pin          position         candidate source idx   request
closeup       pin          duration_ms
click         pin
save          pin          board
hide          pin                           reason idx
follow        target id                     0 user, 1 board
pin_create    pin          board
board_create  board
============  ===========  ===============  =====================  ========
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from homefeed.simulator.world import World

IMPRESSION, CLOSEUP, CLICK, SAVE, HIDE, FOLLOW, PIN_CREATE, BOARD_CREATE = range(8)
KIND_NAMES = (
    "impression", "closeup", "click", "save", "hide", "follow", "pin_create", "board_create",
)  # fmt: skip
HIDE_REASONS = ("not_interested", "seen_it", "irrelevant", "offensive", "other")
TARGET_TYPES = ("user", "board")
PLATFORM = "simulator"
RENDER_CHUNK = 2048


@dataclass(frozen=True, eq=False)
class EventColumns:
    """Parallel arrays, one row per event; see the module docstring for what each holds."""

    kind: np.ndarray  # uint8
    time_ms: np.ndarray  # int64, epoch milliseconds
    user: np.ndarray  # int64
    ref: np.ndarray  # int64
    value: np.ndarray  # int64
    code: np.ndarray  # int64
    session: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def empty(cls) -> EventColumns:
        return cls.build(0, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))

    @classmethod
    def build(
        cls,
        kind: int,
        time_ms: np.ndarray,
        user: np.ndarray,
        ref: np.ndarray,
        value: np.ndarray | int = 0,
        code: np.ndarray | int = 0,
        session: np.ndarray | int = 0,
    ) -> EventColumns:
        """Rows of one kind; scalars broadcast to the length of ``time_ms``."""
        n = len(time_ms)

        def col(x: np.ndarray | int) -> np.ndarray:
            return np.broadcast_to(np.asarray(x, dtype=np.int64), (n,)).copy()

        return cls(
            np.full(n, kind, dtype=np.uint8), col(time_ms), col(user), col(ref), col(value),
            col(code), col(session),
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[EventColumns]) -> EventColumns:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def take(self, index: np.ndarray) -> EventColumns:
        return EventColumns(*(getattr(self, f.name)[index] for f in fields(self)))

    def sorted_by_time(self) -> EventColumns:
        """Stable: events at the same millisecond keep their order (a session's own order)."""
        return self.take(np.argsort(self.time_ms, kind="stable"))

    def counts(self) -> dict[str, int]:
        per_kind = np.bincount(self.kind, minlength=len(KIND_NAMES))
        return {KIND_NAMES[k]: int(c) for k, c in enumerate(per_kind.tolist()) if c}


class TimeFormatter:
    """Epoch ms -> 'YYYY-MM-DDTHH:MM:SS.mmmZ', formatting each distinct second once."""

    _MILLIS = tuple(f".{i:03d}Z" for i in range(1000))

    def format(self, time_ms: np.ndarray) -> list[str]:
        seconds, millis = np.divmod(time_ms, 1000)
        unique, inverse = np.unique(seconds, return_inverse=True)
        prefixes = np.datetime_as_string(unique.astype("datetime64[s]"), unit="s").tolist()
        ms = self._MILLIS
        return [prefixes[i] + ms[m] for i, m in zip(inverse.tolist(), millis.tolist(), strict=True)]


class Renderer:
    """Builds event dicts from columns, numbering event ids ``{id_prefix}{n}`` in output order.

    ``world`` supplies what creation events carry (pin titles and topics, board names).
    """

    def __init__(self, world: World, id_prefix: str, surface: str = "home_feed") -> None:
        self.world = world
        self.id_prefix = id_prefix
        self.surface = surface
        self.next_id = 0
        self._times = TimeFormatter()
        # Builders for every kind but impressions, indexed by kind.
        self._other: tuple[Callable[..., dict[str, Any]], ...] = (
            self._impression_unused, self._closeup, self._click, self._save, self._hide,
            self._follow, self._pin_create, self._board_create,
        )  # fmt: skip
        self._pin_topics: list[list[str]] | None = None  # built on the first pin_create

    def render(
        self,
        cols: EventColumns,
        sources: Sequence[str],
        model_version: str,
        request_id: Callable[[int], str],
        surface: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield one dict per row, in row order. ``sources[code]`` names an impression's
        candidate source; ``request_id(session)`` names its request. Feed events get
        ``surface`` (default: the renderer's); creation events get "other"."""
        surface = surface or self.surface
        n = len(cols)
        first = self.next_id
        self.next_id += n
        # Python lists once per call; dicts per chunk (see the module docstring).
        rows = list(zip(
            cols.kind.tolist(), self._times.format(cols.time_ms), cols.user.tolist(),
            cols.ref.tolist(), cols.value.tolist(), cols.code.tolist(), cols.session.tolist(),
            strict=True,
        ))  # fmt: skip
        for lo in range(0, n, RENDER_CHUNK):
            chunk = rows[lo : lo + RENDER_CHUNK]
            yield from self._chunk(chunk, first + lo, sources, model_version, request_id, surface)

    def _chunk(
        self,
        rows: list[tuple[int, str, int, int, int, int, int]],
        first_id: int,
        sources: Sequence[str],
        model_version: str,
        request_id: Callable[[int], str],
        surface: str,
    ) -> list[dict[str, Any]]:
        prefix = self.id_prefix
        other = self._other
        out: list[dict[str, Any]] = []
        append = out.append
        for n, (kind, at, user, ref, value, code, session) in enumerate(rows, first_id):
            if kind == IMPRESSION:  # three quarters of all events: the fast path
                append({"event_id": f"{prefix}{n}", "event_type": "impression", "user_id": user,
                        "event_time": at, "surface": surface, "client": {"platform": PLATFORM},
                        "pin_id": ref, "request_id": request_id(session), "position": value,
                        "candidate_source": sources[code],
                        "model_version": model_version})  # fmt: skip
            else:
                append(other[kind](f"{prefix}{n}", at, user, ref, value, code, surface))
        return out

    @staticmethod
    def _impression_unused(*_: Any) -> dict[str, Any]:
        raise AssertionError("impressions take the fast path")

    @staticmethod
    def _closeup(
        eid: str, at: str, user: int, pin: int, duration: int, _c: int, surface: str
    ) -> dict[str, Any]:
        return {"event_id": eid, "event_type": "closeup", "user_id": user, "event_time": at,
                "surface": surface, "client": {"platform": PLATFORM}, "pin_id": pin,
                "duration_ms": duration}  # fmt: skip

    @staticmethod
    def _click(
        eid: str, at: str, user: int, pin: int, _v: int, _c: int, surface: str
    ) -> dict[str, Any]:
        return {"event_id": eid, "event_type": "click", "user_id": user, "event_time": at,
                "surface": surface, "client": {"platform": PLATFORM}, "pin_id": pin}  # fmt: skip

    @staticmethod
    def _save(
        eid: str, at: str, user: int, pin: int, board: int, _c: int, surface: str
    ) -> dict[str, Any]:
        return {"event_id": eid, "event_type": "save", "user_id": user, "event_time": at,
                "surface": surface, "client": {"platform": PLATFORM}, "pin_id": pin,
                "board_id": board}  # fmt: skip

    @staticmethod
    def _hide(
        eid: str, at: str, user: int, pin: int, _v: int, reason: int, surface: str
    ) -> dict[str, Any]:
        return {"event_id": eid, "event_type": "hide", "user_id": user, "event_time": at,
                "surface": surface, "client": {"platform": PLATFORM}, "pin_id": pin,
                "reason": HIDE_REASONS[reason]}  # fmt: skip

    @staticmethod
    def _follow(
        eid: str, at: str, user: int, target: int, _v: int, target_type: int, surface: str
    ) -> dict[str, Any]:
        return {"event_id": eid, "event_type": "follow", "user_id": user, "event_time": at,
                "surface": surface, "client": {"platform": PLATFORM}, "action": "follow",
                "target_type": TARGET_TYPES[target_type], "target_id": target}  # fmt: skip

    def _pin_create(
        self, eid: str, at: str, user: int, pin: int, board: int, _c: int, _s: str
    ) -> dict[str, Any]:
        if self._pin_topics is None:
            w = self.world
            self._pin_topics = [
                [w.topics[t]] if t2 < 0 else [w.topics[t], w.topics[t2]]
                for t, t2 in zip(w.pin_topic.tolist(), w.pin_topic2.tolist(), strict=True)
            ]
        topics = list(self._pin_topics[pin])  # a copy: a sink may mutate the event
        title = f"{topics[0].replace('_', ' ').capitalize()} idea #{pin}"
        return {"event_id": eid, "event_type": "pin_create", "user_id": user, "event_time": at,
                "surface": "other", "client": {"platform": PLATFORM}, "pin_id": pin,
                "board_id": board, "title": title, "topics": topics}  # fmt: skip

    def _board_create(
        self, eid: str, at: str, user: int, board: int, _v: int, _c: int, _s: str
    ) -> dict[str, Any]:
        topic = self.world.topics[int(self.world.board_topic[board])]
        return {"event_id": eid, "event_type": "board_create", "user_id": user, "event_time": at,
                "surface": "other", "client": {"platform": PLATFORM}, "board_id": board,
                "name": f"My {topic.replace('_', ' ')}", "topic": topic}  # fmt: skip
