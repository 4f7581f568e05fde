"""Every lake table as a view of an engine: event tables by type, job outputs by name.

``events/<type>/...`` becomes view ``<type>`` (``click``, ``impression``, ...) and
``tables/<name>/...`` becomes view ``<name>``. An event table with no files yet is registered
empty with its schema, so a query over a young lake works instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from homefeed.events.registry import SchemaRegistry
from homefeed.jobs.engines.base import Engine, EngineError
from homefeed.lake.base import LakeStore
from homefeed.lake.layout import EVENTS, event_table
from homefeed.persister.batch import lake_schema

TABLES = "tables"


@dataclass(frozen=True)
class TableInfo:
    name: str
    path: str  # relative to the lake root
    files: int


def register_lake(
    engine: Engine, lake: LakeStore, events: Iterable[str] | None = None
) -> list[TableInfo]:
    """Register every table of ``lake`` in ``engine``; returns what was registered.

    ``events``: only these event tables, and no job outputs (a job's inputs). Each table
    costs the engine a scan of its file names, ~60 ms per table on a 13,000-file lake, and
    the demo runs 47 jobs.
    """
    fs, base = lake.arrow_filesystem()
    if not isinstance(fs, pa.fs.LocalFileSystem):
        # DuckDB reads S3 through its httpfs extension and Spark through hadoop-aws jars; both
        # are downloaded at run time, which this project's machines cannot do.
        raise EngineError(
            f"{engine.name} engine: the lake {lake.uri} is not a local path; SQL and jobs over "
            "an S3 lake need DuckDB's httpfs extension or Spark's hadoop-aws jars installed"
        )
    registry = SchemaRegistry()
    wanted = registry.event_types if events is None else sorted(set(events))
    unknown = sorted(set(wanted) - set(registry.event_types))
    if unknown:
        raise EngineError(f"unknown event tables {unknown}; known: {registry.event_types}")
    prefixes = [""] if events is None else [event_table(t) for t in wanted]
    files = [f.path for p in prefixes for f in lake.list(p) if f.path.endswith(".parquet")]
    infos = []
    for event_type in wanted:
        path = event_table(event_type)
        count = sum(1 for f in files if f.startswith(path + "/"))
        if count:
            engine.register(event_type, f"{base}/{path}")
        else:
            engine.view(
                event_type, empty_select(lake_schema(registry.latest(event_type)), hourly=True)
            )
        infos.append(TableInfo(event_type, path, count))
    outputs = sorted({f.split("/")[1] for f in files if f.startswith(TABLES + "/")})
    for name in outputs:
        path = f"{TABLES}/{name}"
        engine.register(name, f"{base}/{path}")
        infos.append(TableInfo(name, path, sum(1 for f in files if f.startswith(path + "/"))))
    return infos


_SQL_TYPES = {
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.string(): "VARCHAR",
}


def sql_type(arrow: pa.DataType) -> str:
    if arrow in _SQL_TYPES:
        return _SQL_TYPES[arrow]
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMPTZ" if arrow.tz else "TIMESTAMP"
    if pa.types.is_list(arrow):
        return f"{sql_type(arrow.value_type)}[]"
    if pa.types.is_struct(arrow):
        fields = ", ".join(f"{f.name} {sql_type(f.type)}" for f in arrow)
        return f"STRUCT({fields})"
    raise ValueError(f"no SQL type for {arrow}")


def empty_select(schema: pa.Schema, hourly: bool) -> str:
    """A query with ``schema``'s columns (plus dt, and hr if hourly) and no rows."""
    columns = [f"CAST(NULL AS {sql_type(f.type)}) AS {f.name}" for f in schema]
    columns.append("CAST(NULL AS VARCHAR) AS dt")
    if hourly:
        columns.append("CAST(NULL AS INTEGER) AS hr")
    return f"SELECT {', '.join(columns)} WHERE false"


__all__ = ["EVENTS", "TABLES", "TableInfo", "empty_select", "register_lake"]
