"""Run the world forward: sessions over simulated days, streamed hour by hour.

Memory holds one simulated hour of events at a time (plus the world), so 10M events stream
through without being held. Within the stream events are in event-time order: each hour's
events are sorted, and events a session emits past the hour's end are carried into the next.
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
from homefeed.simulator.behavior import Behaviour, UserModel
from homefeed.simulator.feeds import BASELINE_VERSION, BaselineFeed
from homefeed.simulator.timefmt import format_ms
from homefeed.simulator.world import World

# Relative activity by hour of day (UTC): quiet nights, busy evenings.
DIURNAL = np.array([0.3, 0.2, 0.15, 0.12, 0.12, 0.18, 0.35, 0.6, 0.8, 0.85, 0.9, 1.0,
                    1.05, 1.0, 0.95, 0.95, 1.0, 1.1, 1.3, 1.5, 1.6, 1.4, 1.0, 0.6])  # fmt: skip


@dataclass
class SimulationSummary:
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
    on_hour: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every event of the simulation, in event-time order. Deterministic by ``config.seed``."""
    world = World.generate(config)
    rng = np.random.default_rng([config.seed, 1])
    model = UserModel(world, behaviour)
    feed = BaselineFeed(world, rng)
    if emit_world:
        yield from world_events(world, model)
    hours = math.ceil(config.days * 24)
    carry: list[dict[str, Any]] = []
    for hour in range(hours):
        start = world.start + hour * 3600
        end = min(world.start + config.days * 86_400, start + 3600)
        events = carry + _hour_events(world, model, feed, rng, start, end)
        events.sort(key=_time_key)
        cut_time = format_ms(int(end * 1000)) if hour < hours - 1 else "~"
        cut = next((i for i, e in enumerate(events) if e["event_time"] >= cut_time), len(events))
        carry = events[cut:]
        yield from events[:cut]
        if on_hour is not None:
            on_hour(hour + 1, hours)


def _time_key(event: dict[str, Any]) -> str:
    return str(event["event_time"])


def _hour_events(
    world: World, model: UserModel, feed: BaselineFeed, rng: np.random.Generator,
    start: float, end: float,
) -> list[dict[str, Any]]:  # fmt: skip
    feed.set_time(start)
    events = _pin_creations(world, model, start, end)
    hour_of_day = int(start // 3600) % 24
    expected = world.activity * DIURNAL[hour_of_day] / DIURNAL.sum() * (end - start) / 3600
    users = np.repeat(np.arange(world.users), rng.poisson(expected))
    times = start + rng.uniform(0, end - start, size=len(users))
    for user, at in sorted(zip(users.tolist(), times.tolist(), strict=True), key=lambda x: x[1]):
        pins, sources = feed.feed(user, model.following[user], model.hidden.get(user, set()))
        model.counter += 1
        request_id = f"req-{world.seed}-{model.counter}"
        events += model.react(user, pins, request_id=request_id, sources=sources,
                              model_version=BASELINE_VERSION, now=at)  # fmt: skip
    return events


def _pin_creations(
    world: World, model: UserModel, start: float, end: float
) -> list[dict[str, Any]]:
    created = np.flatnonzero((world.pin_created >= start) & (world.pin_created < end))
    return [_pin_create(world, model, int(p), int(world.pin_created[p] * 1000)) for p in created]


def _pin_create(world: World, model: UserModel, pin: int, at_ms: int) -> dict[str, Any]:
    topic = world.topics[int(world.pin_topic[pin])]
    return model._event("pin_create", int(world.pin_creator[pin]), at_ms, "other", pin_id=pin,
                        board_id=int(world.pin_board[pin]), title=f"{topic} idea {pin}",
                        topics=[topic])  # fmt: skip


def world_events(world: World, model: UserModel) -> Iterator[dict[str, Any]]:
    """The world as it stands at the start: boards, existing pins, follows (at start time)."""
    at = int(world.start * 1000)
    for board, owner in enumerate(world.board_owner.tolist()):
        topic = world.topics[int(world.board_topic[board])]
        yield model._event("board_create", owner, at, "other", board_id=board,
                           name=f"{topic} board", topic=topic)  # fmt: skip
    for pin in np.flatnonzero(world.pin_created < world.start).tolist():
        yield _pin_create(world, model, pin, at)
    for user in range(world.users):
        for target in world.follows_users[user].tolist():
            yield model._event("follow", user, at, "other", action="follow",
                               target_type="user", target_id=target)  # fmt: skip
        for board in world.follows_boards[user].tolist():
            yield model._event("follow", user, at, "other", action="follow",
                               target_type="board", target_id=board)  # fmt: skip


def simulate(
    config: SimulatorConfig,
    sink: Callable[[dict[str, Any]], object],
    *,
    progress: bool = False,
    behaviour: Behaviour | None = None,
) -> SimulationSummary:
    """Stream the simulation into ``sink`` (e.g. ``EventLogger.log``) and count what went out."""
    summary = SimulationSummary(users=config.users, pins=config.pins, days=config.days)
    started = time.perf_counter()
    with _progress(progress) as on_hour:
        for event in iter_events(config, behaviour=behaviour, on_hour=on_hour):
            sink(event)
            summary.counts[event["event_type"]] += 1
    summary.seconds = time.perf_counter() - started
    return summary


class _progress:
    """A rich progress bar over simulated hours, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.bar = Progress("simulated hours", *columns, transient=True)
        self.bar.start()
        task = self.bar.add_task("hours", total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
