"""``homefeed train`` and ``homefeed models``: retrain from the lake, and the model registry.

``train`` loads the window's events and the ranker's examples from the lake, trains a bundle,
registers it as a new version (and promotes it with ``--promote``). ``retrain`` below does the
work and returns what happened, so it can be used (and tested) without the command.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from homefeed.cli.common import console, fail, open_lake_store, settings

if TYPE_CHECKING:
    from homefeed.config import HomefeedConfig
    from homefeed.lake.base import LakeStore
    from homefeed.models.registry import ModelRegistry, ModelVersion

models_app = typer.Typer(
    help="The model registry: versions, production, rollback.", no_args_is_help=True
)

Step = Callable[[str], None]  # told each stage as it starts, for a progress display


class TrainError(Exception):
    """Training cannot start; the message names the problem and what to run first."""


@dataclass
class RetrainResult:
    version: str
    location: str  # where the version's files are in the lake
    first_day: date
    last_day: date
    ranker_days: tuple[date, date]
    promoted: bool
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    metrics: dict[str, Any] = field(default_factory=dict)


# ---- the work --------------------------------------------------------------------------------


def default_days(lake: LakeStore, train_days: int) -> tuple[date, date]:
    """The last ``train_days`` days the lake has training examples for (clipped to its events).

    Raises TrainError if the lake is empty or no day has been through the jobs yet.
    """
    from homefeed.models.lake_data import EXAMPLES_TABLE, event_days, partition_days

    events = set().union(*event_days(lake).values())
    if not events:
        raise TrainError(f"the lake {lake.uri} is empty: no events to train on")
    examples = partition_days(lake, EXAMPLES_TABLE)
    if not examples:
        first, last = min(events), max(events)
        raise TrainError(
            f"the lake {lake.uri} has no {EXAMPLES_TABLE} (events {first} to {last}): run "
            f"`homefeed backfill --from {first} --to {last}` first"
        )
    last = max(examples)
    return max(min(events), last - timedelta(days=train_days - 1)), last


def retrain(
    config: HomefeedConfig,
    first_day: date | None = None,
    last_day: date | None = None,
    promote: bool = False,
    step: Step | None = None,
) -> RetrainResult:
    """Load the lake's days ``first_day..last_day`` (defaults: the latest ``train_days``),
    train a bundle, register it, and promote it if asked."""
    from homefeed.lake import open_lake
    from homefeed.models.lake_data import load_ranker_examples, load_training_data
    from homefeed.models.pipeline import train_bundle
    from homefeed.models.registry import ModelRegistry

    tell = step or (lambda _stage: None)
    lake = open_lake(config.lake)
    first, last = _window(lake, config.models.train_days, first_day, last_day)
    ranker_first = last - timedelta(days=config.models.ranker_days - 1)
    if ranker_first <= first:
        # The ranker's sources fit on the days before its examples: there must be some.
        raise TrainError(
            f"days {first} .. {last} leave no day before the ranker's examples (the last "
            f"models.ranker_days = {config.models.ranker_days} days): start before {ranker_first}"
        )
    start, end = _midnight(first), _midnight(last + timedelta(days=1))
    timings: dict[str, float] = {}
    with _timed(timings, "load examples", tell):
        examples = load_ranker_examples(config, _midnight(ranker_first), end)
    with _timed(timings, "load events", tell):
        data = load_training_data(config, start, end)
    with _timed(timings, "train", tell):
        bundle = train_bundle(
            data, config.models, examples, on_progress=lambda stage, info: tell(stage)
        )
    metrics = summary_metrics(bundle.metadata, len(examples))
    registry = ModelRegistry(lake, config.models.name)
    tmp = Path(tempfile.mkdtemp(prefix="homefeed-bundle-"))
    try:
        with _timed(timings, "save bundle", tell):
            bundle.save(tmp)
        with _timed(timings, "register", tell):
            version = registry.register(tmp, metrics, (start, end))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if promote:
        registry.promote(version)
    timings.update(stage_timings(bundle.metadata.get("timings", {})))
    return RetrainResult(
        version=version,
        location=lake.location(f"{registry.root}/{version}"),
        first_day=first,
        last_day=last,
        ranker_days=(ranker_first, last),
        promoted=promote,
        timings=timings,
        metrics=metrics,
    )


def _window(
    lake: LakeStore, train_days: int, first: date | None, last: date | None
) -> tuple[date, date]:
    if first is None or last is None:
        default_first, default_last = default_days(lake, train_days)
        last = last or default_last
        first = first or max(default_first, last - timedelta(days=train_days - 1))
    if last < first:
        raise TrainError(f"--from {first} is after --to {last}")
    return first, last


@contextmanager
def _timed(timings: dict[str, float], stage: str, tell: Step) -> Iterator[None]:
    tell(stage)
    started = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - started


def stage_timings(timings: dict[str, Any]) -> dict[str, float]:
    """train_bundle's timings flattened: ``source <name> (ranker fit)``, ``ranker``, ..."""
    out: dict[str, float] = {}
    for key, label in (("ranker_sources", "ranker fit"), ("final_sources", "final fit")):
        for name, seconds in timings.get(key, {}).items():
            out[f"  source {name} ({label})"] = float(seconds)
    for key in ("ranker_features", "ranker", "final_context"):
        if key in timings:
            out[f"  {key.replace('_', ' ')}"] = float(timings[key])
    return out


