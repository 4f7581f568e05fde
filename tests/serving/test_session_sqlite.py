"""SqliteSessionStore: the SessionStore contract in a file shared by processes and threads."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest

from homefeed.serving.api.session import Cursor, CursorCodec, FeedSession
from homefeed.serving.api.session_sqlite import SqliteSessionStore, shared_cursor_key


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _feed(seed: int, n: int = 200) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "user_id": seed,
        "model_version": f"v{seed:04d}",
        "pins": rng.integers(0, 2**62, n, dtype=np.int64),
        "sources": tuple(rng.choice(["following", "pixie", "trending"], n).tolist()),
        "scores": rng.random(n, dtype=np.float32),
        "topics": tuple(tuple(f"t{t}" for t in range(i % 3)) for i in range(n)),
    }


def _assert_same(got: FeedSession | None, feed: dict, session_id: bytes) -> None:
    assert got is not None
    assert got.session_id == session_id
    assert (got.user_id, got.model_version) == (feed["user_id"], feed["model_version"])
    assert got.pins.dtype == np.int64 and np.array_equal(got.pins, feed["pins"])
    assert got.scores.dtype == np.float32 and np.array_equal(got.scores, feed["scores"])
    assert got.sources == feed["sources"]
    assert got.topics == feed["topics"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    with SqliteSessionStore(tmp_path / "sessions.db", 60.0, 1000, clock) as store:
        yield store


def test_round_trip_keeps_arrays_sources_and_topics(store, clock):
    feed = _feed(1)
    created = store.create(**feed)
    assert created.created_s == clock.now
    _assert_same(store.get(created.session_id), feed, created.session_id)
    assert len(store) == 1


def test_empty_feed_round_trips(store):
    feed = _feed(2, n=0)
    created = store.create(**feed)
    got = store.get(created.session_id)
    _assert_same(got, feed, created.session_id)
    assert len(got) == 0


def test_unknown_session_is_none(store):
    store.create(**_feed(3))
    assert store.get(b"\x00" * 16) is None
    assert store.get(b"short") is None


def test_sessions_expire_after_ttl(store, clock):
    first = store.create(**_feed(4))
    clock.now += 30
    second = store.create(**_feed(5))
    clock.now += 29.9
    assert store.get(first.session_id) is not None
    clock.now += 0.1  # first is exactly ttl_s old
    assert store.get(first.session_id) is None
    assert store.get(second.session_id) is not None
    assert len(store) == 1
    clock.now += 30
    assert store.get(second.session_id) is None
    assert len(store) == 0


def test_sweep_deletes_expired_rows(tmp_path, clock):
    with SqliteSessionStore(tmp_path / "s.db", 10.0, 5, clock) as store:
        old = [store.create(**_feed(i, n=3)) for i in range(4)]
        clock.now += 10
        store.create(**_feed(9, n=3))  # the 5th create sweeps; the first four have expired
        clock.now -= 10  # rewinding the clock would revive them had they been kept
        assert all(store.get(s.session_id) is None for s in old)
        assert len(store) == 1


def test_max_sessions_keeps_the_newest(tmp_path, clock):
    with SqliteSessionStore(tmp_path / "s.db", 60.0, 10, clock) as store:
        sessions = []
        for i in range(35):
            sessions.append(store.create(**_feed(i, n=2)))
            clock.now += 0.01
            # sweeps every 10 creates: never more than max_sessions + 9 rows
            assert len(store) <= 19
        assert len(store) == 15  # swept to 10 at the 30th create, then 5 more
        alive = [s for s in sessions if store.get(s.session_id) is not None]
        assert [s.session_id for s in alive] == [s.session_id for s in sessions[20:]]


def test_threads_share_the_store(store):
    feeds = [_feed(i, n=20) for i in range(8)]
    ids: list[bytes | None] = [None] * len(feeds)

    def work(i: int) -> None:
        created = store.create(**feeds[i])
        ids[i] = created.session_id
        assert store.get(created.session_id) is not None

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for feed, session_id in zip(feeds, ids, strict=True):
        assert session_id is not None
        _assert_same(store.get(session_id), feed, session_id)


def test_second_store_on_the_same_file_sees_sessions(tmp_path):
    path = tmp_path / "s.db"
    with SqliteSessionStore(path, 60.0, 100) as a, SqliteSessionStore(path, 60.0, 100) as b:
        feed = _feed(7)
        created = a.create(**feed)
        _assert_same(b.get(created.session_id), feed, created.session_id)


def test_cursor_key_is_shared_and_stable(tmp_path):
    path = tmp_path / "s.db"
    key = shared_cursor_key(path)
    assert len(key) == 32
    assert shared_cursor_key(path) == key
    assert shared_cursor_key(tmp_path / "other.db") != key


def test_missing_directory_is_created(tmp_path):
    path = tmp_path / "a" / "b" / "s.db"
    with SqliteSessionStore(path, 60.0, 10) as store:
        assert store.get(store.create(**_feed(8)).session_id) is not None
    assert path.is_file()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": -1.5}, "ttl_s"),
        ({"ttl_s": float("nan")}, "ttl_s"),
        ({"max_sessions": 0}, "max_sessions"),
        ({"max_sessions": 2.5}, "max_sessions"),
    ],
)
def test_bad_arguments_name_field_and_value(tmp_path, kwargs, field):
    args = {"ttl_s": 60.0, "max_sessions": 10, **kwargs}
    with pytest.raises(ValueError, match=field) as info:
        SqliteSessionStore(tmp_path / "s.db", **args)
    assert repr(kwargs[field]) in str(info.value)


def test_directory_as_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        SqliteSessionStore(tmp_path, 60.0, 10)


def test_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(ValueError, match="not usable"):
        SqliteSessionStore(path, 60.0, 10)


def _child(path: str, worker: int, shared_id: bytes, out) -> None:
    """In a spawned process: read the parent's session, create some, issue a cursor."""
    try:
        with SqliteSessionStore(Path(path), 60.0, 1000) as store:
            seen = store.get(shared_id)
            created = [store.create(**_feed(100 + worker * 10 + i)) for i in range(5)]
            key = shared_cursor_key(Path(path))
            cursor = CursorCodec(key).encode(Cursor(created[-1].session_id, 40 + worker))
            saw_parent = seen is not None and seen.user_id == 99
            out.put((worker, saw_parent, created[-1].session_id, cursor))
    except BaseException as exc:  # report it, or the parent would wait out its timeout
        out.put((worker, repr(exc), b"", ""))
        raise


def test_processes_share_sessions_and_cursor_key(tmp_path):
    path = tmp_path / "s.db"
    feed = _feed(99)
    with SqliteSessionStore(path, 60.0, 1000) as store:
        shared = store.create(**feed)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_child, args=(str(path), w, shared.session_id, out)) for w in (0, 1)
        ]
        for proc in procs:
            proc.start()
        results = sorted(out.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
        codec = CursorCodec(shared_cursor_key(path))
        for worker, saw_parent, session_id, text in results:
            assert saw_parent is True, saw_parent
            assert codec.decode(text) == Cursor(session_id, 40 + worker)
            _assert_same(store.get(session_id), _feed(100 + worker * 10 + 4), session_id)
        assert len(store) == 11
        with pytest.raises(ValueError, match="checksum"):
            CursorCodec().decode(results[0][3])  # a per-process key would not read it
