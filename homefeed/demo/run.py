"""`make demo`: a world simulated through the whole pipeline, then five feeds in an online A/B.

Steps: simulate two weeks of a world and log every event through the SDK into the embedded
log; persist the topics to the lake; run the daily jobs for every day and the hourly jobs for
the last hours; train a bundle from the lake, register and promote it; then serve the five
feeds of the home feed's history to simulated users assigned by hash and compare them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from homefeed.config import HomefeedConfig, SimulatorConfig
from homefeed.demo.ab import AbResult, Strategy, run_ab
from homefeed.experiments import ExperimentConfig
from homefeed.lake.layout import HOUR_MS
from homefeed.simulator.run import Simulation

EXPERIMENT = "home_feed_history"
ARMS = ("chronological", "picked_for_you", "smart_feed", "gbdt", "gbdt_realtime")
ARM_TITLES = {
    "chronological": "2012 chronological following",
    "picked_for_you": "2013 picked for you (ALS)",
    "smart_feed": "2014 smart feed (relevance)",
    "gbdt": "2015 GBDT-ranked",
    "gbdt_realtime": "2016 GBDT + real-time",
}


_CLIENT = {"platform": "web"}
BAD_EVENTS: list[dict[str, Any]] = [
    {"event_type": "unicorn", "user_id": 1},
    {"event_type": "click", "user_id": 1, "event_time": "2026-11-01T10:00:00Z",
     "surface": "home_feed", "client": _CLIENT},
    {"event_type": "save", "user_id": "seven", "pin_id": 1, "board_id": 2,
     "event_time": "2026-11-01T10:00:00Z", "surface": "home_feed", "client": _CLIENT},
    {"event_type": "click", "user_id": 1, "pin_id": 5, "event_time": "yesterday",
     "surface": "home_feed", "client": _CLIENT},
]  # fmt: skip


@dataclass(frozen=True)
class DemoSize:
    users: int
    pins: int
    days: int
    extra_hours: int  # simulated past the last day, so its label window is complete
    hourly_hours: int  # hourly jobs run for the last this-many hours of the last day
    job_days: int  # daily jobs run for the last this-many days (the ranker trains on the last)
    ab_hours: int  # length of the online experiment


FULL = DemoSize(users=2000, pins=20000, days=14, extra_hours=6, hourly_hours=2, job_days=3,
                ab_hours=24)  # fmt: skip
SMALL = DemoSize(users=500, pins=5000, days=5, extra_hours=6, hourly_hours=2, job_days=2,
                 ab_hours=12)  # fmt: skip


@dataclass
class DemoResult:
    events: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    ab: AbResult | None = None
    lake_report: Any = None
    experiment: Any = None


Say = Callable[[str], None]


def configure(config: HomefeedConfig, size: DemoSize, data_dir: str) -> HomefeedConfig:
    """The demo's config: its own log and lake, the world size, a label window that fits."""
    cfg = config.model_copy(deep=True)
    cfg.log.local.path = f"{data_dir}/log"
    cfg.lake.uri = f"{data_dir}/lake"
    cfg.simulator = SimulatorConfig.model_validate({
        "users": size.users, "pins": size.pins, "days": size.days + size.extra_hours / 24,
        "seed": config.simulator.seed, "topics": config.simulator.topics,
        "start": config.simulator.start,
    })  # fmt: skip
    cfg.jobs.label_window_hours = float(size.extra_hours - 1)  # the last hour is not marked
    cfg.models.train_days = size.days
    return cfg


