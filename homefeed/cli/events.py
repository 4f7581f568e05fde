"""``homefeed schemas`` and ``homefeed events``: the registry and getting events in."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from homefeed.cli.common import console, fail, opened_log, retention_ms, settings
from homefeed.events.registry import DEAD_LETTER_TOPIC, SchemaError, SchemaRegistry

schemas_app = typer.Typer(help="The event schema registry.", no_args_is_help=True)
events_app = typer.Typer(
    help="Produce events from files and inspect dead letters.", no_args_is_help=True
)

MAX_SHOWN_REJECTIONS = 20


def _registry(root: Path | None = None) -> SchemaRegistry:
    try:
        return SchemaRegistry(root) if root else SchemaRegistry()
    except SchemaError as e:
        fail(str(e))


@schemas_app.command("list")
def schemas_list() -> None:
    """Every event type with its versions and fields."""
    registry = _registry()
    table = Table("event type", "topic", "versions", "fields (required*)")
    for event_type in registry.event_types:
        schema = registry.latest(event_type)
        fields = ", ".join(f"{k}{'*' if k in schema.required else ''}" for k in schema.properties)
        table.add_row(event_type, schema.topic, str(schema.version), fields)
    console.print(table)


@schemas_app.command("check")
def schemas_check(
    against: Annotated[
        Path | None,
        typer.Option(help="Another registry directory (e.g. main's) that this one must follow."),
    ] = None,
) -> None:
    """Refuse incompatible changes: removed or retyped fields, edited published versions."""
    registry = _registry()
    problems = registry.check()
    if against is not None:
        problems += registry.check_against(_registry(against))
    if problems:
        for p in problems:
            console.print(f"[red]incompatible:[/] {p}", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]ok:[/] {len(registry.event_types)} event types are compatible")


@schemas_app.command("lock")
def schemas_lock() -> None:
    """Record every current version as published (after `check` passes)."""
    registry = _registry()
    if problems := registry.check():
        fail("; ".join(problems))
    registry.write_lock()
    console.print(f"locked {sum(len(v) for v in registry.versions.values())} schema versions")


@events_app.command("produce")
def produce(
    file: Annotated[Path, typer.Argument(help="Events, one JSON object per line (JSONL).")],
) -> None:
    """Validate and log every event of FILE; invalid lines go to the dead-letter topic.

    Exits 1 when any line was rejected, after reporting each with its line, field and value.
    """
    from homefeed.events.sdk import EventLogger

    if not file.is_file():
        fail(f"{file}: no such file")
    cfg = settings.config
    with opened_log() as event_log:
        logger = EventLogger(
            event_log,
            config=cfg.sdk,
            source=f"file:{file.name}",
            partitions=cfg.log.partitions,
            retention_ms=retention_ms(),
            on_reject=lambda r: None,
        )
        shown = 0
        with logger, file.open("rb") as f, _progress(file) as advance:
            for number, line in enumerate(f, 1):
                advance(len(line))
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                rejection = logger.log_raw(line)
                if rejection is not None and shown < MAX_SHOWN_REJECTIONS:
                    where = f" field {rejection.field}" if rejection.field else ""
                    line_no = f"[yellow]line {number}[/]"
                    console.print(
                        f"{line_no} rejected ({rejection.reason}){where}: {rejection}",
                        highlight=False,
                    )
                    shown += 1
        rejected = sum(logger.rejected.values())
    if rejected > shown:
        console.print(f"... and {rejected - shown} more rejections")
    console.print(
        f"{logger.accepted} accepted, {rejected} rejected to {DEAD_LETTER_TOPIC}"
        f" on the {cfg.log.backend} log"
    )
    if rejected:
        raise typer.Exit(1)


def _progress(file: Path) -> AbstractContextManager[Callable[[int], None]]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    @contextmanager
    def bar() -> Iterator[Callable[[int], None]]:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"reading {file.name}", total=file.stat().st_size)
            yield lambda n: progress.advance(task, n)

    return bar()


@events_app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option(min=1, help="How many to show, oldest first.")] = 20,
) -> None:
    """Show rejected events with their reason, field and value."""
    with opened_log() as event_log:
        if DEAD_LETTER_TOPIC not in {t.name for t in event_log.topics()}:
            console.print("no dead-letter topic yet: nothing was rejected")
            return
        total = sum(p.end_offset - p.start_offset for p in event_log.partitions(DEAD_LETTER_TOPIC))
        table = Table(
            "reason", "field", "value", "source", "payload", title=f"{total} dead letters"
        )
        with event_log.consumer("homefeed-cli-peek", [DEAD_LETTER_TOPIC]) as consumer:
            shown = 0
            while shown < min(limit, total):
                records = consumer.poll(limit - shown, timeout_s=2.0)
                if not records:
                    break
                for r in records:
                    doc = orjson.loads(r.value)
                    payload = base64.b64decode(doc["payload_b64"])[:60].decode("utf-8", "replace")
                    table.add_row(
                        doc["reason"],
                        doc.get("field") or "",
                        doc.get("value") or "",
                        doc["source"],
                        payload,
                    )
                shown += len(records)
    console.print(table)
