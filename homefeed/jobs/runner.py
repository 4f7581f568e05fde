"""Run one job partition on an engine: check inputs, run the SQL, publish the output atomically.

Output layout, one Parquet file per partition::

    tables/<job>/dt=D/[hr=HH/]part-0000.parquet
    tables/<job>/dt=D/[hr=HH/]_SUCCESS          JSON: run_id, engine, rows, inputs_version
    _jobs/ledger/dt=D/<started_at_ms>-<run_id>.json   one record per run (status ok|failed)

**Atomic replacement.** A partition is exactly one object, so replacing the partition is
replacing one file, which both stores can do atomically. The result is streamed batch by batch
into ``_jobs/tmp/<run_id>/part-0000.parquet`` (outside ``tables/``, so no reader's glob can see
it half written), then moved over the partition's file:

* local lake: ``rename``, which replaces the target atomically (POSIX);
* S3: a server-side CopyObject of the complete temporary object to the final key, then a
  delete of the temporary: S3 replaces an object atomically, so readers see the old object
  until the copy completes and the whole new one after (CopyObject is limited to 5 GB per
  object). A write that fails part-way leaves at most a partial temporary, which never
  reaches the final key.

Readers thus never see half a partition, and a crash leaves the old partition (plus a stray
temporary under ``_jobs/tmp`` that later runs ignore). A job whose output ever needs
several files would need a manifest (``_CURRENT`` naming a version directory) instead.

``_SUCCESS`` is written after the data and records ``inputs_version``: the newest
``updated_at_ms`` among the input hour markers, so a backfill can tell that late data arrived
after a partition was built and rebuild it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from homefeed.config import JobsConfig
from homefeed.jobs.definitions import (
    DAY_MS,
    JobSpec,
    parameters,
    partition_of,
    render,
    required_hours,
)
from homefeed.jobs.engines.base import Engine
from homefeed.lake.base import LakeStore
from homefeed.lake.layout import event_table, hour_label, success_marker

TABLES = "tables"
LEDGER = "_jobs/ledger"
TMP = "_jobs/tmp"
PART = "part-0000.parquet"


class InputsNotReady(Exception):
    """Some input hours are not marked complete yet; ``missing`` lists them."""

    def __init__(self, job: str, partition: str, missing: list[str]) -> None:
        self.missing = missing
        shown = ", ".join(missing[:12]) + (
            f" and {len(missing) - 12} more" if len(missing) > 12 else ""
        )
        super().__init__(f"job {job} {partition}: inputs not ready: {shown}")


@dataclass
class RunRecord:
    job: str
    partition: str
    engine: str
    run_id: str
    started_at: str
    status: str = "running"
    rows_in: int = 0
    rows_out: int = 0
    duration_s: float = 0.0
    error: str | None = None


def table_dir(job: str, partition: str) -> str:
    return f"{TABLES}/{job}/{partition}"


def output_path(spec: JobSpec, start_ms: int) -> str:
    return f"{table_dir(spec.name, partition_of(spec, start_ms))}/{PART}"


def output_marker(spec: JobSpec, start_ms: int) -> str:
    return f"{table_dir(spec.name, partition_of(spec, start_ms))}/_SUCCESS"


# ---- readiness -------------------------------------------------------------------------------


def missing_inputs(lake: LakeStore, spec: JobSpec, start_ms: int, config: JobsConfig) -> list[str]:
    """``events/<type>/dt=D/hr=HH`` for every needed hour without a ``_SUCCESS`` marker."""
    missing = []
    for hour in required_hours(spec, start_ms, config):
        for event_type in spec.events:
            if not lake.exists(success_marker(event_table(event_type), hour)):
                missing.append(f"{event_type}@{hour_label(hour)}")
    return missing


def inputs_version(lake: LakeStore, spec: JobSpec, start_ms: int, config: JobsConfig) -> int:
    """The newest ``updated_at_ms`` of the input hour markers (0 if none records it)."""
    newest = 0
    for hour in required_hours(spec, start_ms, config):
        for event_type in spec.events:
            try:
                marker = orjson.loads(lake.get_bytes(success_marker(event_table(event_type), hour)))
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue
            if isinstance(marker, dict):
                stamps = (marker.get("updated_at_ms"), marker.get("marked_at_ms"))
                newest = max([newest, *(int(s) for s in stamps if s)])
    return newest


def is_done(lake: LakeStore, spec: JobSpec, start_ms: int, config: JobsConfig) -> bool:
    """True if the partition was built and no input hour changed (late data) since."""
    try:
        marker = orjson.loads(lake.get_bytes(output_marker(spec, start_ms)))
    except FileNotFoundError:
        return False
    return int(marker.get("inputs_version", 0)) >= inputs_version(lake, spec, start_ms, config)


# ---- registering inputs ----------------------------------------------------------------------


def lake_location(lake: LakeStore, path: str) -> str:
    """Where an engine reads lake path ``path``: a local path or an ``s3://`` URI."""
    fs, base = lake.arrow_filesystem()
    full = f"{base}/{path}"
    return full if isinstance(fs, pafs.LocalFileSystem) else f"s3://{full}"


