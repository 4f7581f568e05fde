"""`homefeed demo` (`make demo`): the whole pipeline on a simulated world, then the A/B table."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from homefeed.cli.common import console, settings


def demo(
    small: Annotated[bool, typer.Option(help="A smaller world and a shorter experiment.")] = False,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's log, lake and bundles go (wiped first).")
    ] = Path("homefeed-data/demo"),
    serve: Annotated[
        bool, typer.Option(help="Start the web UI on the trained model at the end.")
    ] = True,
) -> None:
    """Simulate two weeks of a world through log, lake, jobs and training, then compare five
    home feeds (2012-2016) on simulated users in an online A/B, and start the web UI."""
    from homefeed.demo.run import FULL, SMALL, configure, run_demo

    size = SMALL if small else FULL
    if data_dir.exists():
        shutil.rmtree(data_dir)
    console.rule(f"homefeed demo: {size.users:,} users, {size.pins:,} pins, {size.days} days")
    with _bars() as bars:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        result = run_demo(settings.config, size, str(data_dir), console.print, progress)
    cfg = configure(settings.config, size, str(data_dir))
    _write_config(cfg, data_dir, result.experiment)
    _print_timings(result.timings, result.events)
    assert result.ab is not None
    print_ab(result.ab)
    _print_lake_check(result)
    if serve:
        _serve(cfg, data_dir, result.model_version)


def _bars() -> Progress:
    return Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)  # fmt: skip


def _print_timings(timings: dict[str, float], events: int) -> None:
    table = Table(title=f"pipeline: {events:,} events", title_justify="left")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for stage, seconds in timings.items():
        table.add_row(stage, f"{seconds:.1f}")
    table.add_row("total", f"{sum(timings.values()):.1f}", style="bold")
    console.print(table)


def print_ab(ab: Any) -> None:
    """The results table: per-user means with 95% intervals, and lift over the control."""
    from homefeed.demo.run import ARM_TITLES

    report = ab.report
    table = Table(title="online A/B in the simulator: per user, mean [95% CI]",
                  title_justify="left")  # fmt: skip
    for column in ("feed", "users", "sessions", "saves", "clicks", "hides", "topics seen",
                   f"saves vs {report.control}"):  # fmt: skip
        table.add_column(column, justify="left" if column == "feed" else "right")
    for arm in report.variants:
        cells = [_mean_ci(report.summaries[m][arm]) for m in ("saves", "clicks", "hides",
                                                              "diversity")]  # fmt: skip
        effect = report.effects["saves"].get(arm)
        lift = (
            "control"
            if effect is None
            else (f"{effect.lift:+.0%} [{effect.lift_ci.lo:+.0%}, {effect.lift_ci.hi:+.0%}]")
        )
        table.add_row(ARM_TITLES.get(arm, arm), f"{report.users[arm]:,}",
                      f"{ab.sessions[arm]:,}", *cells, lift)  # fmt: skip
    console.print(table)
    if report.srm is not None:
        verdict = "MISMATCH" if report.srm.mismatch else "ok"
        console.print(f"sample ratio check: {verdict} (p = {report.srm.p_value:.3g})")


def _print_lake_check(result: Any) -> None:
    """The same experiment from the lake (exposures and events, SQL): it must agree."""
    from homefeed.demo.run import EXPERIMENT

    lake, memory = result.lake_report, result.ab.report
    if lake is None:
        return
    cells = ", ".join(
        f"{arm} {lake.summaries['saves'][arm].mean:.2f} ({memory.summaries['saves'][arm].mean:.2f})"
        for arm in memory.variants
    )
    console.print(f"from the lake with SQL (`homefeed experiments report {EXPERIMENT}`), saves "
                  f"per user (in the simulator): {cells}")  # fmt: skip


def _mean_ci(summary: Any) -> str:
    return f"{summary.mean:.2f} [{summary.ci.lo:.2f}, {summary.ci.hi:.2f}]"


def _write_config(cfg: Any, data_dir: Path, experiment: Any) -> None:
    """A config naming the demo's log, lake and experiment, for the commands printed below."""
    from homefeed.demo.run import EXPERIMENT

    variants = ", ".join(
        f'{{ name = "{v.name}", weight = {v.weight}, target = "{v.target}" }}'
        for v in experiment.variants
    )
    (data_dir / "homefeed.toml").write_text(
        f'[log.local]\npath = "{cfg.log.local.path}"\n\n[lake]\nuri = "{cfg.lake.uri}"\n\n'
        f"[experiments.definitions.{EXPERIMENT}]\n"
        f'salt = "{experiment.salt}"\nstart = "{experiment.start.isoformat()}"\n'
        f'control = "{experiment.control}"\nvariants = [{variants}]\n',
        encoding="utf-8",
    )


def _serve(cfg: Any, data_dir: Path, version: str) -> None:
    from homefeed.serving.api.cli import serve_bundle

    port = cfg.serving.api.port
    console.print(
        f"web UI: http://127.0.0.1:{port}/ui/  console: http://127.0.0.1:{port}/ui/console.html"
        f"  (model {version}; Ctrl-C to stop; data in {data_dir}/, config "
        f"{data_dir / 'homefeed.toml'})"
    )
    serve_bundle(cfg, data_dir / "bundles" / version)
