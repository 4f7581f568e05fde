"""Turn one batch of log records (one partition, contiguous offsets) into hourly Arrow tables.

Every row keeps where it came from (``_partition``, ``_offset``, ``_log_time``), so the lake
can be checked against the log: exactly once means each (topic, partition, offset) once.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from homefeed.events.registry import EventSchema
from homefeed.events.validate import EventValidator, Rejection
from homefeed.lake.layout import HOUR_MS
from homefeed.log.base import Record

SOURCE_COLUMNS = [
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_log_time", pa.timestamp("ms", tz="UTC"), nullable=False),
]


def lake_schema(schema: EventSchema) -> pa.Schema:
    """The columns of an event table: the event's fields, then the source columns."""
    return pa.schema([*schema.arrow_schema, *SOURCE_COLUMNS])


@dataclass
class ParsedBatch:
    hours: list[tuple[int, pa.Table]]  # (hour start ms, rows of that hour in offset order)
    rejected: list[tuple[Record, Rejection]]  # records that are not valid events of this topic


def parse_batch(
    records: Sequence[Record], schema: EventSchema, validator: EventValidator
) -> ParsedBatch:
    """Parse a batch; the fast path parses all values at once in Arrow's JSON reader.

    Only when that fails (something bypassed the SDK and wrote an invalid record straight to
    the topic) are records checked one by one, and the invalid ones returned as rejected.
    """
    rejected: list[tuple[Record, Rejection]] = []
    try:
        table = _read_json([r.value for r in records], schema)
        kept = list(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        kept = []
        for record in records:
            result = validator.parse(record.value)
            if isinstance(result, Rejection):
                rejected.append((record, result))
            elif result[0]["event_type"] != schema.event_type:
                why = f"event_type {result[0]['event_type']!r} does not belong on {schema.topic}"
                rejected.append((record, Rejection("wrong_topic", why, "event_type")))
            else:
                kept.append(record)
        table = _read_json([r.value for r in kept], schema)
    table = _with_source_columns(table, kept)
    return ParsedBatch(split_by_hour(table), rejected)


def _read_json(values: list[bytes], schema: EventSchema) -> pa.Table:
    target = schema.arrow_schema
    if not values:
        return target.empty_table()
    options = pj.ParseOptions(explicit_schema=target, unexpected_field_behavior="error")
    data = b"\n".join(values)
    table = pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(block_size=max(1 << 20, len(data) + 1)),
        parse_options=options,
    )
    if table.num_rows != len(values):
        raise pa.ArrowInvalid(f"parsed {table.num_rows} rows from {len(values)} records")
    if table.column("event_time").null_count:
        raise pa.ArrowInvalid("event without event_time")
    return table.select(target.names).cast(target)


def _with_source_columns(table: pa.Table, records: Sequence[Record]) -> pa.Table:
    partition = np.full(len(records), records[0].partition if records else 0, dtype=np.int32)
    offsets = np.fromiter((r.offset for r in records), dtype=np.int64, count=len(records))
    log_times = np.fromiter((r.timestamp_ms for r in records), dtype=np.int64, count=len(records))
    columns = [
        pa.array(partition),
        pa.array(offsets),
        pa.array(log_times).cast(SOURCE_COLUMNS[2].type),
    ]
    for field, column in zip(SOURCE_COLUMNS, columns, strict=True):
        table = table.append_column(field, column)
    return table


def split_by_hour(table: pa.Table) -> list[tuple[int, pa.Table]]:
    """Rows grouped by the UTC hour of ``event_time``; order within an hour is kept."""
    if table.num_rows == 0:
        return []
    millis = table.column("event_time").cast(pa.int64()).to_numpy()
    hours = millis - millis % HOUR_MS
    order = np.argsort(hours, kind="stable")
    sorted_hours = hours[order]
    cuts = np.flatnonzero(np.diff(sorted_hours)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(order)]])
    ordered = table.take(pa.array(order)) if len(starts) > 1 else table
    return [
        (int(sorted_hours[s]), ordered.slice(s, e - s)) for s, e in zip(starts, ends, strict=True)
    ]


def hour_floor(millis: int) -> int:
    return millis - millis % HOUR_MS


def max_event_ms(hours: list[tuple[int, pa.Table]]) -> int | None:
    if not hours:
        return None
    return max(int(pc.max(t.column("event_time")).cast(pa.int64()).as_py()) for _, t in hours)
