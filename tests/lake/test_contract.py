"""The LakeStore contract (homefeed/lake/base.py), run on every store, plus per-store checks."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.config import LakeConfig, S3Config
from homefeed.lake import FileInfo, LakeStore, open_lake
from homefeed.lake.base import TMP_PREFIX
from homefeed.lake.local import LocalLake
from homefeed.lake.s3 import S3Lake
from homefeed.testing.s3 import MotoS3Server

HOUR = "events/click/dt=2026-11-21/hr=13"


def _paths(lake: LakeStore, prefix: str = "") -> list[str]:
    return [f.path for f in lake.list(prefix)]


# --- put / get / exists -------------------------------------------------------------------


def test_put_then_get_returns_the_bytes(lake: LakeStore) -> None:
    lake.put_bytes(f"{HOUR}/_SUCCESS", b'{"rows": 3}')
    lake.put_bytes("empty", b"")
    assert lake.get_bytes(f"{HOUR}/_SUCCESS") == b'{"rows": 3}'
    assert lake.get_bytes("empty") == b""


def test_overwrite_replaces_the_whole_file(lake: LakeStore) -> None:
    lake.put_bytes("state/progress.json", b"x" * 1000)
    lake.put_bytes("state/progress.json", b"short")
    assert lake.get_bytes("state/progress.json") == b"short"
    assert lake.list("state") == [FileInfo("state/progress.json", 5)]


def test_exists_is_true_for_files_only(lake: LakeStore) -> None:
    lake.put_bytes("a/b/c.bin", b"1")
    assert lake.exists("a/b/c.bin")
    assert not lake.exists("a/b")  # a directory is not a file
    assert not lake.exists("a/b/missing.bin")
    assert not lake.exists("nowhere/at/all")


def test_get_of_a_missing_path_names_the_full_location(lake: LakeStore) -> None:
    lake.put_bytes("a/present", b"1")
    for missing in ("a/missing", "a", "no/such/dir/file"):
        with pytest.raises(FileNotFoundError) as err:
            lake.get_bytes(missing)
        assert lake.location(missing) in str(err.value)
        assert lake.uri in str(err.value)


def test_uri_is_the_full_root(lake: LakeStore, tmp_path: Path) -> None:
    if isinstance(lake, LocalLake):
        assert lake.uri == str(tmp_path / "lake")
    else:
        assert lake.uri.startswith("s3://homefeed-lake-") and "/tests/" in lake.uri
    assert lake.location("a/b") == lake.uri + "/a/b"
    assert lake.uri in repr(lake)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/abs",
        "a//b",
        "a/",
        "a/../b",
        "./a",
        "..",
        ".tmp-x",
        "a/.tmp-1/b",
        "a\\b",
        "a\nb",
        "a\x00b",
        "x" * 256,
        "\ud800",
    ],
)
def test_invalid_paths_are_rejected_before_any_io(lake: LakeStore, bad: str) -> None:
    for call in (
        lambda: lake.put_bytes(bad, b"1"),
        lambda: lake.get_bytes(bad),
        lambda: lake.exists(bad),
        lambda: lake.delete(bad),
    ):
        with pytest.raises(ValueError):
            call()
    assert lake.list() == []


# --- list ------------------------------------------------------------------------------------


def test_list_is_recursive_sorted_and_files_only(lake: LakeStore) -> None:
    names = ["z.json", "events/b/x", "events/a/dt=1/hr=02/p", "events/a/dt=1/hr=01/p", "a-b"]
    for i, name in enumerate(names):
        lake.put_bytes(name, b"x" * i)
    assert lake.list() == sorted(
        (FileInfo(n, i) for i, n in enumerate(names)), key=lambda f: f.path
    )
    assert _paths(lake, "events/a") == ["events/a/dt=1/hr=01/p", "events/a/dt=1/hr=02/p"]


def test_list_prefix_is_a_directory_prefix(lake: LakeStore) -> None:
    for name in ("a/b/x", "a/b/c/y", "a/bc/x", "a/b-x/z", "a/b.txt"):
        lake.put_bytes(name, b"1")
    assert _paths(lake, "a/b") == ["a/b/c/y", "a/b/x"]
    assert _paths(lake, "a/b/") == ["a/b/c/y", "a/b/x"]
    assert _paths(lake, "a/b/c") == ["a/b/c/y"]
    assert _paths(lake, "a/b/x") == []  # a file is not a directory
    assert len(lake.list("a")) == 5


def test_list_of_a_missing_prefix_is_empty(lake: LakeStore) -> None:
    assert lake.list() == []
    assert lake.list("events/never") == []
    lake.put_bytes("events/x/1", b"1")
    assert lake.list("events/never") == []


# --- delete ----------------------------------------------------------------------------------


def test_delete_removes_one_file_and_missing_is_fine(lake: LakeStore) -> None:
    lake.put_bytes("a/b/1", b"1")
    lake.put_bytes("a/b/2", b"2")
    lake.delete("a/b/1")
    lake.delete("a/b/1")
    lake.delete("never/was")
    assert _paths(lake) == ["a/b/2"]
    assert not lake.exists("a/b/1")
    with pytest.raises(FileNotFoundError):
        lake.get_bytes("a/b/1")


def test_deleting_the_last_file_leaves_an_empty_listing(lake: LakeStore) -> None:
    # On S3, pyarrow keeps the parent "directory" alive with an empty "a/b/" marker object.
    lake.put_bytes("a/b/only", b"1")
    lake.delete("a/b/only")
    assert lake.list() == []
    assert lake.list("a/b") == []
    assert not lake.exists("a/b")


def test_delete_prefix_removes_the_directory_only(lake: LakeStore) -> None:
    for name in ("a/b/x", "a/b/c/y", "a/bc/x", "a/b.txt", "other"):
        lake.put_bytes(name, b"1")
    assert lake.delete_prefix("a/b") == 2
    assert _paths(lake) == ["a/b.txt", "a/bc/x", "other"]
    assert lake.delete_prefix("a/b") == 0
    assert lake.delete_prefix("missing/prefix") == 0
    lake.put_bytes("a/b/again", b"2")  # the directory can be used again
    assert lake.get_bytes("a/b/again") == b"2"


def test_delete_prefix_of_everything(lake: LakeStore) -> None:
    for name in ("a/b/x", "c", "d/e/f/g"):
        lake.put_bytes(name, b"1")
    lake.delete("d/e/f/g")  # leaves a directory marker on S3
    assert lake.delete_prefix("") == 2
    assert lake.list() == []
    lake.put_bytes("c", b"2")  # the root still works
    assert _paths(lake) == ["c"]


# --- Parquet -----------------------------------------------------------------------------------


def _table(start: int, rows: int) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(range(start, start + rows), pa.int64()),
            "pin_id": pa.array([f"pin-{i}" for i in range(start, start + rows)], pa.string()),
            "_offset": pa.array(range(rows), pa.int64()),
        }
    )


def test_parquet_round_trip_is_exact_and_zstd_by_default(lake: LakeStore) -> None:
    table = _table(0, 1000)
    path = f"{HOUR}/part-002-00000000000000012345.parquet"
    written = lake.write_parquet(path, table)
    assert lake.read_parquet(path).equals(table)
    assert lake.list(HOUR) == [FileInfo(path, written)]
    meta = pq.ParquetFile(pa.BufferReader(lake.get_bytes(path))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_parquet_options_pass_through_and_overwrite_replaces(lake: LakeStore) -> None:
    lake.write_parquet("t/p.parquet", _table(0, 500))
    lake.write_parquet("t/p.parquet", _table(7, 3), compression="snappy")
    back = lake.read_parquet("t/p.parquet")
    assert back.equals(_table(7, 3))
    meta = pq.ParquetFile(pa.BufferReader(lake.get_bytes("t/p.parquet"))).metadata
    assert meta.row_group(0).column(0).compression == "SNAPPY"


def test_read_parquet_of_a_missing_path_raises_file_not_found(lake: LakeStore) -> None:
    with pytest.raises(FileNotFoundError):
        lake.read_parquet("events/none.parquet")


def test_arrow_filesystem_reads_the_lake_as_a_hive_dataset(lake: LakeStore) -> None:
    lake.write_parquet(
        "events/x/dt=2026-11-21/hr=13/part-000-00000000000000000000.parquet", _table(0, 10)
    )
    lake.write_parquet(
        "events/x/dt=2026-11-21/hr=14/part-001-00000000000000000100.parquet", _table(10, 5)
    )
    lake.put_bytes("events/x/dt=2026-11-21/hr=13/_SUCCESS", b"{}")  # skipped: starts with '_'
    lake.write_parquet("events/y/dt=2026-11-21/hr=13/part-000.parquet", _table(99, 1))
    fs, base = lake.arrow_filesystem()
    assert not base.endswith("/")
    dataset = ds.dataset(base + "/events/x", filesystem=fs, format="parquet", partitioning="hive")
    table = dataset.to_table().sort_by("user_id")
    assert table.column("user_id").to_pylist() == list(range(15))
    assert table.column("hr").to_pylist() == [13] * 10 + [14] * 5
    # DuckDB scans the same dataset object, whatever the store.
    hours = duckdb.sql("select hr, count(*) from dataset group by hr order by hr").fetchall()
    assert hours == [(13, 10), (14, 5)]


# --- local store: atomicity under crashes --------------------------------------------------------

_CRASH_BEFORE_RENAME = textwrap.dedent("""
    import os, signal, sys
    from homefeed.lake.local import LocalLake

    def die(src, dst):  # the crash point: temp file written and fsynced, rename not yet done
        os.kill(os.getpid(), signal.SIGKILL)

    lake = LocalLake(sys.argv[1])
    os.replace = die
    lake.put_bytes(sys.argv[2], b"new" * 1000)
