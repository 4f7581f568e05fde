"""``homefeed deploy``: canary rollouts of registered model versions.

``homefeed deploy VERSION --canary 10`` starts a canary (the deploy state says baking); the
feed service's deploy loop routes that share of users to it, judges it and promotes or rolls it
back. ``--watch`` follows the verdicts here until the deploy ends. ``status``, ``history`` and
``rollback`` read and change the same state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from homefeed.cli.common import console, fail, open_lake_store, opened_log, retention_ms, settings

if TYPE_CHECKING:
    from homefeed.models.data import TrainingData
    from homefeed.models.registry import ModelRegistry
    from homefeed.serving.deploy.controller import DeployController
    from homefeed.serving.deploy.settings import DeployConfig
    from homefeed.serving.deploy.state import DeployState


class _DeployGroup(TyperGroup):
    """``deploy VERSION ...`` is ``deploy start VERSION ...``: a version is not a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer vendors click
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


deploy_app = typer.Typer(
    cls=_DeployGroup,
    help="Canary deploys: `deploy VERSION --canary 10`, then status, history, rollback.",
    no_args_is_help=True,
)


def deploy_config() -> DeployConfig:
    """``[serving.deploy]`` of the config tree once mounted there; the defaults until then."""
    from homefeed.serving.deploy.settings import DeployConfig

    section = getattr(settings.config.serving, "deploy", None)
    if isinstance(section, DeployConfig):
        return section
    return DeployConfig()  # type: ignore[call-arg]


def controller() -> DeployController:
    from homefeed.models.registry import ModelRegistry
    from homefeed.serving.deploy.controller import DeployController
    from homefeed.serving.deploy.state import DeployStore

    lake = open_lake_store()
    name = settings.config.models.name
    return DeployController(DeployStore(lake, name), ModelRegistry(lake, name), deploy_config())


@deploy_app.command("start")
def start(
    version: Annotated[str, typer.Argument(help="Registered version to deploy, e.g. v0003.")],
    canary: Annotated[
        float, typer.Option("--canary", help="Percent of users the canary serves.")
    ] = 10.0,
    bake_minutes: Annotated[
        float | None, typer.Option(help="Minimum bake time (default: config).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow the verdicts until the deploy ends.")
    ] = False,
) -> None:
    """Start VERSION as a canary for --canary percent of users (status baking)."""
    from homefeed.models.registry import RegistryError
    from homefeed.serving.deploy.controller import DeployError

    ctl = controller()
    try:
        state = ctl.start(version, canary, bake_minutes)
    except (DeployError, RegistryError) as e:
        fail(str(e))
    console.print(
        f"{state.model}: canary [bold]{state.canary}[/] serves {state.percent:g}% of users, "
        f"stable {state.stable}; baking at least {state.bake_minutes:g} minutes"
    )
    if watch:
        _watch(ctl, state)


@deploy_app.command("status")
def status() -> None:
    """The current deploy: versions, share, status and the latest verdict with its figures."""
    state = controller().status()
    console.print(status_table(state))
    if state.verdicts:
        console.print(verdict_table(state.verdicts[-1]))


@deploy_app.command("history")
def history(
    limit: Annotated[int, typer.Option(min=1, help="Show the latest N deploys.")] = 20,
) -> None:
    """Finished deploys, newest last: versions, share, outcome and why."""
    console.print(history_table(controller().status(), limit))


@deploy_app.command("rollback")
def rollback(
    reason: Annotated[str, typer.Option(help="Why, recorded in the history.")] = "manual rollback",
) -> None:
    """Stop the baking canary; with none, undo the last promotion (the registry's too)."""
    from homefeed.models.registry import RegistryError
    from homefeed.serving.deploy.controller import DeployError

    try:
        state = controller().rollback(reason)
    except (DeployError, RegistryError) as e:
        fail(str(e))
    console.print(f"{state.model}: rolled back; stable is [bold]{state.stable}[/]")


def _watch(ctl: DeployController, state: DeployState) -> None:
    shown = 0
    interval = min(ctl.config.check_interval_s, 5.0)
    while True:
        state = ctl.status()
        for verdict in state.verdicts[shown:]:
            console.print(f"{verdict['at']}  [bold]{verdict['decision']}[/]  "
                          + "; ".join(verdict["reasons"]))  # fmt: skip
        shown = len(state.verdicts)
        if not state.baking:
            console.print(f"{state.model}: {state.status}; stable is [bold]{state.stable}[/]")
            return
        time.sleep(interval)


# ---- formatting ------------------------------------------------------------------------------


