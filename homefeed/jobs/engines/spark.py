"""``SparkEngine``: the same SQL on Spark (``local[*]`` by default, any master by config).

Jobs are written in DuckDB's dialect; each statement is transpiled with SQLGlot before Spark
sees it, so there is one definition of every job. Results come back through Arrow and are
normalised like DuckDB's, so both engines produce identical tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import sqlglot

from homefeed.config import SparkConfig
from homefeed.jobs.engines.base import Engine, EngineError, normalize

try:
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession
except ImportError as e:  # pragma: no cover - pyspark is in the [spark] extra
    raise ImportError("the spark engine needs pyspark: pip install 'homefeed[spark]'") from e


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, config: SparkConfig | None = None) -> None:
        self.config = config or SparkConfig()  # type: ignore[call-arg]
        builder: Any = SparkSession.builder.master(self.config.master).appName("homefeed")
        settings = {
            "spark.ui.enabled": "false",
            "spark.driver.memory": self.config.driver_memory,
            "spark.sql.shuffle.partitions": str(self.config.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            # dt=2026-11-01 stays the string it is in the path, as in DuckDB.
            "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            **self.config.conf,
        }
        for key, value in settings.items():
            builder = builder.config(key, value)
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")

    def sql(self, duckdb_sql: str) -> str:
        """The statement in Spark's dialect."""
        try:
            return str(sqlglot.transpile(duckdb_sql, read="duckdb", write="spark")[0])
        except sqlglot.errors.ParseError as e:
            raise EngineError(f"spark: cannot read the statement: {e}") from e

    def register(self, name: str, path: str) -> None:
        try:
            frame = self.spark.read.option("basePath", path).parquet(path)
        except PySparkException as e:
            raise EngineError(f"spark: cannot read {path}: {e}") from e
        if "hr" in frame.columns:
            frame = frame.withColumn("hr", frame["hr"].cast("int"))
        frame.createOrReplaceTempView(name)

    def view(self, name: str, sql: str) -> None:
        self._frame(sql).createOrReplaceTempView(name)

    def query(self, sql: str) -> pa.Table:
        try:
            return normalize(self._frame(sql).toArrow())
        except PySparkException as e:
            raise EngineError(f"spark: {e}") from e

    def batches(self, sql: str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        # toArrow collects to the driver: outputs are bounded by the driver's memory here.
        yield from self.query(sql).to_batches(batch_rows)

    def _frame(self, sql: str) -> Any:
        try:
            return self.spark.sql(self.sql(sql))
        except PySparkException as e:
            raise EngineError(f"spark: {e}") from e

    def close(self) -> None:
        self.spark.stop()
