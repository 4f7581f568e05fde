"""Engine fixtures: every job and query runs on DuckDB and on Spark (one session per run)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from homefeed.config import DuckDBConfig, SparkConfig
from homefeed.jobs.engines.base import Engine
from homefeed.jobs.engines.duckdb import DuckDBEngine

ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture(scope="session")
def spark_engine() -> Iterator[Engine]:
    """Spark really runs (local[2]); starting it is slow, so the whole session shares it."""
    from homefeed.jobs.engines.spark import SparkEngine

    engine = SparkEngine(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="1g"))
    yield engine
    engine.close()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "spark":
        yield request.getfixturevalue("spark_engine")
        return
    duck = DuckDBEngine(DuckDBConfig(memory_limit="1GB", threads=2))
    yield duck
    duck.close()
