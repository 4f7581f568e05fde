"""SQL over the lake: clear errors, read-only by default, every query logged."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from homefeed.cli.main import app
from homefeed.config import LocalLogConfig, PersisterConfig
from homefeed.events import EventLogger
from homefeed.jobs.catalog import register_lake
from homefeed.jobs.engines.duckdb import DuckDBEngine
from homefeed.lake.local import LocalLake
from homefeed.log.local import LocalLog
from homefeed.persister import Persister
from homefeed.sql import QUERY_LOG_TOPIC, QueryError, check_statement, run_query
from homefeed.testing.events import valid_event


@pytest.fixture
def lake_dir(tmp_path, monkeypatch):
    """A small lake under tmp_path/homefeed-data (the default paths), cwd set to tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "homefeed-data/log")))
    with EventLogger(log, partitions=2) as logger:
        for i in range(30):
            logger.log(valid_event("click", user_id=i % 3, pin_id=i))
    Persister(log, LocalLake(tmp_path / "homefeed-data/lake"), config=PersisterConfig()).run()
    return tmp_path


def _query_log(tmp_path) -> list[dict]:
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "homefeed-data/log")))
    with log.consumer("check", [QUERY_LOG_TOPIC]) as c:
        return [orjson.loads(r.value) for r in c.poll(1000, 0.3)]


def _engine(tmp_path):
    engine = DuckDBEngine()
    tables = {t.name for t in register_lake(engine, LocalLake(tmp_path / "homefeed-data/lake"))}
    return engine, tables


def test_a_query_runs_and_is_logged_submitted_then_finished(lake_dir):
    engine, tables = _engine(lake_dir)
    log = LocalLog(LocalLogConfig(path=str(lake_dir / "homefeed-data/log")))
    result = run_query(
        engine, "SELECT user_id, COUNT(*) AS n FROM click GROUP BY 1", tables=tables, log=log
    )
    assert sorted(result.table.column("n").to_pylist()) == [10, 10, 10]
    records = _query_log(lake_dir)
    assert [r["kind"] for r in records] == ["submitted", "finished"]
    assert records[1]["status"] == "ok" and records[1]["rows"] == 3
    assert records[0]["query_id"] == records[1]["query_id"] == result.query_id


@pytest.mark.parametrize(
    ("sql", "status", "fragment"),
    [
        ("SELEC * FROM click", "syntax_error", "syntax error"),
        ("SELEC x", "syntax_error", "not a query"),
        ("SELECT * FROM click WHERE", "syntax_error", "syntax error"),
        ("SELECT * FROM clicks", "unknown_table", "unknown table 'clicks'; tables: board_create"),
        ("DELETE FROM click", "forbidden", "DELETE statements are refused"),
        ("CREATE TABLE x AS SELECT 1", "forbidden", "CREATE statements are refused"),
    ],
)
def test_bad_queries_get_clear_errors_and_are_logged_with_their_status(
    lake_dir, sql, status, fragment
):
    engine, tables = _engine(lake_dir)
    log = LocalLog(LocalLogConfig(path=str(lake_dir / "homefeed-data/log")))
    with pytest.raises(QueryError) as err:
        run_query(engine, sql, tables=tables, log=log)
    assert err.value.status == status and fragment in str(err.value)
    finished = [r for r in _query_log(lake_dir) if r["kind"] == "finished"]
    assert finished[-1]["status"] == status and fragment in finished[-1]["error"]


def test_cli_formats_and_tables(lake_dir):
    runner = CliRunner()
    out = runner.invoke(app, ["sql", "SELECT COUNT(*) AS n FROM click", "--format", "csv"])
    assert out.exit_code == 0 and out.output.strip().splitlines() == ['"n"', "30"]
    out = runner.invoke(
        app, ["sql", "SELECT pin_id FROM click ORDER BY pin_id LIMIT 2", "-f", "json"]
    )
    assert [orjson.loads(line) for line in out.output.splitlines()] == [
        {"pin_id": 0},
        {"pin_id": 1},
    ]
    out = runner.invoke(app, ["sql", "SELECT * FROM nope"])
    assert out.exit_code == 1 and "unknown table 'nope'" in out.output
    out = runner.invoke(app, ["sql", "SELECT 1", "-f", "parquet"])
    assert out.exit_code == 2 and "--output" in out.output
    out = runner.invoke(app, ["tables"])
    assert out.exit_code == 0 and "click" in out.output and "event_time" in out.output
    shell = runner.invoke(
        app, ["sql"], input="SELECT COUNT(*) AS n\nFROM click;\nSELECT * FROM x;\n\\q\n"
    )
    assert shell.exit_code == 0 and "30" in shell.output and "unknown table 'x'" in shell.output


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_any_text_is_checked_without_crashing(text):
    try:
        check_statement(text, {"click"})
    except QueryError as e:
        assert e.status in {"syntax_error", "unknown_table", "forbidden"}
