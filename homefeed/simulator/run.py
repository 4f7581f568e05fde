"""Run the world forward on the baseline feed and stream the events, hour by hour.

Each simulated hour: users start sessions at random times (their activity level times a
diurnal curve in their own time zone), each session gets a baseline feed and the user model
plays it; pins and boards created in the hour add their creation events. The hour's events
are sorted by time; those past the hour's end (sessions still running) are carried into the
next hour, and events past the window's end are dropped. So the stream is in event-time
order, and memory holds the world, the users' bounded memory and about one hour of events.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from homefeed.config import SimulatorConfig
from homefeed.simulator import arrays
from homefeed.simulator.behavior import Behaviour, UserModel
from homefeed.simulator.columns import BOARD_CREATE, FOLLOW, PIN_CREATE, EventColumns, Renderer
from homefeed.simulator.feeds import BASELINE_VERSION, SOURCES, BaselineFeed
from homefeed.simulator.world import DAY_MS, World

HOUR_MS = 3_600_000
# Relative session rate by local hour of day: quiet nights, a lunch bump, busy evenings.
DIURNAL = np.array([0.35, 0.2, 0.12, 0.08, 0.08, 0.12, 0.3, 0.6, 0.8, 0.85, 0.9, 1.0,
                    1.1, 1.0, 0.95, 0.95, 1.0, 1.1, 1.3, 1.55, 1.7, 1.6, 1.2, 0.7])  # fmt: skip
BATCH_SESSIONS = 4096  # sessions played per vectorised batch: bounds temporary arrays

ProgressFn = Callable[[int, int], None]


@dataclass
class SimulationSummary:
    """What a run emitted: events per type, the world's size, and how long it took."""

    counts: Counter[str] = field(default_factory=Counter)
    users: int = 0
    pins: int = 0
    days: float = 0.0
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def iter_events(
    config: SimulatorConfig,
    *,
    emit_world: bool = True,
    behaviour: Behaviour | None = None,
    feed_size: int = 40,
    on_progress: ProgressFn | None = None,
) -> Iterator[dict[str, Any]]:
    """Every event of the simulation as schema-valid dicts, in event-time order.

    Deterministic by ``config.seed``: the same config gives the same stream, event ids
    (``sim-{seed}-{n}``) included. With ``emit_world`` the world as it stands at the start
    (boards, pins and follows that already exist) comes first, stamped at the start time, so
    the lake knows every pin's topics. ``on_progress(hours_done, hours_total)`` is called
    after each simulated hour. Raises ValueError if the window ends in the future.
    """
    sim = Simulation(config, behaviour, feed_size)
    if emit_world:
        yield from sim.render(sim.world_columns(), surface="other")
    yield from sim.run(on_progress)


def simulate(
    config: SimulatorConfig,
    sink: Callable[[dict[str, Any]], object],
    *,
    progress: bool = False,
    emit_world: bool = True,
    behaviour: Behaviour | None = None,
) -> SimulationSummary:
    """Stream the simulation into ``sink`` (``EventLogger.log`` in production) and count it."""
    summary = SimulationSummary(users=config.users, pins=config.pins, days=config.days)
    counts: Counter[str] = summary.counts
    started = time.perf_counter()
    with _Progress(progress) as on_progress:
        for event in iter_events(
            config, emit_world=emit_world, behaviour=behaviour, on_progress=on_progress
        ):
            sink(event)
            counts[event["event_type"]] += 1
    summary.seconds = time.perf_counter() - started
    return summary