def simulate_into_log(cfg: HomefeedConfig, say: Say, progress: Callable[[int, int], None] | None
                      ) -> tuple[Simulation, int]:  # fmt: skip
    """Run the world through the SDK into the log; the Simulation keeps the users' memory."""
    from homefeed.events.registry import SchemaRegistry
    from homefeed.events.sdk import EventLogger, ensure_event_topics
    from homefeed.log.factory import open_log

    sim = Simulation(cfg.simulator)
    count = 0
    with open_log(cfg.log) as log:
        ensure_event_topics(log, SchemaRegistry(), cfg.log.partitions,
                            int(cfg.log.retention_hours * 3600_000))  # fmt: skip
        with EventLogger(log, partitions=cfg.log.partitions) as logger:
            for event in sim.render(sim.world_columns(), surface="other"):
                logger.log(event)
                count += 1
            for event in sim.run(progress):
                logger.log(event)
                count += 1
            for event in BAD_EVENTS:  # a buggy service: dead letters with reasons, no crash
                rejection = logger.log(event)
                say(f"  bad event -> events.dead_letter: {rejection}")
    say(f"{count:,} events logged to {cfg.log.local.path}")
    return sim, count


def persist_all(cfg: HomefeedConfig, say: Say) -> int:
    """Persist every topic to the lake, exactly once, and stop at the end of the log."""
    from homefeed.lake import open_lake
    from homefeed.log.factory import open_log
    from homefeed.persister import Persister

    with open_log(cfg.log) as log:
        report = Persister(log, open_lake(cfg.lake), config=cfg.persister).run()
    say(f"{report.total_rows:,} rows persisted to {cfg.lake.uri}/events")
    return int(report.total_rows)


def run_jobs(cfg: HomefeedConfig, size: DemoSize, say: Say,
             on_step: Callable[[str], None] | None = None) -> int:  # fmt: skip
    """Hourly jobs for the last hours, daily jobs for the last days (cumulative tables start
    empty on the first of them): the tables training reads. `homefeed backfill` runs them all."""
    from homefeed.jobs.definitions import DAILY, HOURLY, day_start_ms
    from homefeed.jobs.engines import open_engine
    from homefeed.jobs.runner import run_job
    from homefeed.lake import open_lake

    lake = open_lake(cfg.lake)
    first = _start_day(cfg)
    runs = 0
    with open_engine(cfg.engine) as engine:
        last_day_ms = day_start_ms(first + timedelta(days=size.days - 1))
        for hour in range(24 - size.hourly_hours, 24):
            for spec in HOURLY:
                run_job(engine, lake, spec, last_day_ms + hour * HOUR_MS, cfg.jobs)
                runs += 1
                _tick(on_step, spec.name)
        # Earlier days: only the cumulative tables (each reads its own previous day), and on
        # the day before the last days whatever they read as previous; the last days: all.
        read_as_previous = {p.table for spec in DAILY for p in spec.previous}
        cumulative = {spec.name for spec in DAILY if spec.name in {p.table for p in spec.previous}}
        for offset in range(size.days):
            first_recent = size.days - size.job_days
            wanted = (
                set(s.name for s in DAILY)
                if offset >= first_recent
                else read_as_previous
                if offset == first_recent - 1
                else cumulative
            )
            for spec in [s for s in DAILY if s.name in wanted]:
                run_job(engine, lake, spec, day_start_ms(first + timedelta(days=offset)), cfg.jobs)
                runs += 1
                _tick(on_step, spec.name)
    say(f"{runs} job runs written to {cfg.lake.uri}/tables")
    return runs


def _tick(on_step: Callable[[str], None] | None, label: str) -> None:
    if on_step is not None:
        on_step(label)


def _start_day(cfg: HomefeedConfig) -> date:
    return datetime.fromisoformat(cfg.simulator.start.replace("Z", "+00:00")).astimezone(UTC).date()


def train_and_deploy(cfg: HomefeedConfig, size: DemoSize, say: Say) -> tuple[Any, str]:
    """Train from the lake, register, promote; the bundle as the serving side loads it."""
    from homefeed.cli.models import retrain
    from homefeed.lake import open_lake
    from homefeed.models.bundle import ModelBundle
    from homefeed.models.registry import ModelRegistry

    first = _start_day(cfg)
    result = retrain(cfg, first, first + timedelta(days=size.days - 1), promote=True)
    registry = ModelRegistry(open_lake(cfg.lake), cfg.models.name)
    local = registry.fetch(result.version, _bundle_dir(cfg, result.version))
    say(f"model {cfg.models.name} {result.version} registered in the lake and promoted")
    return ModelBundle.load(local), result.version


