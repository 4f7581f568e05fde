"""Feed sessions in one SQLite file, shared by every feed-server process on a host.

``homefeed serve --workers N`` runs N processes behind one port, so page 2 of a feed may reach
another process than page 1. ``SqliteSessionStore`` has the same API as the in-process
``SessionStore`` but keeps sessions in a WAL-mode SQLite database that all workers open, and
``shared_cursor_key`` gives every worker the same cursor key, so a cursor issued by one worker
decodes in any other.

Sessions are ephemeral (a lost session only restarts a feed at page 1), so the database runs
with ``synchronous=OFF``: a power cut may lose recent sessions but never corrupts the file in
WAL mode. Times come from ``clock`` (wall time by default) because processes must agree on it.

Bounds: every ``min(100, max_sessions)`` creates *in one process*, that process deletes the
expired rows and every row older than the newest ``max_sessions``. Age is insertion order
across all processes (LRU by creation, not by last read: reads never write), so between two
sweeps each process may add up to the sweep interval rows beyond ``max_sessions``.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from homefeed.closing import Closing
from homefeed.serving.api.session import FeedSession

__all__ = ["SqliteSessionStore", "shared_cursor_key"]

_BUSY_TIMEOUT_MS = 5_000  # a writer holds the lock for microseconds; waiting long means trouble
_SWEEP_EVERY = 100
_KEY_BYTES = 32
_KEY_NAME = "cursor_key"

# seq orders rows by insertion across processes, which makes the count bound one range delete.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        seq INTEGER PRIMARY KEY,
        id BLOB NOT NULL UNIQUE,
        created_s REAL NOT NULL,
        user_id INTEGER NOT NULL,
        model_version TEXT NOT NULL,
        pins BLOB NOT NULL,
        scores BLOB NOT NULL,
        sources BLOB NOT NULL,
        topics BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_s)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
)
_INSERT = (
    "INSERT INTO sessions (id, created_s, user_id, model_version, pins, scores, sources, topics)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = (
    "SELECT created_s, user_id, model_version, pins, scores, sources, topics"
    " FROM sessions WHERE id = ?"
)
_DELETE_EXPIRED = "DELETE FROM sessions WHERE created_s <= ?"
_DELETE_BEYOND = "DELETE FROM sessions WHERE seq <= (SELECT max(seq) FROM sessions) - ?"
_COUNT_LIVE = "SELECT count(*) FROM sessions WHERE created_s > ?"


class SqliteSessionStore(Closing):
    """Feed sessions by id in a SQLite file: safe across threads and processes.

    Same contract as ``SessionStore``: ``get`` returns None once a session is ``ttl_s`` old (by
    ``clock``) or evicted; at most about ``max_sessions`` are kept (see the module docstring for
    the exact bound). Each thread gets its own connection; call ``close`` (or use ``with``) when
    done. Open the store after forking: a connection must not cross a fork.
    """

    def __init__(
        self,
        path: Path,
        ttl_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_positive("ttl_s", ttl_s)
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be an integer >= 1, got {max_sessions!r}")
        self.path, self.ttl_s, self.max_sessions = Path(path), ttl_s, max_sessions
        self._clock = clock
        self._sweep_every = min(_SWEEP_EVERY, max_sessions)
        self._creates = itertools.count(1)  # next() is atomic under the GIL
        self._pid = os.getpid()
        self._local = threading.local()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()  # guards _open only; never held during a query
        self._conn()  # fail now, not on the first request, if the file cannot be opened

    def __len__(self) -> int:
        """Live (unexpired) sessions in the file, from every process."""
        (count,) = self._conn().execute(_COUNT_LIVE, (self._clock() - self.ttl_s,)).fetchone()
        return int(count)

    def create(
        self,
        user_id: int,
        model_version: str,
        pins: np.ndarray,
        sources: tuple[str, ...],
        scores: np.ndarray,
        topics: tuple[tuple[str, ...], ...],
    ) -> FeedSession:
        pins = np.ascontiguousarray(pins, dtype=np.int64)
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        session = FeedSession(
            os.urandom(16), user_id, model_version, pins, sources, scores, topics, self._clock()
        )
        row = (
            session.session_id,
            session.created_s,
            user_id,
            model_version,
            pins.tobytes(),
            scores.tobytes(),
            orjson.dumps(sources),
            orjson.dumps(topics),
        )
        conn = self._conn()
        conn.execute(_INSERT, row)
        if next(self._creates) % self._sweep_every == 0:
            self._sweep(conn)
        return session

    def get(self, session_id: bytes) -> FeedSession | None:
        """The live session, or None if it expired, was evicted or never existed."""
        row = self._conn().execute(_SELECT, (session_id,)).fetchone()
        if row is None:
            return None
        created_s, user_id, model_version, pins, scores, sources, topics = row
        if self._clock() - created_s >= self.ttl_s:
            return None  # the next sweep deletes it; reads never write
        return FeedSession(
            session_id,
            user_id,
            model_version,
            np.frombuffer(pins, dtype=np.int64),  # read-only views: sessions are immutable
            tuple(orjson.loads(sources)),
            np.frombuffer(scores, dtype=np.float32),
            tuple(map(tuple, orjson.loads(topics))),
            created_s,
        )

    def close(self) -> None:
        """Close every thread's connection; the file and its sessions stay for other processes."""
        with self._lock:
            conns, self._open = list(self._open), weakref.WeakSet()
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        holder: _Connection | None = getattr(self._local, "conn", None)
        if holder is not None and not holder.closed:
            return holder.sqlite
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"SqliteSessionStore({str(self.path)!r}) was opened in process {self._pid} and "
                f"used in process {os.getpid()}; open one store per process, after forking"
            )
        holder = _Connection(_connect(self.path))
        with self._lock:
            self._open.add(holder)
        self._local.conn = holder
        return holder.sqlite

    def _sweep(self, conn: sqlite3.Connection) -> None:
        conn.execute(_DELETE_EXPIRED, (self._clock() - self.ttl_s,))
        conn.execute(_DELETE_BEYOND, (self.max_sessions,))


def shared_cursor_key(path: Path) -> bytes:
    """The cursor key every process using the database at ``path`` shares: 32 random bytes,
    stored by the first process that asks (later ones read it back)."""
    with _Connection(_connect(Path(path))) as holder:
        conn = holder.sqlite
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
            (_KEY_NAME, os.urandom(_KEY_BYTES)),
        )
        (key,) = conn.execute("SELECT value FROM meta WHERE name = ?", (_KEY_NAME,)).fetchone()
    if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
        raise ValueError(f"{path}: meta.{_KEY_NAME} is not {_KEY_BYTES} bytes: {key!r}")
    return key


class _Connection:
    """One thread's connection; closed when the thread (and so its thread-local) goes away."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.sqlite = conn
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sqlite.close()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode with the schema in place.

    ``check_same_thread=False`` only so that ``close`` may run on any thread; each connection
    is still used by the one thread that opened it.
    """
    if path.is_dir():
        raise ValueError(f"session store path {str(path)!r} is a directory, not a database file")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = OFF")
        _set_wal(conn)
        for statement in _SCHEMA:
            conn.execute(statement)
    except sqlite3.Error as exc:
        conn.close()
        raise ValueError(f"session store path {str(path)!r} is not usable: {exc}") from exc
    return conn


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL can answer "locked" without calling the busy handler when several
    # processes create the file at once; once the file is in WAL mode this is a no-op.
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL is required")
        return


def _check_positive(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{field} must be a number > 0, got {value!r}")
