"""``homefeed serve``: run the feed API with uvicorn, or print its OpenAPI document.

The service runs an ``OnlineBackend``: a model bundle (``--bundle DIR``, or one trained at
start on the simulated world of ``[simulator]`` with the ``--sources`` given) over the online
store of ``[serving.online]``. A reaction consumer thread (group ``online-features``) feeds
the store from the configured event log, so events POSTed to /v1/events reach the next feed
request. The catalogue and the users are the simulated world's.
"""

from __future__ import annotations

import json
import socket
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from homefeed.cli.common import console, fail, settings
from homefeed.serving.api.settings import FeedServiceConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

    from homefeed.config import HomefeedConfig
    from homefeed.log.base import EventLog
    from homefeed.models.bundle import ModelBundle
    from homefeed.models.data import Pins, TrainingData
    from homefeed.serving.api.online_backend import OnlineBackend
    from homefeed.serving.api.session import CursorCodec, Sessions
    from homefeed.serving.api.workers import DataOrigin
    from homefeed.serving.online.base import OnlineStore
    from homefeed.serving.online.reactions import PinTopics

DEFAULT_SOURCES = "following,pixie,trending"
GC_YOUNG_THRESHOLD = 2_000  # allocations between young collections (CPython's default: 700)


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
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=32, help="Server processes (default: config, 1)."),
    ] = None,
) -> None:
    """Serve ranked home feeds over HTTP (GET /v1/users/{id}/feed, POST /v1/events, /metrics)."""
    from homefeed.serving.api.app import openapi_document

    config = feed_config()
    if openapi:
        typer.echo(json.dumps(openapi_document(config), indent=2))
        return
    cfg = settings.config
    if workers is not None:
        cfg.serving.api.workers = workers
    simulated: DataOrigin = {"kind": "simulated"}
    if bundle is not None:
        model, data, origin = _load_bundle(bundle), _simulated_data(), (bundle, simulated)
    elif (production := _production(cfg)) is not None:
        model, data, origin = production
    else:
        console.print("no promoted model in the lake: training one on the simulated world")
        data = _simulated_data()
        model = _train_bundle(sources, data)
        origin = None
    run_feed_service(cfg, model, data, host, port, origin)


def serve_bundle(cfg: HomefeedConfig, bundle_dir: Path, host: str | None = None,
                 port: int | None = None) -> None:  # fmt: skip
    """Serve a saved bundle over the catalogue and users of its training window in the lake."""
    from datetime import UTC, datetime

    from homefeed.models.bundle import ModelBundle

    model = ModelBundle.load(bundle_dir)
    data = model.metadata["data"]  # what train_bundle fitted on: [first engagement, as_of)
    window = {k: datetime.fromtimestamp(data[f] / 1000, UTC).isoformat()
              for k, f in (("start", "engagement_min_ms"), ("end", "as_of_ms"))}  # fmt: skip
    origin = (bundle_dir, {"kind": "window", **window})
    run_feed_service(cfg, model, _window_data(cfg, window), host, port, origin)


def run_feed_service(
    cfg: HomefeedConfig,
    model: ModelBundle,
    data: TrainingData,
    host: str | None,
    port: int | None,
    origin: tuple[Path, DataOrigin] | None = None,
) -> None:
    """The feed API on ``model``: in this process, or in ``[serving.api] workers`` processes
    that load it from ``origin`` (its bundle directory and where its catalogue comes from)."""
    config = cfg.serving.api
    if config.workers == 1:
        from homefeed.serving.online.reactions import GROUP

        serve_app(cfg, model, data, host=host, port=port, consumer_group=GROUP)
        return
    import tempfile

    from homefeed.serving.api.workers import serve_workers

    if origin is None:  # a bundle trained in this process: workers load it from disk
        target = Path(tempfile.mkdtemp(prefix="homefeed-serve-")) / "bundle"
        model.save(target)
        origin = (target, {"kind": "simulated"})
    console.print(f"starting {config.workers} feed workers")
    serve_workers(cfg, origin[0], origin[1], host or config.host, port or config.port,
                  config.workers)  # fmt: skip


def serve_app(
    cfg: HomefeedConfig,
    model: ModelBundle,
    data: TrainingData,
    *,
    host: str | None = None,
    port: int | None = None,
    sockets: list[socket.socket] | None = None,
    sessions: Sessions | None = None,
    cursors: CursorCodec | None = None,
    consumer_group: str | None,
) -> None:
    """The feed API (uvicorn) on an OnlineBackend, with the reaction consumer beside it
    (as ``consumer_group``; None: no consumer, another process feeds the shared store)."""
    from threadpoolctl import threadpool_limits

    from homefeed.events.sdk import EventLogger
    from homefeed.log.factory import open_log
    from homefeed.serving.api.app import create_app
    from homefeed.serving.online import open_online_store

    # Per-request products are tiny: waking BLAS thread pools for them costs more than they do.
    threadpool_limits(1)
    config = cfg.serving.api
    with (
        closing(open_online_store(cfg.serving.online)) as store,
        open_log(cfg.log) as event_log,
        EventLogger(
            event_log,
            config=cfg.sdk,
            source="feed-api",
            partitions=cfg.log.partitions,
            retention_ms=int(cfg.log.retention_hours * 3_600_000),
            on_reject=lambda r: None,
        ) as logger,
        reaction_thread(event_log, store, data.pins, cfg.log.partitions, consumer_group),
    ):
        backend = online_backend(cfg, model, data, store, record_served=consumer_group is not None)
        app = create_app(backend, logger, config, sessions=sessions, cursors=cursors)
        app.state.homefeed_config = cfg  # the console reads the log and lake this config names
        run_uvicorn(app, config, host, port, sockets)


