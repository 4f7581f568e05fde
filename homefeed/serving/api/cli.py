"""``homefeed serve``: run the feed API with uvicorn, or print its OpenAPI document.

Until a trained model bundle can be served (``BundleBackend``), the service runs a
``SimpleBackend`` on the simulated world of ``[simulator]``, with the sources given.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from homefeed.cli.common import console, fail, opened_log, retention_ms, settings
from homefeed.serving.api.settings import FeedServiceConfig

if TYPE_CHECKING:
    from homefeed.serving.api.backend import SimpleBackend

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
) -> None:
    """Serve ranked home feeds over HTTP (GET /v1/users/{id}/feed, POST /v1/events, /metrics)."""
    from homefeed.serving.api.app import create_app, openapi_document

    config = feed_config()
    if openapi:
        typer.echo(json.dumps(openapi_document(config), indent=2))
        return
    import uvicorn

    from homefeed.events.sdk import EventLogger

    backend = _simulated_backend(sources, config)
    cfg = settings.config
    with (
        opened_log() as event_log,
        EventLogger(
            event_log,
            config=cfg.sdk,
            source="feed-api",
            partitions=cfg.log.partitions,
            retention_ms=retention_ms(),
            on_reject=lambda r: None,
        ) as logger,
    ):
        app = create_app(backend, logger, config)
        app.state.homefeed_config = cfg  # the console reads the log and lake this config names
        uvicorn.run(app, host=host or config.host, port=port or config.port, log_level="info")


def feed_config() -> FeedServiceConfig:
    """``[serving.api]`` of the config tree once mounted there; the defaults until then."""
    section = getattr(settings.config.serving, "api", None)
    if isinstance(section, FeedServiceConfig):
        return section
    return FeedServiceConfig()  # type: ignore[call-arg]


def _simulated_backend(names: str, config: FeedServiceConfig) -> SimpleBackend:
    from homefeed.models.sources import make_source
    from homefeed.serving.api.backend import SimpleBackend
    from homefeed.testing.models import simulated_training_data

    sim = settings.config.simulator
    console.print(f"fitting {names} on a simulated world of {sim.users} users, {sim.pins} pins")
    data = simulated_training_data(sim.users, sim.pins, sim.days, sim.seed)
    fitted = {}
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        try:
            fitted[name] = source = make_source(name)
        except ValueError as e:
            fail(f"--sources: {e}")
        source.fit(data)
    return SimpleBackend(
        data,
        fitted,
        candidates_per_source=config.candidates_per_source,
        recent_window_hours=config.recent_window_hours,
    )