def register_previous(engine: Engine, lake: LakeStore, spec: JobSpec, start_ms: int) -> None:
    """Views ``prev_<table>`` over the previous day's partitions (empty on the first day).

    A previous partition may be absent only if the previous day has no input at all (the
    lake's first day); otherwise the job would silently restart a cumulative table from
    nothing, so that raises InputsNotReady naming the partition.
    """
    prev_ms = start_ms - DAY_MS
    prev_day = datetime.fromtimestamp(prev_ms / 1000, tz=UTC)
    for prev in spec.previous:
        path = f"{TABLES}/{prev.table}/dt={prev_day:%Y-%m-%d}"
        if lake.exists(f"{path}/{PART}"):
            # Through view() in both branches: an engine may keep views made by view() and by
            # register() apart (DuckDB: temp vs persistent), and one would shadow the other.
            engine.register(f"{prev.view}_source", lake_location(lake, path))
            engine.view(prev.view, f"SELECT * FROM {prev.view}_source")
        elif _has_any_input(lake, spec, prev_ms):
            raise InputsNotReady(spec.name, f"dt={prev_day + timedelta(days=1):%Y-%m-%d}", [path])
        else:
            engine.view(prev.view, prev.empty_sql)


def _has_any_input(lake: LakeStore, spec: JobSpec, day_ms: int) -> bool:
    hours = range(day_ms, day_ms + DAY_MS, 3_600_000)
    return any(lake.exists(success_marker(event_table(t), h)) for t in spec.events for h in hours)


def register_inputs(engine: Engine, lake: LakeStore, spec: JobSpec, start_ms: int) -> None:
    from homefeed.jobs.catalog import register_lake

    register_lake(engine, lake, events=spec.events)  # job SQL reads its events and previous
    register_previous(engine, lake, spec, start_ms)


def count_input_rows(lake: LakeStore, spec: JobSpec, start_ms: int) -> int:
    """Rows of the partition's own event hour (or day) across the job's event tables.

    From the Parquet footers only, so the ledger's count costs no engine query.
    """
    fs, base = lake.arrow_filesystem()
    partition = partition_of(spec, start_ms)
    rows = 0
    for event_type in spec.events:
        for info in lake.list(f"{event_table(event_type)}/{partition}"):
            if info.path.endswith(".parquet"):
                with fs.open_input_file(f"{base}/{info.path}") as f:
                    rows += pq.ParquetFile(f).metadata.num_rows
    return rows


# ---- writing ---------------------------------------------------------------------------------