""")


@pytest.mark.parametrize("existing", [None, b"old content"])
def test_local_crash_before_rename_leaves_the_previous_state(
    tmp_path: Path, existing: bytes | None
) -> None:
    lake = LocalLake(tmp_path / "lake")
    path = "events/click/dt=2026-11-21/hr=13/part-000-00000000000000000000.parquet"
    if existing is not None:
        lake.put_bytes(path, existing)
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_BEFORE_RENAME, str(lake.root), path],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    directory = lake.root / path.rsplit("/", 1)[0]
    leftovers = [p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX)]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 3000  # the crash was real
    if existing is None:
        assert not (lake.root / path).exists()
        assert lake.list() == []
        assert not lake.exists(path)
    else:
        assert lake.get_bytes(path) == existing
        assert lake.list() == [FileInfo(path, len(existing))]
    fs, base = lake.arrow_filesystem()  # datasets skip the leftover too ('.' prefix)
    dataset = ds.dataset(base, filesystem=fs, schema=pa.schema([]))  # schema: no file reads
    assert dataset.files == ([] if existing is None else [f"{base}/{path}"])
    lake.put_bytes(path, b"retried")  # a retry replaces; delete_prefix sweeps the leftover
    assert lake.list() == [FileInfo(path, 7)]
    assert lake.delete_prefix("events") == 1
    assert list(lake.root.iterdir()) == []


_WRITE_FOREVER = textwrap.dedent("""
    import sys
    from homefeed.lake.local import LocalLake

    lake = LocalLake(sys.argv[1])
    size = int(sys.argv[2])
    i = 0
    while True:
        lake.put_bytes("big/blob.bin", bytes([i % 256]) * size)
        i += 1
