"""``DuckDBEngine``: the default engine, in process, spilling to disk past its memory limit."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa

from homefeed.config import DuckDBConfig
from homefeed.jobs.engines.base import Engine, EngineError, normalize


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, config: DuckDBConfig | None = None) -> None:
        self.config = config or DuckDBConfig()  # type: ignore[call-arg]
        self.db = duckdb.connect(":memory:")
        self.db.execute(f"SET memory_limit = '{self.config.memory_limit}'")
        self.db.execute("SET TimeZone = 'UTC'")
        # Insertion order is not part of any result's contract; dropping it saves memory.
        self.db.execute("SET preserve_insertion_order = false")
        if self.config.threads:
            self.db.execute(f"SET threads = {int(self.config.threads)}")
        if self.config.temp_directory:
            self.db.execute(f"SET temp_directory = '{self.config.temp_directory}'")
        if spill := self.config.max_temp_directory_size:
            self.db.execute(f"SET max_temp_directory_size = '{spill}'")

    def register(self, name: str, path: str) -> None:
        glob = f"{path.rstrip('/')}/**/*.parquet"
        source = (
            f"read_parquet('{_literal(glob)}', hive_partitioning = true, union_by_name = true, "
            "hive_types_autocast = false)"
        )
        columns = {row[0] for row in self._fetch(f"DESCRIBE SELECT * FROM {source}")}
        # Partition columns: dt stays the 'YYYY-MM-DD' string, hr becomes an integer.
        replace = " REPLACE (CAST(hr AS INTEGER) AS hr)" if "hr" in columns else ""
        # A temp view like view()'s: a temp view would shadow a regular one of the same name.
        self._run(f"CREATE OR REPLACE TEMP VIEW {_ident(name)} AS SELECT *{replace} FROM {source}")

    def view(self, name: str, sql: str) -> None:
        self._run(f"CREATE OR REPLACE TEMP VIEW {_ident(name)} AS {sql}")

    def query(self, sql: str) -> pa.Table:
        try:
            return normalize(self.db.sql(sql).to_arrow_table())
        except duckdb.Error as e:
            raise EngineError(f"duckdb: {e}") from e

    def batches(self, sql: str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        try:
            reader = self.db.sql(sql).to_arrow_reader(batch_rows)
        except duckdb.Error as e:
            raise EngineError(f"duckdb: {e}") from e
        for batch in reader:
            yield normalize(pa.Table.from_batches([batch])).to_batches()[0]

    def _fetch(self, sql: str) -> list[tuple[object, ...]]:
        try:
            return self.db.execute(sql).fetchall()
        except duckdb.Error as e:
            raise EngineError(f"duckdb: {e}") from e

    def _run(self, sql: str) -> None:
        try:
            self.db.execute(sql)
        except duckdb.Error as e:
            raise EngineError(f"duckdb: {e}") from e

    def close(self) -> None:
        self.db.close()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise EngineError(f"invalid table name {name!r}: use letters, digits and '_'")
    return f'"{name}"'


def _literal(text: str) -> str:
    return text.replace("'", "''")
