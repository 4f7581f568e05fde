"""The feed service below HTTP: build a page, log its impressions, take in client events.

``FeedService`` is what the handlers in ``app.py`` call; it can be driven without a server.
A feed request without a cursor runs the whole pipeline once (candidates, features, rank,
blend) and stores the result as a session; a request with a cursor only slices that session.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from homefeed.events.sdk import EventLogger, RejectedEventError
from homefeed.events.validate import Rejection, new_event_id
from homefeed.serving.api.backend import FeedBackend
from homefeed.serving.api.blending import blend
from homefeed.serving.api.metrics import FeedMetrics
from homefeed.serving.api.session import (
    Cursor,
    CursorCodec,
    CursorError,
    FeedSession,
    Sessions,
    SessionStore,
)
from homefeed.serving.api.settings import FeedServiceConfig

SURFACE = "home_feed"
CLIENT = {"platform": "api"}


class FeedError(Exception):
    """A request the service refuses: HTTP status, error code, and the field and value at fault."""

    def __init__(
        self, status: int, error: str, message: str, field: str | None, value: object
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.field = field
        self.value = None if value is None else repr(value)[:120]


@dataclass(frozen=True)
class PageItem:
    pin_id: int
    position: int
    source: str
    score: float
    topics: tuple[str, ...]


@dataclass(frozen=True)
class FeedPage:
    user_id: int
    request_id: str
    items: list[PageItem]
    next_cursor: str | None
    model_version: str


class FeedService:
    def __init__(
        self,
        backend: FeedBackend,
        logger: EventLogger,
        config: FeedServiceConfig,
        metrics: FeedMetrics | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        sessions: Sessions | None = None,
        cursors: CursorCodec | None = None,
    ) -> None:
        self.backend, self.logger, self.config = backend, logger, config
        self.metrics = metrics or FeedMetrics()
        self.clock_ms = clock_ms
        # "is None", not "or": an empty store has len() 0 and would be replaced.
        self.sessions = (
            sessions
            if sessions is not None
            else SessionStore(config.session_ttl_s, config.max_sessions)
        )
        self.cursors = cursors if cursors is not None else CursorCodec()

    def feed(self, user_id: int, limit: int, cursor: str | None) -> FeedPage:
        """One page of the user's feed; raises ``FeedError`` naming what is wrong."""
        # Deploy hook: a router (serving.deploy) picks the user's arm once, for the whole request.
        route = getattr(self.backend, "route", None)
        if route is None:
            return self._feed(self.backend, user_id, limit, cursor)
        with route(user_id) as backend:
            return self._feed(backend, user_id, limit, cursor)

    def _feed(self, backend: FeedBackend, user_id: int, limit: int, cursor: str | None) -> FeedPage:
        if not backend.known_user(user_id):
            raise FeedError(404, "unknown_user", f"no user {user_id}", "user_id", user_id)
        now_ms = self.clock_ms()
        if cursor is None:
            session, offset = self._new_session(backend, user_id, now_ms), 0
        else:
            session, offset = self._resume(user_id, cursor)
        end = min(offset + limit, len(session))
        next_cursor = (
            self.cursors.encode(Cursor(session.session_id, end)) if end < len(session) else None
        )
        shown = np.arange(offset, end)
        if cursor is not None:  # hidden or blocked since the session was ranked: never shown
            gone = backend.exclusions(user_id, now_ms)
            banned = np.concatenate([gone.hidden, gone.blocked])
            shown = shown[~np.isin(session.pins[offset:end], banned)]
        backend.served(user_id, session.pins[shown], now_ms)
        items = [
            PageItem(
                pin_id=int(session.pins[i]),
                position=i,
                source=session.sources[i],
                score=float(session.scores[i]),
                topics=session.topics[i],
            )
            for i in shown.tolist()
        ]
        for item in items:
            self.metrics.served.labels(item.source).inc()
        return FeedPage(user_id, new_event_id(), items, next_cursor, session.model_version)

    def _new_session(self, backend: FeedBackend, user_id: int, now_ms: int) -> FeedSession:
        m = self.metrics
        with m.stage("candidates"):
            pool = backend.candidates(user_id, now_ms)
        m.count_candidates(pool.per_source())
        with m.stage("features"):
            pool = backend.features(pool, now_ms)
        with m.stage("rank"):
            scores = backend.rank(pool)
        with m.stage("blend"):
            excluded = backend.exclusions(user_id, now_ms).pins
            rows = blend(
                pins=pool.pins,
                scores=scores,
                sources=pool.source,
                topics=pool.topic,
                source_names=pool.source_names,
                excluded=excluded,
                n=self.config.session_items,
                quotas=self.config.source_quotas,
                max_run=self.config.max_same_topic_in_row,
            )
            names, topic_names = pool.source_names, pool.topic_names
            topics = tuple(
                _one_topic(topic_names[t]) if t >= 0 else () for t in pool.topic[rows].tolist()
            )
            return self.sessions.create(
                user_id,
                backend.model_version,
                pool.pins[rows],
                tuple(names[s] for s in pool.source[rows].tolist()),
                scores[rows].astype(np.float32),
                topics,
            )

    def _resume(self, user_id: int, text: str) -> tuple[FeedSession, int]:
        try:
            cursor = self.cursors.decode(text)
        except CursorError as e:
            raise FeedError(400, "invalid_cursor", str(e), "cursor", e.value) from None
        session = self.sessions.get(cursor.session_id)
        if session is None:
            raise FeedError(
                410,
                "cursor_expired",
                "the feed session of this cursor expired; request the feed without a cursor",
                "cursor",
                text,
            )
        if session.user_id != user_id:
            raise FeedError(
                400, "invalid_cursor", "the cursor belongs to another user", "cursor", text
            )
        if cursor.offset > len(session):
            raise FeedError(400, "invalid_cursor", "offset past the session", "cursor", text)
        return session, cursor.offset

    def impressions(self, page: FeedPage) -> list[dict[str, Any]]:
        """The impression events of a page, one per served pin."""
        when = _rfc3339(self.clock_ms())
        return [
            {
                "event_type": "impression",
                "user_id": page.user_id,
                "event_time": when,
                "surface": SURFACE,
                "client": dict(CLIENT),
                "pin_id": item.pin_id,
                "request_id": page.request_id,
                "position": item.position,
                "candidate_source": item.source,
                "model_version": page.model_version,
            }
            for item in page.items
        ]

    def log_impressions(self, events: list[dict[str, Any]]) -> None:
        """Queue impressions in the logger's buffer (its thread sends them); never raises."""
        with self.metrics.stage("log"):
            try:
                rejected = self.logger.log_many(events)
            except RejectedEventError as e:  # a strict logger: our own events are at fault
                rejected = [e.rejection]
        self.metrics.events.labels("impression_rejected").inc(len(rejected))

    def ingest(self, events: Sequence[Any]) -> tuple[int, list[tuple[int, Rejection]]]:
        """Validate and log client events; returns the accepted count and rejections by index."""
        if len(events) > self.config.max_events_per_request:
            limit = self.config.max_events_per_request
            raise FeedError(
                400,
                "too_many_events",
                f"a batch holds at most {limit} events, got {len(events)}",
                "events",
                len(events),
            )
        rejected: list[tuple[int, Rejection]] = []
        for index, event in enumerate(events):
            rejection = self._log_one(event)
            if rejection is not None:
                rejected.append((index, rejection))
        accepted = len(events) - len(rejected)
        self.metrics.events.labels("accepted").inc(accepted)
        self.metrics.events.labels("rejected").inc(len(rejected))
        return accepted, rejected

    def _log_one(self, event: Any) -> Rejection | None:
        try:
            return self.logger.log(event)
        except RejectedEventError as e:
            return e.rejection


@functools.lru_cache(maxsize=4096)
def _one_topic(name: str) -> tuple[str]:
    """One shared tuple per topic: a session then holds 200 references, not 200 new tuples
    for the garbage collector to walk."""
    return (name,)


def _rfc3339(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