""")


def test_local_writer_killed_at_random_never_leaves_a_partial_file(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    size = 16 << 20
    rng = random.Random(7)
    blob = lake.root / "big" / "blob.bin"
    for _ in range(4):
        before = blob.stat().st_ino if blob.exists() else None
        proc = subprocess.Popen([sys.executable, "-c", _WRITE_FOREVER, str(lake.root), str(size)])
        try:
            deadline = time.monotonic() + 30
            # Kill only once this writer has replaced the file: it is then looping on writes.
            while not blob.exists() or blob.stat().st_ino == before:
                assert proc.poll() is None and time.monotonic() < deadline, "writer never wrote"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            proc.kill()
            proc.wait()
        data = lake.get_bytes("big/blob.bin")
        assert len(data) == size and data == data[:1] * size  # one complete write, never torn
        assert lake.list() == [FileInfo("big/blob.bin", size)]
    # Most of a write is spent filling the temp file, so kills land there: proof they were real.
    assert any(p.name.startswith(TMP_PREFIX) for p in blob.parent.iterdir())


def test_local_write_failing_midway_removes_its_temp_file(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    lake.put_bytes("a/keep", b"kept")
    with pytest.raises(TypeError):
        lake.put_bytes("a/b", "not bytes")  # type: ignore[arg-type]
    assert os.listdir(lake.root / "a") == ["keep"]


def test_local_relative_root_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lake = LocalLake("rel/lake")
    lake.put_bytes("x", b"1")
    assert lake.uri == str(tmp_path / "rel" / "lake")
    assert (tmp_path / "rel/lake/x").read_bytes() == b"1"


# --- local store: any valid path round-trips (property) -----------------------------------------

_SEGMENT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not s.startswith(TMP_PREFIX))
_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join)


def _collides(path: str, taken: dict[str, bytes]) -> bool:
    """A path that is a directory of another (or the reverse): the contract forbids it."""
    return any(path.startswith(t + "/") or t.startswith(path + "/") for t in taken)


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.tuples(_PATH, st.binary(max_size=64)), min_size=1, max_size=8))
def test_local_any_valid_path_round_trips(entries: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        lake = LocalLake(root)
        expected: dict[str, bytes] = {}
        for path, data in entries:
            if not _collides(path, expected):
                lake.put_bytes(path, data)
                expected[path] = data
        assert lake.list() == [FileInfo(p, len(expected[p])) for p in sorted(expected)]
        for path, data in expected.items():
            assert lake.exists(path)
            assert lake.get_bytes(path) == data
            top = path.split("/", 1)[0]
            under = sorted(p for p in expected if p.startswith(top + "/"))
            assert _paths(lake, top) == under


# --- S3 store specifics ------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_object_above_the_multipart_threshold_round_trips(
    moto_s3: MotoS3Server, s3_bucket: str
) -> None:
    lake = S3Lake(s3_bucket, f"big/{uuid.uuid4().hex[:8]}", moto_s3.s3_config())
    data = random.Random(1).randbytes(11 << 20)  # > 10 MiB: multipart upload in pyarrow
    lake.put_bytes("blob.bin", data)
    assert lake.get_bytes("blob.bin") == data
    assert lake.list() == [FileInfo("blob.bin", len(data))]


@pytest.mark.s3
def test_s3_lake_at_the_bucket_root(moto_s3: MotoS3Server) -> None:
    bucket = f"homefeed-root-{uuid.uuid4().hex[:8]}"
    lake = S3Lake(bucket, "", moto_s3.s3_config())
    with pytest.raises(OSError, match=bucket):
        lake.put_bytes("x", b"1")  # buckets are not made implicitly
    lake.create_bucket()
    lake.create_bucket()  # idempotent
    lake.put_bytes("a/b", b"1")
    lake.put_bytes("c", b"2")
    assert lake.uri == f"s3://{bucket}"
    assert lake.arrow_filesystem()[1] == bucket
    assert lake.delete_prefix("") == 2
    assert lake.list() == []
    lake.put_bytes("c", b"3")  # the bucket survived
    assert lake.get_bytes("c") == b"3"


@pytest.mark.s3
def test_s3_paths_ending_in_gz_are_stored_verbatim(moto_s3: MotoS3Server, s3_bucket: str) -> None:
    lake = S3Lake(s3_bucket, f"gz/{uuid.uuid4().hex[:8]}", moto_s3.s3_config())
    lake.put_bytes("a/file.gz", b"plain")  # pyarrow would gzip this with compression="detect"
    fs, base = lake.arrow_filesystem()
    with fs.open_input_stream(f"{base}/a/file.gz", compression=None) as f:
        assert f.read() == b"plain"


# --- open_lake and configuration ---------------------------------------------------------------


def test_open_lake_picks_the_store_by_uri(tmp_path: Path) -> None:
    local = open_lake(LakeConfig(uri=str(tmp_path / "l1")))
    assert isinstance(local, LocalLake) and local.uri == str(tmp_path / "l1")
    file_uri = open_lake(LakeConfig(uri=f"file://{tmp_path}/with%20space"))
    assert isinstance(file_uri, LocalLake) and file_uri.uri == f"{tmp_path}/with space"
    s3 = open_lake(
        LakeConfig(
            uri="s3://my-bucket/some/prefix/", s3=S3Config(endpoint_url="http://127.0.0.1:1")
        )
    )
    assert isinstance(s3, S3Lake) and s3.uri == "s3://my-bucket/some/prefix"
    assert s3.arrow_filesystem()[1] == "my-bucket/some/prefix"
    bare = open_lake(LakeConfig(uri="s3://my-bucket"))
    assert bare.uri == "s3://my-bucket"


@pytest.mark.parametrize(
    "uri", ["gs://b/p", "hdfs://nn/lake", "s3a://b/p", "s3://", "", "file://otherhost/x"]
)
def test_open_lake_rejects_unknown_uris_naming_the_key(uri: str) -> None:
    with pytest.raises(ValueError, match=r"lake\.uri") as err:
        open_lake(LakeConfig(uri=uri))
    if uri:
        assert repr(uri) in str(err.value)


@pytest.mark.parametrize(
    "s3",
    [
        S3Config(endpoint_url="127.0.0.1:9000"),
        S3Config(endpoint_url="ftp://h"),
        S3Config(endpoint_url="http://h:1/path"),
        S3Config(access_key_id="only-the-id"),
    ],
)
def test_bad_s3_settings_fail_at_open(s3: S3Config) -> None:
    with pytest.raises(ValueError, match=r"lake\.s3"):
        open_lake(LakeConfig(uri="s3://bucket/p", s3=s3))
