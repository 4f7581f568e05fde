"""Presto-style exploration: one query over the lake's tables, checked, run and logged.

Every query is logged to the ``query_log`` topic twice: ``submitted`` before it runs and
``finished`` after (status, rows, duration, error), so a query whose engine crashed shows as
submitted without finished. Statuses: ok, syntax_error, unknown_table, forbidden, error.
"""

from __future__ import annotations

import getpass
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import sqlglot
from sqlglot import exp

from homefeed.jobs.engines.base import Engine, EngineError
from homefeed.log.base import EventLog, TopicSpec

QUERY_LOG_TOPIC = "query_log"
_READ_ONLY = (exp.Query, exp.Describe, exp.Show)
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Merge,
           exp.Copy, exp.Command, exp.Set, exp.TruncateTable)  # fmt: skip


class QueryError(Exception):
    """A query that cannot run; ``status`` is how the query log records it."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class QueryResult:
    query_id: str
    table: pa.Table
    duration_ms: int


def check_statement(sql: str, tables: set[str], allow_writes: bool = False) -> None:
    """Parse ``sql`` (DuckDB dialect); refuse writes and tables the lake does not have."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.errors.SqlglotError as e:  # ParseError, TokenError (an open quote), ...
        raise QueryError("syntax_error", f"syntax error: {_first_line(e)}") from None
    if len(statements) != 1:
        raise QueryError("syntax_error", f"expected one statement, got {len(statements)}")
    statement = statements[0]
    if isinstance(statement, _WRITES):
        if not allow_writes:
            kind = statement.key.upper()
            raise QueryError("forbidden", f"{kind} statements are refused: the lake is read-only")
    elif not isinstance(statement, _READ_ONLY):
        raise QueryError("syntax_error", f"not a query: {sql.strip()[:80]!r}")
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        name = table.name
        if name and name not in tables and name not in ctes and not table.args.get("db"):
            known = ", ".join(sorted(tables)) or "none yet"
            raise QueryError("unknown_table", f"unknown table {name!r}; tables: {known}")


def run_query(
    engine: Engine,
    sql: str,
    *,
    tables: set[str],
    log: EventLog | None = None,
    allow_writes: bool = False,
) -> QueryResult:
    """Check, run and log one query. Raises ``QueryError`` (already logged) when it fails."""
    query_id = uuid.uuid4().hex
    base = {"query_id": query_id, "engine": engine.name, "user": _user()}
    _log(log, {**base, "kind": "submitted", "sql": sql})
    started = time.monotonic()
    try:
        check_statement(sql, tables, allow_writes)
        table = engine.query(sql)
    except QueryError as e:
        _finished(log, base, started, e.status, error=str(e))
        raise
    except EngineError as e:
        status = _status_of(str(e))
        _finished(log, base, started, status, error=str(e))
        raise QueryError(status, str(e)) from None
    duration_ms = _finished(log, base, started, "ok", rows=table.num_rows)
    return QueryResult(query_id, table, duration_ms)


def _finished(
    log: EventLog | None, base: dict[str, Any], started: float, status: str,
    rows: int = 0, error: str | None = None,
) -> int:  # fmt: skip
    duration_ms = int((time.monotonic() - started) * 1000)
    _log(log, {**base, "kind": "finished", "status": status, "rows": rows,
               "duration_ms": duration_ms, "error": error})  # fmt: skip
    return duration_ms


def _log(log: EventLog | None, record: dict[str, Any]) -> None:
    if log is None:
        return
    log.ensure_topic(TopicSpec(QUERY_LOG_TOPIC, 1))
    record["time_ms"] = int(time.time() * 1000)
    with log.producer() as producer:  # flushed now: a crash mid-query still shows "submitted"
        producer.send(QUERY_LOG_TOPIC, orjson.dumps(record), key=record["query_id"].encode())


def _status_of(message: str) -> str:
    lowered = message.lower()
    if "does not exist" in lowered or "table_or_view_not_found" in lowered:
        return "unknown_table"
    if "parser error" in lowered or "syntax" in lowered or "cannot read the statement" in lowered:
        return "syntax_error"
    return "error"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def _user() -> str:
    try:
        return getpass.getuser()
    except OSError:  # no user name in this environment (containers)
        return "unknown"
