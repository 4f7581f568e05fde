"""Online A/B experiments in the simulator: simulated users react to the feeds they are served.

Every user is assigned to one arm by hashing (``homefeed.experiments.assign_many``) and
exposure is logged through the SDK. Sessions arrive hour by hour with the simulator's diurnal
curve; each hour, every arm builds feeds for its users in one batch (``Strategy.feeds``) and
its own copy of the users (``UserModel.clone``) reacts. The copies start from the same memory
and the same random stream, so arms differ only by what they serve. A strategy that reacts in
real time sees its users' events after each hour (``Strategy.observe``) before serving again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from homefeed.events.sdk import EventLogger
from homefeed.experiments import ExperimentConfig, compare
from homefeed.experiments.assignment import assign_many
from homefeed.experiments.exposure import exposure_event
from homefeed.experiments.stats import Report
from homefeed.lake.layout import HOUR_MS
from homefeed.models.sources.base import NO_PIN
from homefeed.simulator.behavior import Feeds, UserModel
from homefeed.simulator.columns import CLICK, HIDE, IMPRESSION, SAVE, EventColumns
from homefeed.simulator.run import DIURNAL
from homefeed.simulator.world import World

METRICS = ("saves", "clicks", "hides", "impressions", "diversity")
_KIND_METRIC = {SAVE: "saves", CLICK: "clicks", HIDE: "hides", IMPRESSION: "impressions"}


class Strategy(Protocol):
    """A way of building feeds: ``feeds`` for a batch of users at ``now_ms`` returns
    (pins (n x k, NO_PIN padded, top first), source name per cell)."""

    name: str

    def feeds(self, users: np.ndarray, now_ms: int, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def observe(self, events: EventColumns) -> None: ...


@dataclass
class ArmTotals:
    """Per-user totals of one arm over the experiment (index = position in ``users``)."""

    users: np.ndarray
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    topic_sets: list[set[int]] = field(default_factory=list)

    @classmethod
    def start(cls, users: np.ndarray) -> ArmTotals:
        counts = {m: np.zeros(len(users)) for m in METRICS if m != "diversity"}
        return cls(users, counts, [set() for _ in users])

    def add(self, cols: EventColumns, pin_topic: np.ndarray) -> None:
        row = np.searchsorted(self.users, cols.user)
        for kind, metric in _KIND_METRIC.items():
            mask = cols.kind == kind
            np.add.at(self.counts[metric], row[mask], 1)
        seen = cols.kind == IMPRESSION
        for r, topic in zip(row[seen].tolist(), pin_topic[cols.ref[seen]].tolist(), strict=True):
            self.topic_sets[r].add(topic)

    def per_user(self) -> dict[str, np.ndarray]:
        out = dict(self.counts)
        # Diversity: distinct topics among the pins a user was shown (over the experiment).
        out["diversity"] = np.array([len(s) for s in self.topic_sets], dtype=float)
        return out


@dataclass
class AbResult:
    report: Report
    per_user: dict[str, dict[str, np.ndarray]]
    sessions: dict[str, int]
    seconds: dict[str, float]


def run_ab(
    model: UserModel,
    strategies: Mapping[str, Strategy],
    experiment: ExperimentConfig,
    *,
    start_ms: int,
    hours: int,
    feed_size: int = 25,
    seed: int = 0,
    logger: EventLogger | None = None,
    experiment_name: str = "demo",
    on_hour: Callable[[int, int], None] | None = None,
) -> AbResult:
    """Run ``hours`` of sessions from ``start_ms``; one arm per variant of ``experiment``,
    whose ``target`` names the strategy. Returns the comparison and per-user metrics."""
    import time

    world = model.world
    users = np.arange(world.users, dtype=np.int64)
    names = np.array([v.name for v in experiment.variants])
    arm_of = names[assign_many(experiment, users)]  # variant index -> name
    arms = {v.name: strategies[v.target] for v in experiment.variants}
    members = {name: users[arm_of == name] for name in arms}
    twins = {name: model.clone(id_prefix=f"ab-{name}-") for name in arms}
    totals = {name: ArmTotals.start(members[name]) for name in arms}
    sessions = dict.fromkeys(arms, 0)
    seconds = dict.fromkeys(arms, 0.0)
    if logger is not None:
        _log_exposures(logger, experiment_name, arm_of, start_ms)
    pin_topic = world.pin_topic
    rng = np.random.default_rng([world.seed, 99, seed])
    for hour in range(hours):
        lo = start_ms + hour * HOUR_MS
        who = _arrivals(world, rng, lo, lo + HOUR_MS)
        for name, strategy in arms.items():
            arm_users = np.unique(who[arm_of[who] == name])
            if not len(arm_users):
                continue
            started = time.perf_counter()
            pins, sources = strategy.feeds(arm_users, lo, feed_size)
            feeds = _as_feeds(arm_users, lo, pins, sources, sessions[name])
            cols = twins[name].react_batch(feeds)
            strategy.observe(cols)
            if logger is not None:  # the arm's events, like a service's, through the SDK
                _log_events(logger, twins[name], cols, feeds.source_names, name)
            seconds[name] += time.perf_counter() - started
            sessions[name] += len(arm_users)
            totals[name].add(cols, pin_topic)
        if on_hour is not None:
            on_hour(hour + 1, hours)
    per_user = {name: totals[name].per_user() for name in arms}
    weights = {v.name: v.weight for v in experiment.variants}
    report = compare(per_user, control=experiment.control_name, weights=weights,
                     metrics=list(METRICS))  # fmt: skip
    return AbResult(report, per_user, sessions, seconds)


def _arrivals(world: World, rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    """Users who start a session in [lo, hi): the simulator's diurnal, per-user activity."""
    local_hour = ((lo + hi) // 2 // HOUR_MS + world.utc_offset) % 24
    rate = world.activity * DIURNAL[local_hour] / DIURNAL.mean() * ((hi - lo) / (24 * HOUR_MS))
    return np.repeat(np.arange(world.users, dtype=np.int64), rng.poisson(rate))


def _as_feeds(users: np.ndarray, now_ms: int, pins: np.ndarray, sources: np.ndarray,
              first_session: int) -> Feeds:  # fmt: skip
    keep = pins != NO_PIN
    lengths = keep.sum(axis=1)
    names, codes = np.unique(sources[keep].astype(str), return_inverse=True)
    return Feeds(
        users=users,
        start_ms=np.full(len(users), now_ms, dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        pins=pins[keep].astype(np.int64),
        sources=codes.astype(np.int64).ravel(),
        source_names=tuple(names.tolist()) or ("none",),
        sessions=first_session + np.arange(len(users), dtype=np.int64),
    )


def _log_events(logger: EventLogger, model: UserModel, cols: EventColumns,
                sources: tuple[str, ...], arm: str) -> None:  # fmt: skip
    for event in model.renderer.render(cols.sorted_by_time(), sources, arm,
                                       lambda session: f"ab-{arm}-{session}"):  # fmt: skip
        logger.log(event)


def _log_exposures(logger: EventLogger, name: str, arm_of: np.ndarray, now_ms: int) -> None:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    for user, variant in enumerate(arm_of.tolist()):
        logger.log(exposure_event(user, name, variant, when))
