"""``homefeed lake``: what landed in the lake."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from homefeed.cli.common import console, open_lake_store

lake_app = typer.Typer(help="Inspect the lake.", no_args_is_help=True)


@lake_app.command("summary")
def summary() -> None:
    """Tables with their hours, complete hours (_SUCCESS), files, rows and size."""
    print_summary()


def print_summary() -> None:
    from homefeed.lake.summary import summarize

    lake = open_lake_store()
    table = Table(title=f"lake at {lake.uri}")
    for name in ["table", "rows", "files", "MB", "hours", "complete", "first hour", "last hour"]:
        table.add_column(name, no_wrap=True, justify="left" if name == "table" else "right")
    for s in summarize(lake):
        table.add_row(
            s.table,
            f"{s.rows:,}",
            str(s.files),
            f"{s.bytes / 1e6:.1f}",
            str(len(s.hours)),
            str(len(s.complete_hours)),
            s.first_hour,
            s.last_hour,
        )
    console.print(table)


@lake_app.command("ls")
def ls(
    prefix: Annotated[str, typer.Argument(help="Directory prefix, e.g. events/click.")] = "",
) -> None:
    """List files under a prefix."""
    lake = open_lake_store()
    for info in lake.list(prefix):
        console.print(f"{info.size:>12,}  {info.path}", highlight=False)
