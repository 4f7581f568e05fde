"""The engine contract on DuckDB and Spark: one SQL text, identical Arrow tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from homefeed.jobs.catalog import register_lake
from homefeed.jobs.engines.base import Engine, EngineError
from homefeed.lake.local import LocalLake
from homefeed.testing.events import valid_event

QUERIES = [
    "SELECT dt, hr, COUNT(*) AS n, COUNT(DISTINCT user_id) AS users FROM click "
    "GROUP BY dt, hr ORDER BY dt, hr",
    "SELECT user_id, pin_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY event_time, pin_id) "
    "AS rank FROM click ORDER BY user_id, rank",
    "SELECT c.user_id, COUNT(*) AS saves_after_click FROM click c JOIN save s "
    "ON c.user_id = s.user_id AND s.event_time >= c.event_time GROUP BY c.user_id ORDER BY 1",
    "SELECT pin_id, AVG(CAST(user_id AS DOUBLE)) AS mean_user, MIN(event_time) AS first "
    "FROM click GROUP BY pin_id ORDER BY pin_id",
    "SELECT COUNT(*) AS n FROM hide",  # an event table with no files yet
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> LocalLake:
    from homefeed.config import LocalLogConfig, PersisterConfig
    from homefeed.events import EventLogger
    from homefeed.log.local import LocalLog
    from homefeed.persister import Persister

    root = tmp_path_factory.mktemp("engine-lake")
    log = LocalLog(LocalLogConfig(path=str(root / "log")))
    with EventLogger(log, partitions=2) as logger:
        for i in range(120):
            when = f"2026-11-21T{10 + i % 3:02d}:{i % 60:02d}:00.000Z"
            logger.log(valid_event("click", user_id=i % 7, pin_id=i % 11, event_time=when))
            if i % 4 == 0:
                logger.log(valid_event("save", user_id=i % 7, pin_id=i % 11, event_time=when))
    lake = LocalLake(root / "lake")
    Persister(log, lake, config=PersisterConfig(late_delay_minutes=0)).run()
    return lake


RESULTS: dict[str, list[pa.Table]] = {}


def test_queries_run_and_partition_columns_are_typed(engine: Engine, lake: LocalLake) -> None:
    tables = {t.name for t in register_lake(engine, lake)}
    assert {"click", "save", "hide", "impression"} <= tables
    results = [engine.query(q) for q in QUERIES]
    first = results[0]
    assert (
        first.schema.field("dt").type == pa.string() and first.schema.field("hr").type == pa.int64()
    )
    assert sum(first.column("n").to_pylist()) == 120
    assert results[-1].column("n").to_pylist() == [0]
    assert sum(b.num_rows for b in engine.batches("SELECT * FROM click", 50)) == 120
    engine.view("busy", "SELECT user_id FROM click GROUP BY user_id HAVING COUNT(*) > 10")
    assert engine.query("SELECT COUNT(*) AS n FROM busy").column("n").to_pylist() == [7]
    RESULTS[engine.name] = results


def test_a_jobs_inputs_only_are_registered(engine: Engine, lake: LocalLake) -> None:
    infos = register_lake(engine, lake, events=["click", "hide", "click"])
    assert [(t.name, t.files > 0) for t in infos] == [("click", True), ("hide", False)]
    assert engine.query("SELECT COUNT(*) AS n FROM click").column("n").to_pylist() == [120]
    assert engine.query("SELECT COUNT(*) AS n FROM hide").column("n").to_pylist() == [0]
    with pytest.raises(EngineError, match="clicks"):
        register_lake(engine, lake, events=["clicks"])


def test_errors_are_engine_errors(engine: Engine, lake: LocalLake) -> None:
    register_lake(engine, lake)
    with pytest.raises(EngineError):
        engine.query("SELECT * FROM no_such_table")
    with pytest.raises(EngineError):
        engine.query("SELEC nonsense")


def test_engines_agree() -> None:
    """Runs after the parametrised test above filled RESULTS for both engines."""
    assert set(RESULTS) == {"duckdb", "spark"}, "both engines must have run"
    for duck, spark in zip(RESULTS["duckdb"], RESULTS["spark"], strict=True):
        assert duck.equals(spark), (duck, spark)