def write_output(engine: Engine, lake: LakeStore, sql: str, final_path: str, run_id: str) -> int:
    """Stream the result of ``sql`` into ``final_path`` atomically; returns the rows written."""
    fs, base = lake.arrow_filesystem()
    local = isinstance(fs, pafs.LocalFileSystem)
    tmp_dir = f"{base}/{TMP}/{run_id}"
    target = f"{tmp_dir}/{PART}"
    if local:  # S3 has no directories; creating one would leave a marker object
        fs.create_dir(tmp_dir, recursive=True)
        fs.create_dir(f"{base}/{final_path}".rsplit("/", 1)[0], recursive=True)
    rows = _stream(engine, sql, fs, target)
    # Local: rename, atomic on POSIX. S3: CopyObject of the complete temp object, then delete
    # it; the copy is atomic, so the final key holds the old object or the whole new one.
    fs.move(target, f"{base}/{final_path}")
    if local:
        fs.delete_dir(tmp_dir)
    return rows


def _stream(engine: Engine, sql: str, fs: pafs.FileSystem, target: str) -> int:
    batches: Iterator[pa.RecordBatch] = engine.batches(sql)
    first = next(batches, None)
    schema = first.schema if first is not None else engine.query(_limit0(sql)).schema
    rows = 0
    with (
        fs.open_output_stream(target) as sink,
        pq.ParquetWriter(sink, schema, compression="zstd") as writer,
    ):
        for batch in [first] if first is not None else []:
            writer.write_batch(batch)
            rows += batch.num_rows
        for batch in batches:
            writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)
            rows += batch.num_rows
    return rows


def _limit0(sql: str) -> str:
    return f"SELECT * FROM ({sql}) AS result LIMIT 0"


# ---- running ---------------------------------------------------------------------------------


def run_job(
    engine: Engine,
    lake: LakeStore,
    spec: JobSpec,
    start_ms: int,
    config: JobsConfig,
) -> RunRecord:
    """Run ``spec`` for the partition starting at ``start_ms`` and publish it.

    Raises InputsNotReady (nothing written, nothing in the ledger) if an input hour is not
    marked. Any other failure is recorded in the ledger with status ``failed`` and re-raised.
    """
    partition = partition_of(spec, start_ms)
    missing = missing_inputs(lake, spec, start_ms, config)
    if missing:
        raise InputsNotReady(spec.name, partition, missing)
    record = RunRecord(
        job=spec.name,
        partition=partition,
        engine=engine.name,
        run_id=uuid.uuid4().hex[:12],
        started_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )
    started = time.monotonic()
    version = inputs_version(lake, spec, start_ms, config)
    try:
        register_inputs(engine, lake, spec, start_ms)
        params = parameters(spec, start_ms, config)
        record.rows_in = count_input_rows(lake, spec, start_ms)
        record.rows_out = write_output(
            engine, lake, render(spec, params), output_path(spec, start_ms), record.run_id
        )
        marker = {
            "job": spec.name,
            "run_id": record.run_id,
            "engine": engine.name,
            "rows": record.rows_out,
            "inputs_version": version,
            "updated_at_ms": int(time.time() * 1000),
        }
        lake.put_bytes(output_marker(spec, start_ms), orjson.dumps(marker))
        record.status = "ok"
    except InputsNotReady:
        raise
    except Exception as e:
        record.status = "failed"
        record.error = f"{type(e).__name__}: {e}"[:2000]
        raise
    finally:
        if record.status != "running":
            record.duration_s = round(time.monotonic() - started, 3)
            append_ledger(lake, record)
    return record


# ---- ledger ----------------------------------------------------------------------------------


def append_ledger(lake: LakeStore, record: RunRecord) -> None:
    """One JSON object per run: an atomic put on every store (S3 has no append)."""
    day = record.started_at[:10]
    stamp = int(datetime.fromisoformat(record.started_at).timestamp() * 1000)
    lake.put_bytes(
        f"{LEDGER}/dt={day}/{stamp:015d}-{record.run_id}.json", orjson.dumps(asdict(record))
    )


def read_ledger(lake: LakeStore, limit: int | None = None) -> list[RunRecord]:
    """Runs, oldest first (the last ``limit`` if given)."""
    files = [f.path for f in lake.list(LEDGER) if f.path.endswith(".json")]
    if limit is not None:
        files = files[-limit:]
    return [RunRecord(**orjson.loads(lake.get_bytes(p))) for p in files]
