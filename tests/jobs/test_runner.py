"""The runner around the SQL: readiness, atomic replacement, markers, ledger, backfill, gc.

Engine-independent behaviour, so these run on DuckDB only (test_jobs.py covers both engines).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from homefeed.config import EngineConfig
from homefeed.jobs.backfill import backfill, lake_gc, plan
from homefeed.jobs.definitions import DAILY, HOURLY, JOBS, day_start_ms, parse_date
from homefeed.jobs.runner import InputsNotReady, is_done, read_ledger, run_job, write_output
from homefeed.lake.layout import parse_hour
from tests.jobs.fixtures import CONFIG, DAY, NEXT, LakeBuilder, read_output, standard_events, ts


@pytest.fixture
def duck() -> Iterator[Any]:
    from homefeed.jobs.engines import open_engine

    engine = open_engine(EngineConfig(), "duckdb")  # type: ignore[call-arg]
    yield engine
    engine.close()


@pytest.fixture
def built(tmp_path: Path) -> LakeBuilder:
    builder = LakeBuilder(tmp_path)
    standard_events(builder)
    builder.persist()
    return builder


def test_waits_for_unmarked_hours_and_names_them(duck: Any, tmp_path: Path) -> None:
    builder = LakeBuilder(tmp_path)
    builder.add("impression", ts(DAY, 13, 5))
    builder.add("click", ts(DAY, 15, 30))  # the watermark marks hours up to 14 only
    builder.persist()

    run_job(duck, builder.lake, JOBS["pin_engagement_hourly"], parse_hour(f"{DAY}T14"), CONFIG)
    with pytest.raises(InputsNotReady) as e:
        run_job(duck, builder.lake, JOBS["pin_engagement_hourly"], parse_hour(f"{DAY}T15"), CONFIG)
    assert "pin_engagement_hourly dt=2026-11-21/hr=15" in str(e.value)
    assert "impression@2026-11-21T15" in e.value.missing
    with pytest.raises(InputsNotReady) as e:
        run_job(
            duck, builder.lake, JOBS["training_examples"], day_start_ms(parse_date(DAY)), CONFIG
        )
    # The day's later hours and the label window after it (2 h) are all named.
    assert "impression@2026-11-21T23" in e.value.missing
    assert "click@2026-11-22T01" in e.value.missing
    assert "click@2026-11-22T02" not in e.value.missing
    assert not builder.lake.list("tables/training_examples")


def test_rerun_replaces_partition(duck: Any, built: LakeBuilder) -> None:
    spec, hour = JOBS["pin_engagement_hourly"], parse_hour(f"{DAY}T13")
    first = run_job(duck, built.lake, spec, hour, CONFIG)
    second = run_job(duck, built.lake, spec, hour, CONFIG)
    assert first.rows_out == second.rows_out == 2
    files = [f.path for f in built.lake.list("tables/pin_engagement_hourly")]
    assert files == [
        "tables/pin_engagement_hourly/dt=2026-11-21/hr=13/_SUCCESS",
        "tables/pin_engagement_hourly/dt=2026-11-21/hr=13/part-0000.parquet",
    ]
    assert read_output(built.lake, spec.name, first.partition).num_rows == 2
    assert not built.lake.list("_jobs/tmp")  # no temporary left behind
    marker = orjson.loads(built.lake.get_bytes(files[0]))
    assert marker["run_id"] == second.run_id and marker["rows"] == 2


def test_ledger_records_runs_and_failures(duck: Any, built: LakeBuilder) -> None:
    day = day_start_ms(parse_date(DAY))
    run_job(duck, built.lake, JOBS["pin_stats_daily"], day, CONFIG)
    broken = dataclasses.replace(JOBS["pin_stats_daily"], name="no_such_job")
    with pytest.raises(FileNotFoundError):
        run_job(duck, built.lake, broken, day, CONFIG)
    ok, failed = read_ledger(built.lake)
    assert (ok.job, ok.partition, ok.engine, ok.status) == (
        "pin_stats_daily",
        "dt=2026-11-21",
        "duckdb",
        "ok",
    )
    assert ok.rows_in == 10 and ok.rows_out == 2 and ok.duration_s >= 0
    assert failed.status == "failed" and "no_such_job.sql" in (failed.error or "")


def test_cumulative_job_refuses_missing_previous_partition(duck: Any, built: LakeBuilder) -> None:
    with pytest.raises(InputsNotReady, match="tables/follow_graph/dt=2026-11-21"):
        run_job(duck, built.lake, JOBS["follow_graph"], day_start_ms(parse_date(NEXT)), CONFIG)


def test_plan_runs_hours_then_days_in_date_order() -> None:
    steps = [(s.name, start) for s, start in plan(parse_date(DAY), parse_date(NEXT))]
    day, nxt = day_start_ms(parse_date(DAY)), day_start_ms(parse_date(NEXT))
    assert len(steps) == 2 * (24 * len(HOURLY) + len(DAILY))
    first_daily = steps.index(("pin_stats_daily", day))
    assert all(start < nxt for _, start in steps[:first_daily])
    assert {n for n, _ in steps[:first_daily]} == {s.name for s in HOURLY}
    assert steps.index(("user_topic_interest", day)) < steps.index(("training_examples", nxt))


def test_backfill_runs_what_is_ready_and_skips_done(
    duck: Any, built: LakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One hourly job keeps the test quick; the plan's order is tested above.
    monkeypatch.setattr("homefeed.jobs.backfill.HOURLY", [JOBS["pin_engagement_hourly"]])
    first = backfill(duck, built.lake, CONFIG, parse_date(DAY), parse_date(DAY))
    assert first.waiting is None
    assert len(first.ran) == 24 + len(DAILY)
    assert first.ran[-len(DAILY) :] == [f"{s.name} dt={DAY}" for s in DAILY]
    again = backfill(duck, built.lake, CONFIG, parse_date(DAY), parse_date(DAY))
    assert again.ran == [] and len(again.skipped) == len(first.ran)
    # Hour 05 of 2026-11-23 is not marked: the backfill stops there and says why.
    later = backfill(duck, built.lake, CONFIG, parse_date("2026-11-23"), parse_date("2026-11-23"))
    assert len(later.ran) == 5
    assert later.waiting is not None and "2026-11-23T05" in later.waiting


def test_late_data_makes_a_partition_stale(duck: Any, built: LakeBuilder) -> None:
    spec, day = JOBS["pin_stats_daily"], day_start_ms(parse_date(DAY))
    run_job(duck, built.lake, spec, day, CONFIG)
    assert is_done(built.lake, spec, day, CONFIG)
    built.add("click", ts(DAY, 13, 59), user_id=9, pin_id=12)  # its hour is already marked
    built.persist()
    assert not is_done(built.lake, spec, day, CONFIG)


def test_gc_drops_old_partitions(duck: Any, built: LakeBuilder) -> None:
    run_job(duck, built.lake, JOBS["pin_stats_daily"], day_start_ms(parse_date(DAY)), CONFIG)
    now = datetime(2026, 12, 22, 12, tzinfo=UTC)  # 2026-11-21 is 31 days old, 11-22 is 30
    dry = lake_gc(built.lake, 30, now=now, dry_run=True)
    assert "events/click/dt=2026-11-21" in dry.prefixes
    assert "tables/pin_stats_daily/dt=2026-11-21" in dry.prefixes
    assert not any("2026-11-22" in p for p in dry.prefixes)
    assert built.lake.list("events/click/dt=2026-11-21")  # a dry run deletes nothing
    done = lake_gc(built.lake, 30, now=now)
    assert done.prefixes == dry.prefixes
    assert not built.lake.list("events/click/dt=2026-11-21")
    assert not built.lake.list("tables/pin_stats_daily")
    assert built.lake.list("events/impression/dt=2026-11-22")


def test_cli_runs_jobs_shows_ledger_and_gc(
    built: LakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from homefeed.cli.main import app

    monkeypatch.setenv("HOMEFEED_LAKE_URI", str(built.lake.root))
    monkeypatch.setenv("COLUMNS", "200")
    cli = CliRunner()
    result = cli.invoke(app, ["run", "hourly", "--hour", f"{DAY}T13", "-e", "duckdb"])
    assert result.exit_code == 0, result.output
    assert "pin_engagement_hourly dt=2026-11-21/hr=13" in result.output
    result = cli.invoke(app, ["run", "daily", "--date", DAY, "-j", "pin_stats_daily"])
    assert result.exit_code == 0, result.output
    result = cli.invoke(app, ["run", "hourly", "--hour", "2026-11-23T05"])
    assert result.exit_code == 3 and "impression@2026-11-23T05" in result.output
    result = cli.invoke(app, ["jobs"])
    assert result.exit_code == 0 and "pin_stats_daily" in result.output
    result = cli.invoke(app, ["lake", "gc", "--dry-run", "--days", "1"])
    assert result.exit_code == 0 and "would delete events/click/dt=2026-11-21" in result.output
    assert built.lake.list("events/click/dt=2026-11-21")


@pytest.mark.s3
def test_output_is_published_whole_on_s3(duck: Any, request: pytest.FixtureRequest) -> None:
    from tests.conftest import make_lake

    lake = make_lake(request, Path("unused"), "s3")
    path = "tables/demo/dt=2026-11-21/part-0000.parquet"
    for n in (3, 5):  # the second write replaces the first
        rows = write_output(duck, lake, f"SELECT * FROM range({n}) AS t(i)", path, f"run{n}")
        assert rows == n
    assert [f.path for f in lake.list("")] == [path]  # no temporary, no directory marker
    assert lake.read_parquet(path).column("i").to_pylist() == [0, 1, 2, 3, 4]
