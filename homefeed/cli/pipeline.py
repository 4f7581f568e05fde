"""Commands that move data: init, simulate, import, persist, and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from homefeed.cli.common import console, fail, open_lake_store, opened_log, retention_ms, settings
from homefeed.config import DEFAULT_FILE, render_example

import_app = typer.Typer(help="Import real data as events.", no_args_is_help=True)


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path(DEFAULT_FILE),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented config file with every key at its default."""
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it")
    path.write_text(render_example(), encoding="utf-8")
    console.print(f"wrote {path}")


def _logger(event_log: Any, source: str) -> Any:
    from homefeed.events.sdk import EventLogger

    cfg = settings.config
    return EventLogger(
        event_log,
        config=cfg.sdk,
        source=source,
        partitions=cfg.log.partitions,
        retention_ms=retention_ms(),
        on_reject=lambda r: None,
    )


def simulate(
    users: Annotated[int | None, typer.Option(min=1, help="Users in the world.")] = None,
    pins: Annotated[int | None, typer.Option(min=1, help="Pins in the world.")] = None,
    days: Annotated[float | None, typer.Option(min=0.01, help="Simulated days.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same events).")] = None,
) -> None:
    """Simulate users engaging with pins and log their events through the SDK."""
    from homefeed.simulator import simulate as run_simulation

    overrides = {
        k: v for k, v in dict(users=users, pins=pins, days=days, seed=seed).items() if v is not None
    }
    sim_cfg = settings.config.simulator.model_copy(update=overrides)
    with opened_log() as event_log, _logger(event_log, "simulator") as logger:
        summary = run_simulation(sim_cfg, logger.log, progress=True)
        logger.flush()
    _print_counts("simulated events", summary.counts)
    console.print(
        f"{sum(summary.counts.values()):,} events in {summary.seconds:.1f} s; "
        f"{sum(logger.rejected.values())} rejected; log: {settings.config.log.backend}"
    )


def _print_counts(title: str, counts: dict[str, int]) -> None:
    table = Table("event type", "events", title=title)
    for k, v in sorted(counts.items()):
        table.add_row(k, f"{v:,}")
    console.print(table)


@import_app.command("movielens")
def import_movielens_cmd(
    directory: Annotated[Path, typer.Argument(help="MovieLens 100K directory (u.data, u.item).")],
) -> None:
    """Ratings as events: rating >= 4 is a save, lower a click, at the original times."""
    from homefeed.importers.movielens import MovieLensFormatError, import_movielens

    if not (directory / "u.data").is_file():
        fail(f"{directory}: no u.data here; expected a MovieLens 100K directory")
    with opened_log() as event_log, _logger(event_log, "import:movielens") as logger, _bar() as bar:
        task = bar.add_task("ratings", total=None)
        try:
            report = import_movielens(directory, logger, lambda n: bar.advance(task, n))
        except MovieLensFormatError as e:
            fail(str(e))
    for problem in report.problems:
        console.print(f"[yellow]rejected:[/] {problem}", highlight=False)
    console.print(
        f"{report.ratings:,} ratings from {report.users} users -> {report.saves:,} saves, "
        f"{report.clicks:,} clicks; {report.movies} movies as pins; {report.rejected} rejected"
    )


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def persist(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following the log.")] = False,
) -> None:
    """Write event topics to the lake as Parquet, exactly once, by event hour."""
    report = run_persister(follow)
    _print_persist_report(report)


def run_persister(follow: bool) -> Any:
    import threading

    from homefeed.events.registry import SchemaRegistry
    from homefeed.events.sdk import ensure_event_topics
    from homefeed.persister import Persister

    cfg = settings.config
    lake = open_lake_store()
    stop = threading.Event()
    with opened_log() as event_log, _bar() as bar:
        task = bar.add_task("persisting rows", total=None)
        seen = [0]

        def on_batch(report: Any) -> None:
            bar.advance(task, report.total_rows - seen[0])
            seen[0] = report.total_rows

        # A persister may start before any service has logged: make sure its topics exist.
        ensure_event_topics(event_log, SchemaRegistry(), cfg.log.partitions, retention_ms())
        persister = Persister(event_log, lake, config=cfg.persister, on_batch=on_batch)
        console.print(
            f"persisting {len(persister.topics)} topics from the {event_log.name} log "
            f"to {lake.uri}" + (" (Ctrl-C to stop)" if follow else "")
        )
        try:
            report = persister.run(follow=follow, stop=stop)
        except KeyboardInterrupt:
            stop.set()
            report = persister.report
    return report


def _print_persist_report(report: Any) -> None:
    table = Table("table", "rows", title="persisted")
    for name, rows in sorted(report.rows.items()):
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"{report.total_rows:,} rows in {report.files} files from {report.batches} batches "
        f"({report.reread_records:,} records re-read to complete tails) in {report.seconds:.1f} s; "
        f"{report.hours_marked} hours marked complete; {report.late_rows} late rows; "
        f"{report.dead_lettered} dead-lettered"
    )