def status_table(state: DeployState) -> Table:
    table = Table(title=f"deploy of {state.model}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("status", state.status),
        ("stable", state.stable or "none"),
        ("canary", state.canary or "-"),
        ("canary share", f"{state.percent:g}%" if state.canary else "-"),
        ("started", state.started_at or "-"),
        ("bake minutes", f"{state.bake_minutes:g}" if state.bake_minutes else "-"),
        ("verdicts", str(len(state.verdicts))),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def verdict_table(verdict: dict[str, Any]) -> Table:
    """The figures of one verdict, one column per arm."""
    figures = verdict.get("figures", {})
    reasons = "; ".join(verdict.get("reasons", []))
    table = Table(title=f"{verdict.get('decision')} at {verdict.get('at')}: {reasons}")
    table.add_column("figure", style="bold")
    arms = [a for a in ("stable", "canary") if a in figures]
    for arm in arms:
        table.add_column(f"{arm} {figures[arm].get('version', '')}", justify="right")
    keys = ("requests", "errors", "error_rate", "p99_ms", "users", "impressions", "engagements",
            "engagement_rate")  # fmt: skip
    for key in keys:
        table.add_row(key, *(_cell(figures[a].get(key)) for a in arms))
    test = figures.get("engagement", {})
    for key in ("ratio", "z", "p_no_worse", "p_worse"):
        if key in test:
            table.add_row(f"engagement {key}", _cell(test[key]), "")
    return table


def history_table(state: DeployState, limit: int = 20) -> Table:
    table = Table(title=f"deploys of {state.model}")
    for name in ("started", "ended", "stable", "canary", "share", "outcome", "why"):
        table.add_column(name)
    for entry in state.history[-limit:]:
        table.add_row(
            entry.get("started_at") or "-",
            entry.get("ended_at") or "-",
            entry.get("stable") or "-",
            entry.get("canary") or "-",
            f"{entry.get('percent', 0):g}%",
            entry.get("outcome", "?"),
            "; ".join(entry.get("reasons", [])),
        )
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@deploy_app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default: config).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="TCP port (default: config, 8080).")
    ] = None,
) -> None:
    """Serve the feed API on the registry's versions, routing and judging canaries.

    Each version is served as `homefeed serve` serves one (online store, reaction consumer,
    compiled ranker, cached candidate pools); the arms share the online store."""
    from contextlib import closing

    from threadpoolctl import threadpool_limits

    from homefeed.events.sdk import EventLogger
    from homefeed.models.registry import ModelRegistry
    from homefeed.serving.api.app import create_app
    from homefeed.serving.api.cli import feed_config, online_backend, reaction_thread, run_uvicorn
    from homefeed.serving.deploy.controller import DeployError, registry_loader
    from homefeed.serving.deploy.loop import DeployLoop
    from homefeed.serving.deploy.metrics import DeployCollector
    from homefeed.serving.deploy.router import stable_pin_topics
    from homefeed.serving.online import open_online_store
    from homefeed.serving.online.reactions import GROUP

    threadpool_limits(1)  # as `homefeed serve`: per-request products are tiny
    cfg, config = settings.config, feed_config()
    lake = open_lake_store()
    registry = ModelRegistry(lake, cfg.models.name)
    with (
        closing(open_online_store(cfg.serving.online)) as store,
        opened_log() as event_log,
        EventLogger(
            event_log, config=cfg.sdk, source="feed-api", partitions=cfg.log.partitions,
            retention_ms=retention_ms(), on_reject=lambda r: None,
        ) as logger,
    ):  # fmt: skip
        loader = registry_loader(
            registry, lambda version: _training_data(registry, version),
            make_backend=lambda bundle, data, version: online_backend(
                cfg, bundle, data, store, model_version=version),
        )  # fmt: skip
        try:
            loop = DeployLoop(lake, event_log, cfg.models.name, loader, deploy_config(),
                              cfg.log.partitions)  # fmt: skip
        except DeployError as e:
            fail(str(e))
        topics = stable_pin_topics(loop.router)
        with loop, reaction_thread(event_log, store, topics, cfg.log.partitions, GROUP):
            app = create_app(loop.router, logger, config)
            app.state.homefeed_config = cfg
            app.state.service.metrics.registry.register(DeployCollector(loop.router))
            run_uvicorn(app, config, host, port)


def _training_data(registry: ModelRegistry, version: str) -> TrainingData:
    """The catalogue and users of the window ``version`` was trained on, from the lake."""
    from datetime import datetime

    from homefeed.models.lake_data import load_training_data

    window = registry.show(version).data_range
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    console.print(f"loading {version}'s training window {start} .. {end} from the lake")
    return load_training_data(settings.config, start, end)
