"""``homefeed run``, ``homefeed backfill``, ``homefeed jobs``, ``homefeed lake gc``: lake jobs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from homefeed.cli.common import console, fail, open_lake_store, settings

if TYPE_CHECKING:
    from homefeed.jobs.definitions import JobSpec
    from homefeed.jobs.engines.base import Engine

run_app = typer.Typer(help="Run lake jobs for one hour or one day.", no_args_is_help=True)

EngineOption = Annotated[
    str | None, typer.Option("--engine", "-e", help="duckdb or spark (default: engine.default).")
]
JobOption = Annotated[
    list[str] | None, typer.Option("--job", "-j", help="Only this job (repeatable).")
]


@contextmanager
def opened_engine(name: str | None) -> Iterator[Engine]:
    from homefeed.jobs.engines import open_engine

    engine = open_engine(settings.config.engine, name or settings.config.engine.default)
    try:
        yield engine
    finally:
        engine.close()


def _parse_date(label: str) -> date:
    from homefeed.jobs.definitions import parse_date

    try:
        return parse_date(label)
    except ValueError as e:
        fail(str(e))


def _select(grain: str, names: list[str] | None) -> list[JobSpec]:
    from homefeed.jobs.definitions import JOBS

    specs = [s for s in JOBS.values() if s.grain == grain]
    if not names:
        return specs
    unknown = [n for n in names if n not in {s.name for s in specs}]
    if unknown:
        fail(
            f"unknown {grain} job(s) {', '.join(unknown)}; {grain} jobs are: "
            + ", ".join(s.name for s in specs)
        )
    return [s for s in specs if s.name in names]


def _run(specs: list[JobSpec], start_ms: int, engine_name: str | None) -> None:
    from homefeed.jobs.engines.base import EngineError
    from homefeed.jobs.runner import InputsNotReady, run_job

    lake = open_lake_store()
    with opened_engine(engine_name) as engine:
        for spec in specs:
            try:
                r = run_job(engine, lake, spec, start_ms, settings.config.jobs)
            except InputsNotReady as e:
                fail(str(e), code=3)
            except EngineError as e:
                fail(f"job {spec.name} failed on {engine.name}: {e}")
            console.print(
                f"{r.job} {r.partition}: {r.rows_in:,} rows in, {r.rows_out:,} out, "
                f"{r.duration_s:.1f}s on {r.engine}",
                highlight=False,
            )


@run_app.command("hourly")
def run_hourly(
    hour: Annotated[str, typer.Option("--hour", help="Event hour, e.g. 2026-11-21T13.")],
    engine: EngineOption = None,
    job: JobOption = None,
) -> None:
    """Run the hourly jobs for one event hour (waits for nothing: exits 3 if not ready)."""
    from homefeed.lake.layout import parse_hour

    try:
        start_ms = parse_hour(hour)
    except ValueError as e:
        fail(str(e))
    _run(_select("hourly", job), start_ms, engine)


@run_app.command("daily")
def run_daily(
    day: Annotated[str, typer.Option("--date", help="Event date, e.g. 2026-11-21.")],
    engine: EngineOption = None,
    job: JobOption = None,
) -> None:
    """Run the daily jobs for one date (exits 3 if an input hour is not complete)."""
    from homefeed.jobs.definitions import day_start_ms

    _run(_select("daily", job), day_start_ms(_parse_date(day)), engine)


def backfill(
    start: Annotated[str, typer.Option("--from", help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last date, YYYY-MM-DD (inclusive).")],
    engine: EngineOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild partitions already done.")
    ] = False,
) -> None:
    """Run hourly then daily jobs for a range of dates, in dependency order."""
    from homefeed.jobs.backfill import backfill as run_backfill
    from homefeed.jobs.backfill import steps_in

    first, last = _parse_date(start), _parse_date(end)
    if last < first:
        fail(f"--from {start} is after --to {end}")
    lake = open_lake_store()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with opened_engine(engine) as eng, Progress(*columns, console=console) as progress:
        task = progress.add_task("backfill", total=steps_in(first, last))
        report = run_backfill(
            eng,
            lake,
            settings.config.jobs,
            first,
            last,
            force=force,
            on_step=lambda label: progress.update(task, advance=1, description=label),
        )
    console.print(f"ran {len(report.ran)} partitions, skipped {len(report.skipped)} already done")
    if report.waiting:
        fail(f"stopped: {report.waiting}", code=3)


def jobs(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most recent runs shown.")] = 50,
) -> None:
    """The job ledger: recent runs with rows, duration and status."""
    from homefeed.jobs.runner import read_ledger

    table = Table(title="job runs")
    for name in ["started", "job", "partition", "engine", "status", "rows in", "rows out", "s"]:
        table.add_column(name, no_wrap=True)
    for r in read_ledger(open_lake_store(), limit=limit):
        status = r.status if r.status == "ok" else f"[red]{r.status}[/]: {r.error or ''}"
        table.add_row(
            r.started_at[:19],
            r.job,
            r.partition,
            r.engine,
            status,
            f"{r.rows_in:,}",
            f"{r.rows_out:,}",
            f"{r.duration_s:.1f}",
        )
    console.print(table)


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go.")] = False,
    retention_days: Annotated[
        int | None, typer.Option("--days", help="Keep this many days (default: config).")
    ] = None,
) -> None:
    """Delete event and table partitions older than jobs.lake_retention_days."""
    from homefeed.jobs.backfill import lake_gc

    days = retention_days or settings.config.jobs.lake_retention_days
    report = lake_gc(open_lake_store(), days, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for prefix in report.prefixes:
        console.print(f"{verb} {prefix}", highlight=False)
    console.print(
        f"{verb} {len(report.prefixes)} partitions, {report.files} files (older than {days} days)"
    )
