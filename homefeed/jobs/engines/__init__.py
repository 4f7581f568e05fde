"""Engines that run the jobs' SQL: DuckDB in process (default) or Spark (transpiled)."""

from __future__ import annotations

from homefeed.config import EngineConfig
from homefeed.jobs.engines.base import Engine, EngineError


def open_engine(config: EngineConfig | None = None, name: str | None = None) -> Engine:
    """The engine called ``name`` (default: ``engine.default`` of the config)."""
    config = config or EngineConfig()  # type: ignore[call-arg]
    chosen = name or config.default
    if chosen == "duckdb":
        from homefeed.jobs.engines.duckdb import DuckDBEngine

        return DuckDBEngine(config.duckdb)
    if chosen == "spark":
        try:
            from homefeed.jobs.engines.spark import SparkEngine
        except ImportError as e:
            raise EngineError(
                "the spark engine needs pyspark: pip install 'homefeed[spark]'"
            ) from e
        return SparkEngine(config.spark)
    raise EngineError(f"engine {chosen!r}: expected 'duckdb' or 'spark'")


__all__ = ["Engine", "EngineError", "open_engine"]
