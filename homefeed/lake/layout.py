"""Where things live in the lake. Every path the pipeline writes is built here.

    events/<event_type>/dt=YYYY-MM-DD/hr=HH/part-<partition>-<start offset>.parquet
    events/<event_type>/dt=YYYY-MM-DD/hr=HH/_SUCCESS
    _persister/<group>/...   the persister's intents and progress

Partitions are by event time in UTC. File names derive from the log partition and the offset
the batch started at, so writing the same batch again replaces its files instead of adding.
"""

from __future__ import annotations

from datetime import UTC, datetime

HOUR_MS = 3_600_000
EVENTS = "events"


def event_table(event_type: str) -> str:
    return f"{EVENTS}/{event_type}"


def hour_dir(table: str, hour_ms: int) -> str:
    t = datetime.fromtimestamp(hour_ms / 1000, tz=UTC)
    return f"{table}/dt={t:%Y-%m-%d}/hr={t:%H}"


def part_file(table: str, hour_ms: int, partition: int, start_offset: int) -> str:
    return f"{hour_dir(table, hour_ms)}/part-{partition:03d}-{start_offset:020d}.parquet"


def success_marker(table: str, hour_ms: int) -> str:
    return f"{hour_dir(table, hour_ms)}/_SUCCESS"


def hour_label(hour_ms: int) -> str:
    return datetime.fromtimestamp(hour_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H")


def parse_hour(label: str) -> int:
    """'2026-11-21T13' (or a full timestamp within the hour) to the hour's start in ms."""
    try:
        t = datetime.strptime(label[:13], "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"hour {label!r} is not of the form YYYY-MM-DDTHH") from None
    return int(t.timestamp() * 1000)


def persister_dir(group: str) -> str:
    return f"_persister/{group}"
