"""Stable pagination: a feed session is ranked once, and pages are slices of it.

The first request for a feed (no cursor) blends the user's feed once and stores it under a
random session id. Every page's ``next_cursor`` names the session and the offset of the next
page, so page 2 can never repeat page 1 however the models or the user's state move meanwhile.

A cursor is opaque to clients: base64url of ``version | session id | offset | digest``, where
the digest is a keyed BLAKE2b of the rest. The key is random per store, so a cursor cannot be
forged or edited, and a cursor from another process reads as malformed, like any garbage.
Sessions expire ``ttl_s`` after creation and at most ``max_sessions`` are kept (LRU), so
memory is bounded whatever the traffic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

_VERSION = 1
_BODY = struct.Struct(">B16sI")  # version, session id, offset
_DIGEST_BYTES = 8
CURSOR_MAX_CHARS = 64  # the encoded cursor is 38 characters; anything much longer is garbage


class CursorError(ValueError):
    """The cursor is not one this service issued (or was altered); ``reason`` says how."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"cursor {value[:CURSOR_MAX_CHARS]!r} is invalid: {reason}")
        self.value = value[:CURSOR_MAX_CHARS]
        self.reason = reason


@dataclass(frozen=True)
class Cursor:
    session_id: bytes
    offset: int


@dataclass(frozen=True)
class FeedSession:
    """One materialised feed: parallel columns in feed order."""

    session_id: bytes
    user_id: int
    model_version: str
    pins: np.ndarray  # int64
    sources: tuple[str, ...]
    scores: np.ndarray  # float32
    topics: tuple[tuple[str, ...], ...]
    created_s: float

    def __len__(self) -> int:
        return len(self.pins)


class CursorCodec:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def encode(self, cursor: Cursor) -> str:
        body = _BODY.pack(_VERSION, cursor.session_id, cursor.offset)
        raw = body + self._digest(body)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def decode(self, text: str) -> Cursor:
        if len(text) > CURSOR_MAX_CHARS:
            raise CursorError(text, f"longer than {CURSOR_MAX_CHARS} characters")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise CursorError(text, "not base64url") from None
        if len(raw) != _BODY.size + _DIGEST_BYTES:
            raise CursorError(text, "wrong length")
        body, digest = raw[: _BODY.size], raw[_BODY.size :]
        if not secrets.compare_digest(digest, self._digest(body)):
            raise CursorError(text, "checksum mismatch")
        version, session_id, offset = _BODY.unpack(body)
        if version != _VERSION:
            raise CursorError(text, f"unknown cursor version {version}")
        return Cursor(session_id, offset)

    def _digest(self, body: bytes) -> bytes:
        return hashlib.blake2b(body, key=self._key, digest_size=_DIGEST_BYTES).digest()


class Sessions(Protocol):
    """Where feed sessions live: ``SessionStore`` in process, or one shared by several
    processes (``session_sqlite.SqliteSessionStore``, for ``serve --workers``)."""

    def __len__(self) -> int: ...

    def create(
        self,
        user_id: int,
        model_version: str,
        pins: np.ndarray,
        sources: tuple[str, ...],
        scores: np.ndarray,
        topics: tuple[tuple[str, ...], ...],
    ) -> FeedSession: ...

    def get(self, session_id: bytes) -> FeedSession | None: ...


class SessionStore:
    """Feed sessions by id: thread-safe, expiring after ``ttl_s``, at most ``max_sessions``."""

    def __init__(
        self,
        ttl_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.max_sessions, self._clock = ttl_s, max_sessions, clock
        self._sessions: OrderedDict[bytes, FeedSession] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self,
        user_id: int,
        model_version: str,
        pins: np.ndarray,
        sources: tuple[str, ...],
        scores: np.ndarray,
        topics: tuple[tuple[str, ...], ...],
    ) -> FeedSession:
        session = FeedSession(
            os.urandom(16), user_id, model_version, pins, sources, scores, topics, self._clock()
        )
        with self._lock:
            self._sessions[session.session_id] = session
            self._evict()
        return session

    def get(self, session_id: bytes) -> FeedSession | None:
        """The live session, or None if it expired or was evicted."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session):
                del self._sessions[session_id]
                return None
            self._sessions.move_to_end(session_id)
            return session

    def _expired(self, session: FeedSession) -> bool:
        return self._clock() - session.created_s >= self.ttl_s

    def _evict(self) -> None:
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        # Expired sessions at the LRU end go now rather than waiting for the count bound.
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if not self._expired(oldest):
                break
            self._sessions.popitem(last=False)