def summary_metrics(metadata: dict[str, Any], examples: int) -> dict[str, Any]:
    """What the registry keeps about a training run: the bundle's metrics and data sizes."""
    data = metadata.get("data", {})
    timings = metadata.get("timings", {})
    metrics: dict[str, Any] = dict(metadata.get("metrics", {}))
    metrics.update(
        {
            "engagements": data.get("engagements"),
            "users": data.get("users"),
            "pins": data.get("pins"),
            "positives": data.get("positives"),
            "ranker_examples": examples,
            "ranker_rows": timings.get("ranker_rows"),
            "heads": metadata.get("heads", []),
        }
    )
    for head, count in timings.get("ranker_positives", {}).items():
        metrics[f"ranker_positives_{head}"] = count
    return {k: v for k, v in metrics.items() if v is not None}


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


# ---- commands --------------------------------------------------------------------------------


def train(
    start: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: see --to).")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Last day, inclusive (default: the last day with training examples; --from "
            "defaults to models.train_days days before it).",
        ),
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Make the new version the production one.")
    ] = False,
) -> None:
    """Train candidate sources and the ranker on the lake, and register the bundle."""
    from homefeed.jobs.engines.base import EngineError
    from homefeed.models.lake_data import LakeDataMissing

    first, last = _parse_day(start, "--from"), _parse_day(end, "--to")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("starting", total=None)
            result = retrain(
                settings.config,
                first,
                last,
                promote,
                step=lambda stage: progress.update(task, description=stage),
            )
    except (TrainError, LakeDataMissing, EngineError, ValueError) as e:
        fail(str(e))
    print_result(result)


def print_result(result: RetrainResult) -> None:
    table = Table(title=f"trained {result.version}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("events", f"{result.first_day} .. {result.last_day}")
    table.add_row("ranker examples", f"{result.ranker_days[0]} .. {result.ranker_days[1]}")
    table.add_section()
    for stage, seconds in result.timings.items():
        table.add_row(stage, f"{seconds:.2f} s")
    table.add_section()
    for name, value in result.metrics.items():
        table.add_row(name, _fmt(value))
    console.print(table)
    state = "and promoted to production" if result.promoted else "(not promoted)"
    console.print(f"registered {result.version} at {result.location} {state}", highlight=False)


@models_app.command("list")
def list_versions() -> None:
    """Every registered version, the production one marked."""
    registry = _registry()
    versions = registry.list()
    if not versions:
        console.print(f"no versions of model {registry.name} in {registry.lake.uri}")
        return
    production = registry.production()
    table = Table(title=f"model {registry.name}")
    for name in ["version", "", "created", "data", "code", "MB", "engagements", "users"]:
        table.add_column(name, no_wrap=True)
    for v in versions:
        table.add_row(
            v.version,
            "production" if v.version == production else "",
            v.created_at[:19],
            f"{v.data_range['start'][:10]} .. {v.data_range['end'][:10]}",
            v.code_version[:12],
            f"{v.size / 1e6:.1f}",
            _fmt(v.metrics.get("engagements", "")),
            _fmt(v.metrics.get("users", "")),
        )
    console.print(table)


@models_app.command("show")
def show(version: Annotated[str, typer.Argument(help="A version, e.g. v0003.")]) -> None:
    """One version: data range, code version, metrics, files."""
    registry = _registry()
    model = _or_fail(lambda: registry.show(version))
    production = registry.production()
    print_version(model, production == model.version, registry.lake.location(registry.root))


def print_version(model: ModelVersion, is_production: bool, root: str) -> None:
    about = Table(title=f"model {model.name} {model.version}", show_header=False)
    about.add_column("what")
    about.add_column("value")
    about.add_row("location", f"{root}/{model.version}")
    about.add_row("production", "yes" if is_production else "no")
    about.add_row("created", model.created_at)
    about.add_row("data", f"{model.data_range['start']} .. {model.data_range['end']}")
    about.add_row("code", model.code_version)
    about.add_section()
    for name, value in model.metrics.items():
        about.add_row(name, _fmt(value))
    console.print(about)
    files = Table(title="files")
    for name in ["path", "bytes", "sha256"]:
        files.add_column(name, no_wrap=True)
    for f in model.files:
        files.add_row(f.path, f"{f.size:,}", f.sha256[:16])
    console.print(files)


@models_app.command("promote")
def promote_version(version: Annotated[str, typer.Argument(help="A version, e.g. v0003.")]) -> None:
    """Make VERSION the production version."""
    registry = _registry()
    previous = _or_fail(lambda: registry.promote(version))
    console.print(f"{registry.name}: {version} is production (was {previous or 'none'})")


@models_app.command("rollback")
def rollback() -> None:
    """Back to the version that was production before the current one."""
    registry = _registry()
    current = registry.production()
    restored = _or_fail(registry.rollback)
    console.print(f"{registry.name}: rolled back to {restored} (from {current})")


def _registry() -> ModelRegistry:
    from homefeed.models.registry import ModelRegistry

    return ModelRegistry(open_lake_store(), settings.config.models.name)


def _or_fail(action: Callable[[], Any]) -> Any:
    from homefeed.models.registry import RegistryError

    try:
        return action()
    except RegistryError as e:
        fail(str(e))


def _parse_day(label: str | None, option: str) -> date | None:
    if label is None:
        return None
    try:
        return date.fromisoformat(label)
    except ValueError:
        fail(f"{option} {label!r} is not a date of the form YYYY-MM-DD")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