def online_backend(
    cfg: HomefeedConfig,
    model: ModelBundle,
    data: TrainingData,
    store: OnlineStore,
    *,
    model_version: str | None = None,
    record_served: bool = True,
) -> OnlineBackend:
    """``model`` served as ``[serving.api]`` says: ranker compiled, candidate pools cached, the
    online store read per request (``record_served``: see ``OnlineBackend``)."""
    from homefeed.serving.api.online_backend import OnlineBackend

    config = cfg.serving.api
    if config.compile_ranker:
        compiled = model.ranker.compile()
        console.print(f"ranker heads compiled to native code: {', '.join(compiled) or 'none'}")
    return OnlineBackend(
        model, data, store, recent_window_hours=config.recent_window_hours,
        pool_ttl_s=config.candidate_cache_ttl_s, pool_cache_users=config.candidate_cache_users,
        model_version=model_version, record_served=record_served,
    )  # fmt: skip


def run_uvicorn(
    app: FastAPI,
    config: FeedServiceConfig,
    host: str | None,
    port: int | None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve ``app`` until interrupted, the startup objects kept out of garbage collections."""
    import uvicorn

    _freeze_startup_objects()
    bind_host, bind_port = host or config.host, port or config.port
    server = uvicorn.Config(
        app, host=bind_host, port=bind_port, access_log=config.access_log, proxy_headers=False
    )
    uvicorn.Server(server).run(sockets=sockets)


def _freeze_startup_objects() -> None:
    """Keep the model, catalogue and imports out of every later garbage collection.

    A full collection walks every tracked object: with a loaded model that took 50-120 ms
    every few seconds under load, the p99 of the whole service. Objects alive now stay alive
    for the process's life, so ``gc.freeze`` moves them where collections never look.
    """
    import gc

    gc.collect()
    gc.freeze()
    # Fewer full collections (each walks every session and online state object): measured
    # p99 at 300 req/s was 26 ms with CPython's (700, 10, 10), 17-25 ms with these, and 41 ms
    # with a young threshold of 100,000 (a young collection that large is itself a pause).
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


def reaction_thread(
    event_log: EventLog,
    store: OnlineStore,
    pins: Pins | PinTopics,
    partitions: int,
    group: str | None,
) -> AbstractContextManager[object]:
    """The reaction consumer beside a server whose backends record what they serve (``pins``:
    the catalogue, or a lookup of pins' topics); none when ``group`` is None."""
    from homefeed.events.validate import new_event_id
    from homefeed.serving.api.online_backend import ReactionThread

    if group is None:
        return nullcontext()
    # This process's pages are applied to the store as they are served (OnlineBackend's
    # record_served), so the consumer skips their impressions: most of the stream.
    return ReactionThread(
        event_log, store, pins, partitions=partitions, group=group,
        skip_request_prefix=new_event_id.prefix,
    )  # fmt: skip


def _production(
    cfg: HomefeedConfig,
) -> tuple[ModelBundle, TrainingData, tuple[Path, DataOrigin]] | None:
    """The registry's promoted version and its training window, if the lake has one."""
    import tempfile

    from homefeed.lake import open_lake
    from homefeed.models.bundle import ModelBundle
    from homefeed.models.registry import ModelRegistry

    registry = ModelRegistry(open_lake(cfg.lake), cfg.models.name)
    version = registry.production()
    if version is None:
        return None
    target = Path(tempfile.mkdtemp(prefix="homefeed-serve-")) / version
    registry.fetch(version, target)
    console.print(f"serving {cfg.models.name} {version}, the promoted model in {cfg.lake.uri}")
    model = ModelBundle.load(target)
    window = dict(registry.show(version).data_range)
    return model, _window_data(cfg, window), (target, {"kind": "window", **window})


def _window_data(cfg: HomefeedConfig, meta: dict[str, str]) -> TrainingData:
    """The lake's events of a bundle's training window (its catalogue and users)."""
    from datetime import datetime

    from homefeed.models.lake_data import load_training_data

    start, end = (datetime.fromisoformat(str(meta[k])) for k in ("start", "end"))
    console.print(f"loading the training window {start} .. {end} from {cfg.lake.uri}")
    return load_training_data(cfg, start, end)


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
