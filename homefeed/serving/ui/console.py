"""The web UI: read-only JSON under ``/v1/console/*`` and the static pages under ``/ui``.

``mount_console(app, config)`` adds both to a feed API app. The endpoints need the pipeline's
config (where the log and the lake are): ``config`` is kept in ``app.state.homefeed_config``
and handed to handlers by the ``homefeed_config`` dependency; an app mounted without one
loads ``homefeed.toml`` plus ``HOMEFEED_*`` overrides once, the way the CLI does.

The routes are left out of the OpenAPI document: they are an operator's view, not the API.
Handlers are thin: they open the log or lake, call one function of ``status.py``, close.
"""

from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.staticfiles import StaticFiles

from homefeed.config import HomefeedConfig, load_config
from homefeed.lake.base import LakeStore
from homefeed.lake.factory import open_lake
from homefeed.log.base import EventLog
from homefeed.log.factory import open_log
from homefeed.serving.api.service import FeedError
from homefeed.serving.ui import status

STATIC = FilePath(__file__).parent / "static"
MAX_ID = 2**63 - 1

router = APIRouter(prefix="/v1/console", include_in_schema=False)


def mount_console(app: FastAPI, config: HomefeedConfig | None = None) -> None:
    """Serve the console endpoints and the pages (``/ui/``) from ``app``."""
    if config is not None:
        app.state.homefeed_config = config
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")


def homefeed_config(request: Request) -> HomefeedConfig:
    """The config set at app creation; else the file and environment, loaded once."""
    state = request.app.state
    if getattr(state, "homefeed_config", None) is None:
        state.homefeed_config = load_config()
    config: HomefeedConfig = state.homefeed_config
    return config


Config = Annotated[HomefeedConfig, Depends(homefeed_config)]


def opened_log(config: Config) -> Iterator[EventLog]:
    event_log = open_log(config.log)
    try:
        yield event_log
    finally:
        event_log.close()


def lake_store(config: Config) -> LakeStore:
    return open_lake(config.lake)


Lake = Annotated[LakeStore, Depends(lake_store)]


def _backend(request: Request) -> Any:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise FeedError(503, "no_backend", "this app serves no feed backend", None, None)
    return service.backend


@router.get("/users")
def users(request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 8) -> dict[str, Any]:
    """The most active users of the backend's snapshot, with their boards."""
    return {"users": status.active_users(_backend(request), limit)}


@router.get("/users/{user_id}")
def user(request: Request, user_id: Annotated[int, Path(ge=0, le=MAX_ID)]) -> dict[str, Any]:
    """One user as the backend knows them, plus their boards (a save needs a board)."""
    doc = status.user_json(_backend(request), user_id)
    if doc is None:
        raise FeedError(404, "unknown_user", f"no user {user_id}", "user_id", user_id)
    return doc


@router.get("/topics")
def topics(config: Config, event_log: Annotated[EventLog, Depends(opened_log)]) -> dict[str, Any]:
    """Event log topics: partitions, offsets, and the persister's consumer lag."""
    from homefeed.events.registry import SchemaRegistry

    group = config.persister.group
    rows = status.topics_status(event_log, group, SchemaRegistry().topics())
    return {"log": event_log.name, "group": group, "topics": rows}


@router.get("/lake")
def lake(config: Config, store: Lake) -> dict[str, Any]:
    """Lake tables (events and job outputs): partitions, _SUCCESS markers, latest partition."""
    return {"uri": config.lake.uri, "tables": status.lake_status(store)}


@router.get("/jobs")
def jobs(store: Lake, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
    """The latest job runs of the ledger, newest first."""
    return {"runs": status.job_runs(store, limit)}


@router.get("/models")
def models(config: Config, store: Lake) -> dict[str, Any]:
    """Registered models (production marked) and their deploy/canary state."""
    return {"models": status.models_status(store, config.models.name)}


@router.get("/experiments")
def experiments(config: Config, store: Lake) -> dict[str, Any]:
    """Configured experiments, and whether the lake has exposures to report on."""
    return status.experiments_status(config, store)


@router.get("/experiments/{name}/report")
def experiment_report(name: str, config: Config, store: Lake) -> dict[str, Any]:
    """The experiment's report over the lake: per-variant means with intervals, lifts, SRM."""
    if name not in config.experiments.definitions:
        known = ", ".join(sorted(config.experiments.definitions)) or "none configured"
        message = f"no experiment {name!r}; experiments: {known}"
        raise FeedError(404, "unknown_experiment", message, "name", name)
    return status.experiment_report(config, store, name)
