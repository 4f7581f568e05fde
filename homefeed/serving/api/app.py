"""The feed HTTP API (FastAPI). Handlers parse, call ``FeedService``, and format.

No ``from __future__ import annotations`` here: FastAPI must evaluate the route annotations,
which refer to the config closed over in ``_add_feed_routes``.

Every error is JSON ``{error, message, field, value}``: bad query or path parameters are 422,
a malformed body or cursor 400, an unknown user or pin 404, an expired cursor 410, a body over
``max_body_bytes`` 413. ``create_app`` wires a backend and an ``EventLogger``;
``openapi_document`` builds the same routes without them, to print the spec.
"""

import time
from collections.abc import Callable
from typing import Annotated, Any

import anyio
import anyio.to_thread
import orjson
from fastapi import BackgroundTasks, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homefeed.events.sdk import EventLogger
from homefeed.serving.api.backend import FeedBackend
from homefeed.serving.api.metrics import CONTENT_TYPE, FeedMetrics
from homefeed.serving.api.responses import (
    MAX_ID,
    ErrorResponse,
    EventBatch,
    EventRejection,
    EventsResponse,
    FeedResponse,
    HealthResponse,
    PinResponse,
    UserResponse,
)
from homefeed.serving.api.service import FeedError, FeedService
from homefeed.serving.api.session import CursorCodec, Sessions
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.serving.ui.console import mount_console

ServiceRef = Callable[[], FeedService]
_ERR = {"model": ErrorResponse}


def create_app(
    backend: FeedBackend,
    logger: EventLogger,
    config: FeedServiceConfig | None = None,
    *,
    sessions: Sessions | None = None,
    cursors: CursorCodec | None = None,
) -> FastAPI:
    """The feed API over ``backend``, logging impressions and client events with ``logger``.

    ``sessions`` and ``cursors`` default to this process's own; workers of one service share
    them (``workers.py``) so a page's next cursor works on any of them.
    """
    config = config or FeedServiceConfig()  # type: ignore[call-arg]
    service = FeedService(backend, logger, config, sessions=sessions, cursors=cursors)
    app = _build(config, lambda: service, service.metrics)
    app.state.service = service
    mount_console(app)  # the web UI: /ui pages and /v1/console/* (homefeed.serving.ui)
    return app


def openapi_document(config: FeedServiceConfig | None = None) -> dict[str, Any]:
    """The OpenAPI document of the API (no backend needed)."""
    config = config or FeedServiceConfig()  # type: ignore[call-arg]

    def no_service() -> FeedService:
        raise RuntimeError("openapi_document() apps serve no requests")

    return _build(config, no_service, FeedMetrics()).openapi()


def _build(config: FeedServiceConfig, service: ServiceRef, metrics: FeedMetrics) -> FastAPI:
    app = FastAPI(
        title="homefeed feed service",
        version="1",
        description="Ranked home feeds, stable pagination, and event intake.",
    )
    _add_error_handlers(app)
    _add_feed_routes(app, config, service)
    _add_other_routes(app, service, metrics)
    app.add_middleware(_Metrics, metrics=metrics)
    app.add_middleware(_BodyLimit, max_bytes=config.max_body_bytes)
    return app


UserId = Annotated[int, Path(ge=0, le=MAX_ID, description="The user's id.")]
PinId = Annotated[int, Path(ge=0, le=MAX_ID, description="The pin's id.")]


