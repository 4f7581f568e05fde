"""``homefeed experiments list|report|alerts``: A/B tests from config, measured on the lake."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.table import Table

from homefeed.cli.common import console, fail, open_lake_store, settings

if TYPE_CHECKING:
    from homefeed.experiments.alerts import WeekOverWeek
    from homefeed.experiments.settings import ExperimentsConfig
    from homefeed.experiments.stats import Report
    from homefeed.jobs.engines.base import Engine

experiments_app = typer.Typer(help="A/B experiments: assignment, reports, alerts.")

EngineOption = Annotated[
    str | None, typer.Option("--engine", "-e", help="duckdb or spark (default: engine.default).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _config() -> ExperimentsConfig:
    from homefeed.experiments.settings import ExperimentsConfig

    section = getattr(settings.config, "experiments", None)
    if not isinstance(section, ExperimentsConfig):
        fail("this homefeed's config tree has no [experiments] section")
    return section


@contextmanager
def _lake_engine(name: str | None) -> Iterator[Engine]:
    from homefeed.jobs.catalog import register_lake
    from homefeed.jobs.engines import EngineError, open_engine

    try:
        engine = open_engine(settings.config.engine, name)
        register_lake(engine, open_lake_store())
    except EngineError as e:
        fail(str(e))
    try:
        yield engine
    finally:
        engine.close()


@experiments_app.command("list")
def list_experiments() -> None:
    """Every configured experiment with its variants, weights, targets and window."""
    table = Table("experiment", "salt", "variants (weight -> target)", "start", "end", "metrics")
    for name, e in sorted(_config().definitions.items()):
        variants = "\n".join(f"{v.name} {v.weight:g} -> {v.target or '-'}" for v in e.variants)
        end = e.end.isoformat() if e.end else "open"
        table.add_row(name, e.salt, variants, e.start.isoformat(), end, ", ".join(e.metrics))
    console.print(table)


@experiments_app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="Experiment name, as configured.")],
    engine: EngineOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per-variant metrics per exposed user, with intervals, lift vs control and an SRM check."""
    from homefeed.experiments.analysis import experiment_report

    config = _config()
    if name not in config.definitions:
        fail(f"no experiment {name!r}; experiments: {', '.join(sorted(config.definitions))}")
    with _lake_engine(engine) as eng:
        result = experiment_report(eng, name, config)
    if as_json:
        typer.echo(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    if not sum(result.users.values()):
        console.print(f"no exposures of {name} in the lake yet (events.exposure, {name!r})")
        return
    _print_report(result)


def _print_report(r: Report) -> None:
    pct = f"{r.confidence:.0%}"
    table = Table(
        "metric", "variant", "users", "mean / user", f"{pct} CI", "diff vs control",
        f"diff {pct} CI", "lift", f"lift {pct} CI", "p",
        title=f"experiment {r.extra.get('experiment', '')} (control: {r.control})",
    )  # fmt: skip
    for metric, by_variant in r.summaries.items():
        for variant, s in by_variant.items():
            cells = [metric, variant, f"{s.n:,}", f"{s.mean:.4g}", str(s.ci)]
            e = r.effects[metric].get(variant)
            if e is None:
                cells += ["", "", "", "", ""]
            else:
                lift = f"{e.lift:+.2%}"
                lift_ci = f"[{e.lift_ci.lo:+.2%}, {e.lift_ci.hi:+.2%}]"
                cells += [f"{e.diff:+.4g}", str(e.diff_ci), lift, lift_ci, f"{e.p_value:.3g}"]
            table.add_row(*cells)
    console.print(table)
    if r.srm is not None:
        verdict = "[red]MISMATCH[/]" if r.srm.mismatch else "ok"
        console.print(
            f"sample ratio: {r.srm.observed} vs shares "
            f"{ {k: round(v, 4) for k, v in r.srm.expected_share.items()} }: "
            f"chi2 {r.srm.chi2:.2f}, p {r.srm.p_value:.3g} {verdict}",
            highlight=False,
        )
    for key in ("switched_users", "unconfigured_variants"):
        if r.extra.get(key):
            console.print(f"[yellow]warning:[/] {key.replace('_', ' ')}: {r.extra[key]}")


@experiments_app.command("alerts")
def alerts(
    through: Annotated[
        str | None, typer.Option("--through", help="Last day, YYYY-MM-DD (default: yesterday).")
    ] = None,
    engine: EngineOption = None,
    as_json: JsonOption = False,
) -> None:
    """Week-over-week drops of the watched daily metrics (experiments.alerts). Exits 1 on any."""
    from homefeed.experiments.analysis import lake_alerts

    config = _config()
    try:
        last = date.fromisoformat(through) if through else None
    except ValueError:
        fail(f"--through {through!r} is not a date like 2026-11-21")
    with _lake_engine(engine) as eng:
        results = lake_alerts(eng, config, last)
    if as_json:
        rows = [{**r.__dict__, "change": r.change} for r in results]
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    else:
        _print_alerts(results, config)
    if any(r.alert for r in results):
        raise typer.Exit(1)


def _print_alerts(results: list[WeekOverWeek], config: ExperimentsConfig) -> None:
    if not results:
        console.print("no metric has two full weeks of data yet")
        return
    table = Table(
        "metric", "week to", "this week", "last week", "change", "allowed drop", "status",
        title=f"week over week (z = {config.alerts.z:g}, {config.alerts.history_weeks} weeks)",
    )  # fmt: skip
    for r in results:
        status = "[red]DROP[/]" if r.alert else "ok"
        table.add_row(
            r.metric, r.last_date, f"{r.this_week:.4g}", f"{r.last_week:.4g}",
            f"{r.change:+.1%}", f"{r.threshold:.4g}", status,
        )  # fmt: skip
    console.print(table)
