"""The engine interface: run one SQL definition on DuckDB (default) or Spark.

Jobs are written once, in DuckDB's SQL dialect, and never kept as two copies: the Spark engine
transpiles each statement with SQLGlot. The contract both engines honour
(tests/jobs/test_engine_contract.py runs it on each):

* ``register(name, path)`` makes a lake table readable as a view ``name``: the Parquet files
  below ``path`` (a directory of the lake), with ``dt`` and ``hr`` partition columns from
  ``dt=``/``hr=`` directories when present. Registering a name again replaces the view.
* ``view(name, sql)`` defines a temporary view from a query, for multi-step jobs.
* ``query(sql)`` returns the result as an Arrow table (for small results: SQL shells, checks).
* ``batches(sql)`` streams the result as Arrow record batches (for job outputs of any size).
* Types are normalised on the way out: integers int64, floating point float64, strings
  large or not as Arrow gives them, timestamps in UTC, so both engines produce identical
  tables for identical input.
* Errors are raised as ``EngineError`` with the engine's message (syntax errors, unknown
  tables): callers report them, never a raw traceback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import pyarrow as pa

from homefeed.closing import Closing


def normalize(table: pa.Table) -> pa.Table:
    """One set of types out of every engine: int64, float64, string, timestamp[us, UTC].

    Engines differ in widths (Spark's INT vs DuckDB's INTEGER), string layouts and timestamp
    units; comparing their results, or writing them to one table, needs them to agree.
    """
    return table.cast(pa.schema([pa.field(f.name, _normal(f.type)) for f in table.schema]))


def _normal(t: pa.DataType) -> pa.DataType:
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pa.float64()
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_normal(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _normal(f.type)) for f in t])
    return t


class EngineError(Exception):
    """A query failed in the engine; the message is the engine's, plus the statement."""


class Engine(Closing, ABC):
    name: str = "abstract"

    @abstractmethod
    def register(self, name: str, path: str) -> None:
        """Expose the Parquet files below ``path`` (absolute local path or URI) as view ``name``."""

    @abstractmethod
    def view(self, name: str, sql: str) -> None:
        """Define (or replace) temporary view ``name`` as ``sql`` (DuckDB dialect)."""

    @abstractmethod
    def query(self, sql: str) -> pa.Table:
        """Run ``sql`` (DuckDB dialect) and return the whole result."""

    @abstractmethod
    def batches(self, sql: str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """Run ``sql`` (DuckDB dialect) and stream the result."""

    @abstractmethod
    def close(self) -> None: ...
