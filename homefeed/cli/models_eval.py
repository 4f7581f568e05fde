"""``homefeed eval``: offline evaluation, on the configured lake or on MovieLens 100K."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from homefeed.cli.common import console, fail, settings

if TYPE_CHECKING:
    from homefeed.models.evaluation.holdout import HoldoutResult
    from homefeed.models.evaluation.movielens import ModelResult

eval_app = typer.Typer(
    help="Offline evaluation: a time holdout on the lake, or the MovieLens 100K benchmark.",
    no_args_is_help=False,
)


@eval_app.callback(invoke_without_command=True)
def holdout(
    ctx: typer.Context,
    end: Annotated[
        datetime | None, typer.Option(help="End of the data window (UTC; default: now).")
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(min=2, help="Days of data; the last one is held out (default: train_days+1)."),
    ] = None,
    k: Annotated[int, typer.Option(min=1, help="Feed length evaluated.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Train homefeed on the lake up to the last day, evaluate on that day (NDCG, AUC per head)."""
    if ctx.invoked_subcommand is not None:
        return
    from homefeed.models.evaluation.holdout import time_holdout
    from homefeed.models.evaluation.movielens import homefeed_model
    from homefeed.models.lake_data import load_training_data

    config = settings.config
    stop = end or datetime.now(UTC)
    stop = stop if stop.tzinfo else stop.replace(tzinfo=UTC)
    start = stop - timedelta(days=days or config.models.train_days + 1)
    try:
        data = load_training_data(config, start, stop)
        result = time_holdout(data, homefeed_model(config.models), k=k)
    except (LookupError, ValueError) as e:  # LakeDataMissing, or no data on one side of T
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(_finite(result.as_dict())))
        return
    console.print(_holdout_table(result))


def movielens(
    directory: Annotated[
        Path,
        typer.Argument(help="An ML-100K directory (u.data, u.item).", exists=True, file_okay=False),
    ],
    k: Annotated[int, typer.Option(min=1, help="Top k evaluated.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """homefeed and peers (EASE, implicit ALS, popularity) under Recommenders' ML-100K protocol.

    Split: per-user random 75/25 (seed 42); top k among unseen items; truth: all test items.
    """  # fmt: skip
    from homefeed.models.evaluation.movielens import MovieLensFormatError, run_movielens

    try:
        results = run_movielens(directory, k=k, config=settings.config.models)
    except MovieLensFormatError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps([_finite(r.as_dict()) for r in results]))
        return
    console.print(_movielens_table(results, k))


eval_app.command("movielens")(movielens)


def _finite(value: Any) -> Any:
    """JSON has no NaN: unknown figures become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _movielens_table(results: list[ModelResult], k: int) -> Table:
    table = Table(
        "model", "MAP", f"NDCG@{k}", f"precision@{k}", f"recall@{k}", "fit s",
        title=f"MovieLens 100K, stratified 75/25 split (seed 42), top {k} unseen",
    )  # fmt: skip
    for r in results:
        name = f"{r.model} [red]({r.error})[/]" if r.error else r.model
        seconds = "published" if r.published else _fmt(r.fit_seconds, 1)
        table.add_row(name, _fmt(r.map), _fmt(r.ndcg), _fmt(r.precision), _fmt(r.recall), seconds)
    return table


def _holdout_table(result: HoldoutResult) -> Table:
    split = datetime.fromtimestamp(result.split_ms / 1000, tz=UTC).isoformat(timespec="minutes")
    table = Table("metric", "value", title=f"homefeed holdout: trained before {split}")
    for name, value in result.ranking.items():
        table.add_row(f"{name}@{result.k}", _fmt(value))
    table.add_row("users evaluated", str(result.users))
    table.add_row("catalogue coverage", _fmt(result.coverage))
    table.add_row("feed diversity (1 - topic cosine)", _fmt(result.diversity))
    for head, value in result.head_auc.items():
        table.add_row(f"AUC {head} ({result.impressions} impressions)", _fmt(value))
    table.add_row("fit seconds", _fmt(result.fit_seconds, 1))
    return table