def _bundle_dir(cfg: HomefeedConfig, version: str) -> Any:
    from pathlib import Path

    return Path(cfg.lake.uri).parent / "bundles" / version


def demo_experiment(start_ms: int) -> ExperimentConfig:
    when = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()
    return ExperimentConfig.model_validate({
        "salt": "home-feed-history",
        "start": when,
        "control": "chronological",
        "variants": [{"name": arm, "weight": 20, "target": arm} for arm in ARMS],
    })  # fmt: skip


def build_strategies(bundle: Any, data: Any) -> dict[str, Strategy]:
    """The five arms. ``data`` is what the bundle was trained on (for exclusions and the
    chronological feed, which is the following source with a six-hour half-life)."""
    from homefeed.demo.strategies import (
        GbdtStrategy,
        SmartFeedStrategy,
        SourceStrategy,
        known_pins,
    )
    from homefeed.models.sources import make_source

    exclude = known_pins(data)
    trending = bundle.sources.get("trending")
    chrono = make_source("following", half_life_days=0.25, max_age_days=14)
    chrono.fit(data)
    return {
        "chronological": SourceStrategy("chronological", chrono, exclude, trending),
        "picked_for_you": SourceStrategy(
            "picked_for_you", bundle.sources["als"], exclude, trending
        ),
        "smart_feed": SmartFeedStrategy(bundle, exclude),
        "gbdt": GbdtStrategy("gbdt", bundle, exclude),
        "gbdt_realtime": GbdtStrategy("gbdt_realtime", bundle, exclude, realtime=True),
    }


def run_demo(
    config: HomefeedConfig,
    size: DemoSize,
    data_dir: str,
    say: Say,
    progress: Callable[[str, int, int], None] | None = None,
) -> DemoResult:
    """The whole demo; ``progress(stage, done, total)`` drives progress bars."""
    from homefeed.events.sdk import EventLogger
    from homefeed.log.factory import open_log
    from homefeed.models.lake_data import load_training_data

    cfg = configure(config, size, data_dir)
    out = DemoResult()
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        out.timings[stage] = round(now - clock, 1)
        say(f"({stage}: {now - clock:.1f} s)")
        clock = now

    def bar(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, t: progress(stage, d, t))

    sim, out.events = simulate_into_log(cfg, say, bar("simulate"))
    lap("simulate + log")
    persist_all(cfg, say)
    lap("persist")
    run_jobs(cfg, size, say)
    lap("jobs")
    bundle, out.model_version = train_and_deploy(cfg, size, say)
    lap("train + deploy")
    first = _start_day(cfg)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    data = load_training_data(cfg, start, start + timedelta(days=size.days))
    strategies = build_strategies(bundle, data)
    ab_start = int(sim.world.end_ms)
    experiment = out.experiment = demo_experiment(ab_start)
    with open_log(cfg.log) as log, EventLogger(log, partitions=cfg.log.partitions) as logger:
        out.ab = run_ab(
            sim.model, strategies, experiment, start_ms=ab_start, hours=size.ab_hours,
            logger=logger, experiment_name=EXPERIMENT, on_hour=bar("experiment"),
        )  # fmt: skip
    lap("experiment")
    persist_all(cfg, say)
    out.lake_report = lake_report(cfg, experiment)
    lap("persist + report from the lake")
    return out


def lake_report(cfg: HomefeedConfig, experiment: ExperimentConfig) -> Any:
    """The experiment's report computed from the lake with SQL (exposures and events)."""
    from homefeed.experiments.analysis import experiment_report
    from homefeed.experiments.settings import ExperimentsConfig
    from homefeed.jobs.catalog import register_lake
    from homefeed.jobs.engines import open_engine
    from homefeed.lake import open_lake

    experiments = ExperimentsConfig.model_validate({"definitions": {EXPERIMENT: experiment}})
    with open_engine(cfg.engine) as engine:
        register_lake(engine, open_lake(cfg.lake))
        return experiment_report(engine, EXPERIMENT, experiments)
