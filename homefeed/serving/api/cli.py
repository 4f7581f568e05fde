"""``homefeed serve``: run the feed API with uvicorn, or print its OpenAPI document.

The service runs an ``OnlineBackend``: a model bundle (``--bundle DIR``, or one trained at
start on the simulated world of ``[simulator]`` with the ``--sources`` given) over the online
store of ``[serving.online]``. A reaction consumer thread (group ``online-features``) feeds
the store from the configured event log, so events POSTed to /v1/events reach the next feed
request. The catalogue and the users are the simulated world's.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from homefeed.cli.common import console, fail, opened_log, retention_ms, settings
from homefeed.serving.api.settings import FeedServiceConfig

if TYPE_CHECKING:
    from homefeed.models.bundle import ModelBundle
    from homefeed.models.data import TrainingData

DEFAULT_SOURCES = "following,pixie,trending"


def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default: config).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="TCP port (default: config, 8080).")
    ] = None,
    openapi: Annotated[
        bool, typer.Option("--openapi", help="Print the OpenAPI document (JSON) and exit.")
    ] = False,
    sources: Annotated[
        str, typer.Option(help="Candidate sources to fit, comma-separated (see [models]).")
    ] = DEFAULT_SOURCES,
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="A saved model bundle directory (default: train one on [simulator]).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Serve ranked home feeds over HTTP (GET /v1/users/{id}/feed, POST /v1/events, /metrics)."""
    from homefeed.serving.api.app import create_app, openapi_document

    config = feed_config()
    if openapi:
        typer.echo(json.dumps(openapi_document(config), indent=2))
        return
    import uvicorn

    from homefeed.events.sdk import EventLogger
    from homefeed.serving.api.online_backend import OnlineBackend, ReactionThread
    from homefeed.serving.online import open_online_store

    cfg = settings.config
    data = _simulated_data()
    model = _load_bundle(bundle) if bundle else _train_bundle(sources, data)
    with (
        closing(open_online_store(cfg.serving.online)) as store,
        opened_log() as event_log,
        EventLogger(
            event_log,
            config=cfg.sdk,
            source="feed-api",
            partitions=cfg.log.partitions,
            retention_ms=retention_ms(),
            on_reject=lambda r: None,
        ) as logger,
        ReactionThread(event_log, store, data.pins, partitions=cfg.log.partitions),
    ):
        backend = OnlineBackend(model, data, store, recent_window_hours=config.recent_window_hours)
        app = create_app(backend, logger, config)
        app.state.homefeed_config = cfg  # the console reads the log and lake this config names
        uvicorn.run(app, host=host or config.host, port=port or config.port, log_level="info")


def feed_config() -> FeedServiceConfig:
    """``[serving.api]`` of the config tree once mounted there; the defaults until then."""
    section = getattr(settings.config.serving, "api", None)
    if isinstance(section, FeedServiceConfig):
        return section
    return FeedServiceConfig()  # type: ignore[call-arg]


def _simulated_data() -> TrainingData:
    from homefeed.testing.models import simulated_training_data

    sim = settings.config.simulator
    console.print(f"simulated world: {sim.users} users, {sim.pins} pins, {sim.days} days")
    return simulated_training_data(sim.users, sim.pins, sim.days, sim.seed)


def _load_bundle(path: Path) -> ModelBundle:
    from homefeed.models.bundle import ModelBundle

    try:
        return ModelBundle.load(path)
    except (OSError, ValueError, KeyError) as e:
        fail(f"--bundle {path}: {e}")


def _train_bundle(names: str, data: TrainingData) -> ModelBundle:
    """A bundle of the named sources (settings from [models] where given) on ``data``."""
    from homefeed.config import SourceConfig
    from homefeed.models.pipeline import train_bundle
    from homefeed.models.sources import SOURCES

    models = settings.config.models
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SOURCES]
    if unknown or not chosen:
        fail(f"--sources = {names!r}: unknown {unknown}; known: {', '.join(sorted(SOURCES))}")
    picked = {n: models.sources.get(n) or SourceConfig() for n in chosen}  # type: ignore[call-arg]
    console.print(f"training a bundle of {', '.join(chosen)}")
    return train_bundle(data, models.model_copy(update={"sources": picked}))