class Simulation:
    """One run: the world, its users (model + memory), the baseline feed and the clock."""

    def __init__(
        self, config: SimulatorConfig, behaviour: Behaviour | None = None, feed_size: int = 40
    ) -> None:
        self.world = World.generate(config)
        _check_window(self.world)
        seed = config.seed
        self.model = UserModel(self.world, behaviour, seed=0)
        self.model.rng = np.random.default_rng([seed, 7])
        self.feed = BaselineFeed(self.world, feed_size)
        self.rng = np.random.default_rng([seed, 8])
        self.renderer = Renderer(self.world, f"sim-{seed}-")
        self.request_prefix = f"sim-{seed}-req"
        self.next_session = 0
        w = self.world
        self._pins_by_time = np.argsort(w.pin_created_ms, kind="stable")
        self._boards_by_time = np.argsort(w.board_created_ms, kind="stable")

    def render(self, cols: EventColumns, surface: str = "home_feed") -> Iterator[dict[str, Any]]:
        prefix = self.request_prefix
        return self.renderer.render(
            cols, SOURCES, BASELINE_VERSION, lambda s: f"{prefix}{s}", surface
        )

    def world_columns(self) -> EventColumns:
        """Boards, pins and follows that exist before the start, stamped at the start."""
        w = self.world
        boards = np.flatnonzero(w.board_created_ms < w.start_ms)
        pins = np.flatnonzero(w.pin_created_ms < w.start_ms)
        fu, fb = w.follows_users, w.follows_boards

        def at(n: int) -> np.ndarray:
            return np.full(n, w.start_ms, dtype=np.int64)

        return EventColumns.concat([
            EventColumns.build(BOARD_CREATE, at(len(boards)), w.board_owner[boards], boards),
            EventColumns.build(PIN_CREATE, at(len(pins)), w.pin_creator[pins], pins,
                               w.pin_board[pins]),
            EventColumns.build(FOLLOW, at(len(fu.values)), arrays.segment_ids(fu.offsets),
                               fu.values, 0, 0),
            EventColumns.build(FOLLOW, at(len(fb.values)), arrays.segment_ids(fb.offsets),
                               fb.values, 0, 1),
        ])  # fmt: skip

    def run(self, on_progress: ProgressFn | None = None) -> Iterator[dict[str, Any]]:
        """The window's events, hour by hour, in time order."""
        w = self.world
        hours = math.ceil((w.end_ms - w.start_ms) / HOUR_MS)
        carry = EventColumns.empty()
        for hour in range(hours):
            lo = w.start_ms + hour * HOUR_MS
            hi = min(w.end_ms, lo + HOUR_MS)
            cols = EventColumns.concat([carry, self.creations(lo, hi), self.sessions(lo, hi)])
            cols = cols.sorted_by_time()
            cut = int(np.searchsorted(cols.time_ms, hi, side="left"))
            carry = cols.take(np.arange(cut, len(cols))) if hi < w.end_ms else EventColumns.empty()
            yield from self.render(cols.take(np.arange(cut)))
            if on_progress is not None:
                on_progress(hour + 1, hours)

    def creations(self, lo: int, hi: int) -> EventColumns:
        """board_create and pin_create events for what is created in [lo, hi)."""
        w = self.world
        boards = _between(self._boards_by_time, w.board_created_ms, lo, hi)
        pins = _between(self._pins_by_time, w.pin_created_ms, lo, hi)
        return EventColumns.concat([
            EventColumns.build(BOARD_CREATE, w.board_created_ms[boards], w.board_owner[boards],
                               boards),
            EventColumns.build(PIN_CREATE, w.pin_created_ms[pins], w.pin_creator[pins], pins,
                               w.pin_board[pins]),
        ])  # fmt: skip

    def sessions(self, lo: int, hi: int) -> EventColumns:
        """Sessions starting in [lo, hi), played in batches of distinct users."""
        users, starts = self._arrivals(lo, hi)
        sessions = self.next_session + np.arange(len(users), dtype=np.int64)
        self.next_session += len(users)
        self.feed.set_time(lo)
        rounds = arrays.occurrence(users)
        parts: list[EventColumns] = []
        for r in range(int(rounds.max()) + 1 if len(rounds) else 0):
            index = np.flatnonzero(rounds == r)
            for b in range(0, len(index), BATCH_SESSIONS):
                part = index[b : b + BATCH_SESSIONS]
                feeds = self.feed.build(
                    users[part], starts[part], sessions[part], self.model.state, self.rng
                )
                parts.append(self.model.react_batch(feeds))
        return EventColumns.concat(parts)

    def _arrivals(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Who starts a session in [lo, hi) and when, in time order."""
        w = self.world
        local_hour = ((lo + hi) // 2 // HOUR_MS + w.utc_offset) % 24
        rate = w.activity * DIURNAL[local_hour] / DIURNAL.mean() * ((hi - lo) / DAY_MS)
        users = np.repeat(np.arange(w.users), self.rng.poisson(rate))
        starts = lo + (self.rng.random(len(users)) * (hi - lo)).astype(np.int64)
        order = np.argsort(starts, kind="stable")
        return users[order], starts[order]


def _between(order: np.ndarray, times: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Ids (from ``order``, sorted by ``times``) whose time is in [lo, hi)."""
    ordered = times[order]
    return order[np.searchsorted(ordered, lo, side="left") : np.searchsorted(ordered, hi, "left")]


def _check_window(world: World) -> None:
    """Events must not be stamped in the future: the SDK would reject them all."""
    now_ms = int(time.time() * 1000)
    if world.end_ms > now_ms:
        raise ValueError(
            f"the simulated window ends {(world.end_ms - now_ms) / DAY_MS:.1f} days in the "
            "future; lower simulator.days or move simulator.start back"
        )


class _Progress:
    """A rich progress bar over simulated hours, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> ProgressFn | None:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            "simulated hours", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            transient=True,
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task("hours", total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
