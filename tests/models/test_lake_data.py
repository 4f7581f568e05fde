"""The lake loader gives what TrainingDataBuilder gives for the same events, and names gaps.

The lake is built through the real pipeline: simulator -> EventLogger -> LocalLog ->
Persister -> LocalLake; then the loader reads it back with SQL on DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from homefeed.config import (
    HomefeedConfig,
    JobsConfig,
    LakeConfig,
    LocalLogConfig,
    PersisterConfig,
    SimulatorConfig,
)
from homefeed.events import EventLogger
from homefeed.jobs.definitions import JOBS, day_start_ms
from homefeed.jobs.engines.duckdb import DuckDBEngine
from homefeed.jobs.runner import run_job
from homefeed.lake.local import LocalLake
from homefeed.log.local import LocalLog
from homefeed.models.data import TrainingData
from homefeed.models.from_events import TrainingDataBuilder
from homefeed.models.lake_data import (
    LakeDataMissing,
    load_ranker_examples,
    load_training_data,
)
from homefeed.persister import Persister
from homefeed.simulator import iter_events

START = datetime(2026, 11, 1, tzinfo=UTC)
WORLD = SimulatorConfig(users=40, pins=300, days=1.0, seed=3, start=START.isoformat())  # type: ignore[call-arg]
JOBS_CONFIG = JobsConfig(label_window_hours=2.0)  # type: ignore[call-arg]


@dataclass
class SimulatedLake:
    root: Path
    lake: LocalLake
    events: list[dict[str, Any]]
    config: HomefeedConfig


def build_simulated_lake(root: Path, world: SimulatorConfig = WORLD) -> SimulatedLake:
    """A lake of one simulated world, every hour marked complete (a sentinel comes after)."""
    events = list(iter_events(world))
    end = START + timedelta(days=world.days)
    # Far enough after the window that every hour through the label window gets marked.
    sentinel = {
        "event_type": "board_create",
        "user_id": 1,
        "board_id": 10**12,
        "event_time": (end + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "surface": "other",
        "client": {"platform": "simulator"},
        "name": "sentinel",
    }
    log = LocalLog(LocalLogConfig(path=str(root / "log"), fsync="never"))  # type: ignore[call-arg]
    with EventLogger(log, partitions=2) as logger:
        assert not logger.log_many([*events, sentinel])
        logger.flush()
    lake = LocalLake(root / "lake")
    config = PersisterConfig(group="persister", batch_records=2000, late_delay_minutes=0.0)  # type: ignore[call-arg]
    Persister(log, lake, config=config).run()
    log.close()
    homefeed = HomefeedConfig(lake=LakeConfig(uri=str(root / "lake")), jobs=JOBS_CONFIG)
    return SimulatedLake(root, lake, events, homefeed)


def run_day_jobs(built: SimulatedLake, day: datetime, names: list[str]) -> None:
    with DuckDBEngine() as engine:
        for name in names:
            run_job(engine, built.lake, JOBS[name], day_start_ms(day.date()), JOBS_CONFIG)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> SimulatedLake:
    return build_simulated_lake(tmp_path_factory.mktemp("sim"))


def assert_same(got: TrainingData, want: TrainingData) -> None:
    def rows(e: Any) -> np.ndarray:
        return np.sort(
            np.rec.fromarrays([e.user_id, e.pin_id, e.action, e.time_ms]), order=["f0", "f1"]
        )

    assert len(got.engagements) == len(want.engagements) > 1000
    got_rows, want_rows = rows(got.engagements), rows(want.engagements)
    assert np.array_equal(np.sort(got_rows), np.sort(want_rows))
    for name in ("pin_id", "creator_id", "created_ms", "topic_indptr", "topic_codes"):
        assert np.array_equal(getattr(got.pins, name), getattr(want.pins, name)), name
    assert got.pins.topics == want.pins.topics and got.pins.text == want.pins.text
    for part in ("pin_boards", "board_owner"):
        for column in ("src", "dst", "weight", "first_ms"):
            a, b = getattr(getattr(got, part), column), getattr(getattr(want, part), column)
            assert a.dtype == b.dtype and np.array_equal(a, b), (part, column)
    for column in ("user_id", "target_type", "target_id", "since_ms"):
        a, b = getattr(got.follows, column), getattr(want.follows, column)
        assert a.dtype == b.dtype and np.array_equal(a, b), column
    assert got.as_of_ms == want.as_of_ms
    assert got.engagements.action.dtype == np.int8 and got.engagements.time_ms.dtype == np.int64


def test_loader_equals_the_builder_for_the_same_events(built: SimulatedLake) -> None:
    end = START + timedelta(days=1)
    got = load_training_data(built.config, START, end)
    want = TrainingDataBuilder().add_all(built.events).build(as_of_ms=int(end.timestamp() * 1000))
    assert got.meta["pin_boards_from"] == "events" and got.meta["source"] == "lake"
    assert len(got.follows.user_id) > 0 and len(got.pins) >= WORLD.pins
    assert_same(got, want)


def test_a_window_inside_the_lake_keeps_engagements_in_it_and_state_as_of_its_end(
    built: SimulatedLake,
) -> None:
    start, end = START + timedelta(hours=10), START + timedelta(hours=16, minutes=30)
    got = load_training_data(built.config, start, end)
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    inside = [e for e in built.events if lo <= _ms(e) < hi]
    before = [e for e in built.events if _ms(e) < hi]
    want_eng = TrainingDataBuilder().add_all(inside).build(as_of_ms=hi)
    want_state = TrainingDataBuilder().add_all(before).build(as_of_ms=hi)
    assert np.array_equal(np.sort(got.engagements.time_ms), np.sort(want_eng.engagements.time_ms))
    assert np.array_equal(got.pin_boards.weight, want_eng.pin_boards.weight)
    assert np.array_equal(got.pins.pin_id, want_state.pins.pin_id)
    assert np.array_equal(got.follows.target_id, want_state.follows.target_id)
    assert np.array_equal(got.board_owner.src, want_state.board_owner.src)


def test_the_pin_board_edges_job_table_gives_the_same_edges(
    built: SimulatedLake, tmp_path: Path
) -> None:
    end = START + timedelta(days=1)
    from_events = load_training_data(built.config, START, end)
    run_day_jobs(built, START, ["pin_board_edges"])
    try:
        from_table = load_training_data(built.config, START, end)
    finally:
        built.lake.delete_prefix("tables/pin_board_edges")
    assert from_table.meta["pin_boards_from"] == "pin_board_edges"
    for column in ("src", "dst", "weight"):
        a = getattr(from_table.pin_boards, column)
        assert np.array_equal(a, getattr(from_events.pin_boards, column)), column
    # The table has days, not times: an edge is known from the end of its first day.
    exact, by_day = from_events.pin_boards.first_ms, from_table.pin_boards.first_ms
    assert exact is not None and by_day is not None
    day = 86_400_000
    assert np.array_equal(by_day, exact // day * day + day - 1)


def test_ranker_examples_come_from_the_training_examples_table(built: SimulatedLake) -> None:
    end = START + timedelta(days=1)
    with pytest.raises(LakeDataMissing) as missing:
        load_ranker_examples(built.config, START, end)
    assert "tables/training_examples partitions dt=2026-11-01" in str(missing.value)
    assert "homefeed backfill --from 2026-11-01 --to 2026-11-01" in str(missing.value)
    run_day_jobs(built, START, ["training_examples"])
    try:
        examples = load_ranker_examples(built.config, START, end)
    finally:
        built.lake.delete_prefix("tables/training_examples")
    impressions = [e for e in built.events if e["event_type"] == "impression"]
    assert len(examples.user_id) == len(impressions)
    assert np.all(np.diff(examples.time_ms) >= 0)
    assert set(examples.pin_id.tolist()) == {e["pin_id"] for e in impressions}
    assert 0 < examples.label_click.sum() < len(examples.label_click)
    clicked = {(e["user_id"], e["pin_id"]) for e in built.events if e["event_type"] == "click"}
    labelled = zip(
        examples.user_id[examples.label_click == 1],
        examples.pin_id[examples.label_click == 1],
        strict=True,
    )
    assert all(pair in clicked for pair in labelled)


def test_missing_tables_are_named(built: SimulatedLake, tmp_path: Path) -> None:
    later = START + timedelta(days=30)
    with pytest.raises(LakeDataMissing, match=r"no engagement events .*dt=2026-12-01") as e:
        load_training_data(built.config, later, later + timedelta(days=1))
    assert "it has events from 2026-11-01 to 2026-11-02" in str(e.value)
    assert "events/impression" in e.value.missing
    empty = HomefeedConfig(lake=LakeConfig(uri=str(tmp_path / "empty")))
    with pytest.raises(LakeDataMissing, match="it has no events"):
        load_training_data(empty, START, START + timedelta(days=1))
    with pytest.raises(ValueError, match="is not after start"):
        load_training_data(built.config, START, START)


def test_an_engine_passed_in_is_used_and_left_open(built: SimulatedLake) -> None:
    with DuckDBEngine() as engine:
        data = load_training_data(built.config, START, START + timedelta(hours=3), engine)
        assert data.meta["engine"] == "duckdb"
        assert engine.query("SELECT 1 AS x").num_rows == 1


def _ms(event: dict[str, Any]) -> int:
    return int(
        datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).timestamp() * 1000
    )