def _add_feed_routes(app: FastAPI, config: FeedServiceConfig, service: ServiceRef) -> None:
    # Pages are CPU work under the GIL: computing several at once only stretches each of
    # them. By default (feed_threads 0) they run on the event loop itself, one at a time:
    # handing each to a thread and back cost ~0.3 ms of CPU and GIL hand-offs that were most
    # of the p99. A pool of threads is for backends that wait on the network (Redis, a remote
    # ranker), so other requests go on meanwhile.
    limiter = anyio.CapacityLimiter(config.feed_threads or 1)
    inline = config.feed_threads == 0

    @app.get(
        "/v1/users/{user_id}/feed",
        response_model=FeedResponse,
        responses={400: _ERR, 404: _ERR, 410: _ERR, 422: _ERR},
        summary="A page of the user's home feed",
    )
    async def get_feed(
        user_id: UserId,
        background: BackgroundTasks,
        limit: Annotated[
            int, Query(ge=1, le=config.max_limit, description="Pins in this page.")
        ] = config.page_size,
        cursor: Annotated[
            str | None, Query(description="next_cursor of the previous page; omit for page 1.")
        ] = None,
    ) -> Response:
        svc = service()
        if inline:
            page = svc.feed(user_id, limit, cursor)
            # Logged after the response is sent, on the loop too (starlette sends a plain
            # function to a thread).
            background.add_task(_call_async, svc.log_impressions, svc.impressions(page))
        else:
            page = await anyio.to_thread.run_sync(svc.feed, user_id, limit, cursor, limiter=limiter)
            background.add_task(svc.log_impressions, svc.impressions(page))
        # Serialised here, not validated again through FeedResponse: the hot path's fields are
        # built by the service (tests check the body against the OpenAPI schema).
        body = {
            "request_id": page.request_id,
            "items": [vars(item) | {"topics": list(item.topics)} for item in page.items],
            "next_cursor": page.next_cursor,
            "model_version": page.model_version,
        }
        return Response(orjson.dumps(body), media_type="application/json", background=background)

    @app.post(
        "/v1/events",
        response_model=EventsResponse,
        responses={400: _ERR, 413: _ERR},
        summary="Log client events (invalid ones are dead-lettered and listed)",
    )
    def post_events(batch: EventBatch) -> EventsResponse:
        accepted, rejected = service().ingest(batch.events)
        return EventsResponse(
            accepted=accepted,
            rejected=[
                EventRejection(
                    index=i, reason=r.reason, message=r.message, field=r.field, value=r.value
                )
                for i, r in rejected
            ],
        )


def _add_other_routes(app: FastAPI, service: ServiceRef, metrics: FeedMetrics) -> None:
    @app.get("/v1/pins/{pin_id}", response_model=PinResponse, responses={404: _ERR, 422: _ERR})
    def get_pin(pin_id: PinId) -> PinResponse:
        pin = service().backend.pin(pin_id)
        if pin is None:
            raise FeedError(404, "unknown_pin", f"no pin {pin_id}", "pin_id", pin_id)
        return PinResponse(**vars(pin) | {"topics": list(pin.topics)})

    @app.get("/v1/users/{user_id}", response_model=UserResponse, responses={404: _ERR, 422: _ERR})
    def get_user(user_id: UserId) -> UserResponse:
        user = service().backend.user(user_id)
        if user is None:
            raise FeedError(404, "unknown_user", f"no user {user_id}", "user_id", user_id)
        return UserResponse(**vars(user) | {"top_topics": list(user.top_topics)})

    @app.get("/healthz", response_model=HealthResponse)
    def healthz() -> HealthResponse:
        svc = service()
        return HealthResponse(
            status="ok", model_version=svc.backend.model_version, sessions=len(svc.sessions)
        )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)


def _error(status: int, error: str, message: str, field: str | None, value: Any) -> JSONResponse:
    body = ErrorResponse(
        error=error,
        message=message,
        field=field,
        value=None if value is None else repr(value)[:120],
    )
    return JSONResponse(body.model_dump(), status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FeedError)
    async def feed_error(_: Request, e: FeedError) -> JSONResponse:
        body = ErrorResponse(error=e.error, message=e.message, field=e.field, value=e.value)
        return JSONResponse(body.model_dump(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("request", [])
        if first.get("type") == "json_invalid":  # loc holds the character offset, not a field
            path = []
        field = _field_name(path) or where
        status = 400 if where == "body" else 422
        error = "invalid_body" if where == "body" else "invalid_parameter"
        message = f"{field}: {first.get('msg', 'invalid')}"
        if field != where:
            message = f"{where} {message}"
        return _error(status, error, message, field, first.get("input"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        response = _error(e.status_code, "http_error", str(e.detail), None, None)
        response.headers.update(e.headers or {})  # 405 must keep its Allow header
        return response


def _field_name(path: list[str]) -> str:
    """events.3.event_type -> events[3].event_type"""
    out = ""
    for part in path:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


class _BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413 before any handler parses them.

    The body is read here (at most max_bytes + one chunk) and replayed to the app, so a
    client sending chunked bodies without Content-Length is bounded too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, declared)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, size)
                return
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        message = f"request body is {size} bytes, over the {self.max_bytes} limit"
        await _error(413, "body_too_large", message, "body", size)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class _Metrics:
    """Request latency and error counts by route template and status code."""

    def __init__(self, app: ASGIApp, metrics: FeedMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(route, status, time.perf_counter() - start)


async def _call_async(fn: Callable[..., object], *args: object) -> None:
    """``fn(*args)`` on the event loop (a background task starlette will not send to a thread)."""
    fn(*args)
