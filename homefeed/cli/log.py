"""``homefeed topics``: offsets, lag and retention of the event log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from homefeed.cli.common import console, opened_log, settings
from homefeed.log.base import TopicSpec

topics_app = typer.Typer(
    help="Topics of the event log: offsets, lag, retention.", invoke_without_command=True
)


@topics_app.callback()
def topics(
    ctx: typer.Context,
    group: Annotated[
        list[str] | None,
        typer.Option(help="Consumer groups to show lag for (default: the persister's)."),
    ] = None,
) -> None:
    """Every topic with partitions, retention, offsets and consumer lag."""
    if ctx.invoked_subcommand is not None:
        return
    groups = group or [settings.config.persister.group]
    with opened_log() as event_log:
        table = Table(
            "topic",
            "partitions",
            "retention",
            "start",
            "end",
            "records",
            *(f"lag {g}" for g in groups),
            title=f"{event_log.name} log",
        )
        for spec in event_log.topics():
            infos = event_log.partitions(spec.name)
            lags: list[int | None] = []
            for g in groups:
                committed = event_log.group_offsets(g, spec.name)
                if not _reads(g, spec.name, committed):
                    lags.append(None)
                    continue
                lags.append(
                    sum(i.end_offset - committed.get(i.partition, i.start_offset) for i in infos)
                )
            table.add_row(
                spec.name,
                str(spec.partitions),
                f"{spec.retention_ms / 3_600_000:g} h",
                str(sum(i.start_offset for i in infos)),
                str(sum(i.end_offset for i in infos)),
                str(sum(i.end_offset - i.start_offset for i in infos)),
                *("—" if lag is None else f"{lag:,}" for lag in lags),
            )
    console.print(table)


def _reads(group: str, topic: str, committed: dict[int, int]) -> bool:
    """Whether ``group`` consumes ``topic``: the persister reads the event topics; for other
    groups only their commits tell."""
    if group == settings.config.persister.group:
        from homefeed.events.registry import SchemaRegistry

        return topic in SchemaRegistry().topics()
    return bool(committed)


@topics_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    partitions: Annotated[int | None, typer.Option(min=1, help="Default: log.partitions.")] = None,
    retention_hours: Annotated[
        float | None, typer.Option(min=0.001, help="Default: log.retention_hours.")
    ] = None,
) -> None:
    """Create a topic (an existing one is left as it is)."""
    cfg = settings.config.log
    spec = TopicSpec(
        name,
        partitions or cfg.partitions,
        int((retention_hours or cfg.retention_hours) * 3_600_000),
    )
    with opened_log() as event_log:
        event_log.ensure_topic(spec)
    console.print(
        f"topic {name}: {spec.partitions} partitions, retention {spec.retention_ms / 3_600_000:g} h"
    )


@topics_app.command("retention")
def retention() -> None:
    """Apply time-based retention now (the local log; Kafka brokers do it themselves)."""
    with opened_log() as event_log:
        dropped = event_log.enforce_retention()
    console.print(f"retention dropped {dropped:,} records")
