"""``homefeed sql`` and ``homefeed tables``: explore the lake, Presto style."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from homefeed.cli.common import console, err_console, fail, open_lake_store, opened_log, settings

if TYPE_CHECKING:
    import pyarrow as pa

    from homefeed.jobs.catalog import TableInfo
    from homefeed.jobs.engines.base import Engine
    from homefeed.log.base import EventLog


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@contextmanager
def _lake_engine(name: str | None) -> Iterator[tuple[Engine, list[TableInfo]]]:
    from homefeed.jobs.catalog import register_lake
    from homefeed.jobs.engines import EngineError, open_engine

    try:
        engine = open_engine(settings.config.engine, name)
        infos = register_lake(engine, open_lake_store())
    except EngineError as e:
        fail(str(e))
    try:
        yield engine, infos
    finally:
        engine.close()


def sql(
    query: Annotated[str | None, typer.Argument(help="A query; none starts a shell.")] = None,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default: config).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows shown in table format.")] = 50,
    allow_writes: Annotated[bool, typer.Option(help="Allow statements that write.")] = False,
) -> None:
    """Query the lake's tables (events by type, job outputs by name); read-only by default.

    Every query is logged to the query_log topic (submitted, then finished with its status).
    """
    if fmt is Format.parquet and output is None:
        fail("--format parquet needs --output FILE")
    with _lake_engine(engine) as (eng, infos), opened_log() as log:
        tables = {i.name for i in infos}
        if query is not None:
            if not _run_one(eng, query, tables, log, allow_writes, fmt, output, limit):
                raise typer.Exit(1)
            return
        _shell(eng, infos, log, allow_writes, fmt, limit)


def _run_one(
    eng: Engine, query: str, tables: set[str], log: EventLog, allow_writes: bool,
    fmt: Format, output: Path | None, limit: int,
) -> bool:  # fmt: skip
    from homefeed.sql import QueryError, run_query

    try:
        result = run_query(eng, query, tables=tables, log=log, allow_writes=allow_writes)
    except QueryError as e:
        err_console.print(f"[red]{e.status}:[/] {e}", highlight=False)
        return False
    _emit(result.table, fmt, output, limit)
    if fmt is Format.table and output is None:
        console.print(f"{result.table.num_rows:,} rows in {result.duration_ms} ms ({eng.name})")
    return True


def _emit(table: pa.Table, fmt: Format, output: Path | None, limit: int) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt is Format.parquet:
        assert output is not None
        pq.write_table(table, output)
        return
    if fmt is Format.csv:
        target = output.open("wb") if output else sys.stdout.buffer
        pacsv.write_csv(table, target)
        if output:
            target.close()
        return
    if fmt is Format.json:
        import orjson

        lines = b"".join(orjson.dumps(row, default=str) + b"\n" for row in table.to_pylist())
        (output.write_bytes(lines) if output else sys.stdout.buffer.write(lines))
        return
    console.print(_rich_table(table, limit))


def _rich_table(table: pa.Table, limit: int) -> Table:
    shown = Table(*table.column_names)
    for row in table.slice(0, limit).to_pylist():
        shown.add_row(*("NULL" if v is None else str(v) for v in row.values()))
    if table.num_rows > limit:
        shown.caption = f"first {limit} of {table.num_rows:,} rows"
    return shown


def _shell(
    eng: Engine, infos: list[TableInfo], log: EventLog, allow_writes: bool, fmt: Format,
    limit: int,
) -> None:  # fmt: skip
    tables = {i.name for i in infos}
    console.print(f"homefeed sql on {eng.name}: end statements with ';', \\tables, \\q to quit")
    buffer: list[str] = []
    while True:
        try:
            line = input("homefeed> " if not buffer else "      ..> ")
        except EOFError:
            return
        stripped = line.strip()
        if not buffer and stripped in ("\\q", "quit", "exit"):
            return
        if not buffer and stripped == "\\tables":
            _print_tables(eng, infos)
            continue
        buffer.append(line)
        if stripped.endswith(";"):
            statement = "\n".join(buffer).strip().rstrip(";")
            buffer = []
            _run_one(eng, statement, tables, log, allow_writes, fmt, None, limit)


def tables(
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default: config).")] = None,
) -> None:
    """Every table in the lake with its files and columns."""
    with _lake_engine(engine) as (eng, infos):
        _print_tables(eng, infos)


def _print_tables(eng: Engine, infos: list[TableInfo]) -> None:
    shown = Table("table", "path", "files", "columns", title="lake tables")
    for info in infos:
        schema = eng.query(f'SELECT * FROM "{info.name}" LIMIT 0').schema
        columns = ", ".join(f"{f.name} {f.type}" for f in schema)
        shown.add_row(info.name, info.path, str(info.files), columns)
    console.print(shown)
