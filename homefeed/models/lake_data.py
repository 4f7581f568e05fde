"""Build ``TrainingData`` and the ranker's examples from the lake, with SQL on an engine.

The window ``[start, end)`` is in event time (UTC). What it means per part:

* engagements (impression, closeup, click, save, hide, and pin_create as CREATE) and pin-board
  edges (saves into a board, a pin's creation on it) are the events inside the window;
* the catalogue is state as of ``end``: every pin's latest ``pin_create``, every board's latest
  ``board_create`` and the final follow/unfollow of each (user, target), from the whole lake
  before ``end``, so a pin created before the window still has its topics.

Results stream from the engine as Arrow batches into NumPy columns sized by a ``COUNT(*)``
first, so memory is the columns themselves (about 25 bytes an engagement), never a DataFrame.
``TrainingDataBuilder`` (``from_events.py``) is the reference: for the same events it gives
equal arrays (tests/models/test_lake_data.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from homefeed.config import HomefeedConfig
from homefeed.jobs.catalog import register_lake
from homefeed.jobs.engines import open_engine
from homefeed.jobs.engines.base import Engine
from homefeed.lake.base import LakeStore
from homefeed.lake.layout import EVENTS
from homefeed.models.data import Action, Edges, Engagements, Follows, Pins, TrainingData

if TYPE_CHECKING:
    from homefeed.models.pipeline import RankerExamples

ENGAGEMENT_TABLES = {
    "impression": Action.IMPRESSION,
    "closeup": Action.CLOSEUP,
    "click": Action.CLICK,
    "save": Action.SAVE,
    "hide": Action.HIDE,
}
PIN_BOARD_TABLE = "tables/pin_board_edges"
EXAMPLES_TABLE = "tables/training_examples"
PART = "part-0000.parquet"
DAY_MS = 86_400_000
_LATEST = "ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY event_time DESC, _partition DESC, "
_LATEST += "_offset DESC)"


class LakeDataMissing(LookupError):
    """The lake lacks a table or partitions the loader needs; ``missing`` names them.

    ``backfill`` is the date range whose jobs would create missing job tables, if that helps.
    """

    def __init__(
        self, message: str, missing: list[str], backfill: tuple[date, date] | None = None
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.backfill = backfill


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in event time, both UTC."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: datetime, end: datetime) -> Window:
        start, end = _utc(start), _utc(end)
        if end <= start:
            raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
        return cls(start, end)

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def end_ms(self) -> int:
        return (self.end - _EPOCH) // timedelta(milliseconds=1)  # exact, unlike a float

    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=i) for i in range(self.span_days())]

    def span_days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def day_aligned(self) -> bool:
        return _is_midnight(self.start) and _is_midnight(self.end)

    def inside(self) -> str:
        """SQL condition: the event is in the window (dt bounds let the engine prune files)."""
        return (
            f"dt >= '{self.first_day}' AND {self.before_end()} AND event_time >= {_ts(self.start)}"
        )

    def before_end(self) -> str:
        """SQL condition: the event happened before ``end`` (state as of ``end``)."""
        return f"dt <= '{self.last_day}' AND event_time < {_ts(self.end)}"

    def all_days(self) -> str:
        return f"dt >= '{self.first_day}' AND dt <= '{self.last_day}'"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(t: datetime) -> datetime:
    # Naive datetimes are UTC, as every time in the lake is.
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _is_midnight(t: datetime) -> bool:
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)


def _ts(t: datetime) -> str:
    return f"CAST('{t.isoformat(sep=' ')}' AS TIMESTAMPTZ)"


# ---- entry points ---------------------------------------------------------------------------


def load_training_data(
    config: HomefeedConfig, start: datetime, end: datetime, engine: Engine | None = None
) -> TrainingData:
    """Everything the sources fit on for the window ``[start, end)`` of the configured lake.

    Raises ``LakeDataMissing`` if the lake has no engagement events in the window or no pins.
    """
    from homefeed.lake import open_lake

    lake = open_lake(config.lake)
    window = Window.of(start, end)
    check_event_tables(lake, window)
    with _engine(config, engine) as eng:
        register_lake(eng, lake)
        edges_from = "pin_board_edges" if _has_edge_table(lake, window) else "events"
        return TrainingData(
            engagements=read_engagements(eng, window),
            pins=read_pins(eng, window),
            pin_boards=read_pin_boards(eng, window, from_job_table=edges_from != "events"),
            board_owner=read_board_owners(eng, window),
            follows=read_follows(eng, window),
            as_of_ms=window.end_ms,
            meta={
                "source": "lake",
                "lake": lake.uri,
                "engine": eng.name,
                "start": window.start.isoformat(),
                "end": window.end.isoformat(),
                "pin_boards_from": edges_from,
            },
        )


def load_ranker_examples(
    config: HomefeedConfig, start: datetime, end: datetime, engine: Engine | None = None
) -> RankerExamples:
    """The ``training_examples`` rows of every day partition starting in ``[start, end)``.

    Raises ``LakeDataMissing`` naming the days without a partition (run the backfill first).
    """
    from homefeed.lake import open_lake
    from homefeed.models.pipeline import RankerExamples

    lake = open_lake(config.lake)
    window = Window.of(start, end)
    days = [d for d in window.days() if _midnight(d) >= window.start]
    missing = [d for d in days if not lake.exists(f"{EXAMPLES_TABLE}/dt={d}/{PART}")]
    if not days or missing:
        raise _examples_missing(lake, window, missing or days)
    sql = (
        "SELECT user_id, pin_id, event_time, label_click, label_save, label_hide "
        f"FROM training_examples WHERE dt >= '{days[0]}' AND dt <= '{days[-1]}' "
        "ORDER BY event_time, impression_id"
    )
    with _engine(config, engine) as eng:
        register_lake(eng, lake)
        cols = read_columns(eng, sql)
    return RankerExamples(
        user_id=cols["user_id"],
        pin_id=cols["pin_id"],
        time_ms=cols["event_time"],
        label_click=cols["label_click"].astype(np.int8),
        label_save=cols["label_save"].astype(np.int8),
        label_hide=cols["label_hide"].astype(np.int8),
    )


@contextmanager
def _engine(config: HomefeedConfig, engine: Engine | None) -> Iterator[Engine]:
    """The caller's engine (left open), or the configured one (closed afterwards)."""
    if engine is not None:
        yield engine
        return
    opened = open_engine(config.engine)
    try:
        yield opened
    finally:
        opened.close()


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


# ---- what the lake has ----------------------------------------------------------------------


def partition_days(lake: LakeStore, prefix: str) -> set[date]:
    """The ``dt=`` days with at least one Parquet file below ``prefix``."""
    days = set()
    for info in lake.list(prefix):
        if info.path.endswith(".parquet"):
            for segment in info.path.split("/"):
                if segment.startswith("dt="):
                    days.add(date.fromisoformat(segment[3:]))
                    break
    return days


def event_days(lake: LakeStore) -> dict[str, set[date]]:
    """Days with data per event table, from one listing of ``events/``."""
    out: dict[str, set[date]] = {}
    for info in lake.list(EVENTS):
        parts = info.path.split("/")
        if info.path.endswith(".parquet") and len(parts) > 2 and parts[2].startswith("dt="):
            out.setdefault(parts[1], set()).add(date.fromisoformat(parts[2][3:]))
    return out


def check_event_tables(lake: LakeStore, window: Window) -> None:
    """Raise ``LakeDataMissing`` unless the window has engagements and the lake has pins."""
    days = event_days(lake)
    every = sorted(set().union(*days.values())) if days else []
    held = f"it has events from {every[0]} to {every[-1]}" if every else "it has no events"
    wanted = set(window.days())
    if not any(days.get(t, set()) & wanted for t in ENGAGEMENT_TABLES):
        tables = ", ".join(f"{EVENTS}/{t}" for t in ENGAGEMENT_TABLES)
        raise LakeDataMissing(
            f"the lake {lake.uri} has no engagement events ({tables}) with partitions "
            f"dt={window.first_day}..dt={window.last_day}; {held}",
            [f"{EVENTS}/{t}" for t in ENGAGEMENT_TABLES],
        )
    if not any(d <= window.last_day for d in days.get("pin_create", set())):
        raise LakeDataMissing(
            f"the lake {lake.uri} has no pins: {EVENTS}/pin_create has no partition up to "
            f"dt={window.last_day}; {held}",
            [f"{EVENTS}/pin_create"],
        )


def _has_edge_table(lake: LakeStore, window: Window) -> bool:
    """The pin_board_edges job table covers the window exactly (whole days, all present)."""
    if not window.day_aligned():
        return False
    return all(lake.exists(f"{PIN_BOARD_TABLE}/dt={d}/{PART}") for d in window.days())


def _examples_missing(lake: LakeStore, window: Window, missing: list[date]) -> LakeDataMissing:
    shown = ", ".join(f"dt={d}" for d in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    first, last = missing[0], missing[-1]
    return LakeDataMissing(
        f"the lake {lake.uri} lacks {EXAMPLES_TABLE} partitions {shown}{more} (window "
        f"{window.start.isoformat()} to {window.end.isoformat()}): run "
        f"`homefeed backfill --from {first} --to {last}` first",
        [f"{EXAMPLES_TABLE}/dt={d}" for d in missing],
        backfill=(first, last),
    )


# ---- the parts ------------------------------------------------------------------------------


def read_engagements(engine: Engine, window: Window) -> Engagements:
    selects = [
        f"SELECT user_id, pin_id, CAST({int(code)} AS BIGINT) AS action, event_time "
        f"FROM {table} WHERE {window.inside()}"
        for table, code in [*ENGAGEMENT_TABLES.items(), ("pin_create", Action.CREATE)]
    ]
    cols = read_columns(engine, " UNION ALL ".join(selects))
    return Engagements(
        cols["user_id"], cols["pin_id"], cols["action"].astype(np.int8), cols["event_time"]
    )


def read_pin_boards(engine: Engine, window: Window, from_job_table: bool) -> Edges:
    """Pin -> board weights: one per save into the board, one for the pin's creation on it,
    with the time each edge first appeared (``Edges.first_ms``)."""
    if from_job_table:
        # The job's weight is saves + create_weight * created, create_weight being 1.0 too.
        # Its rows are per day: an edge is known from the end of the first day it was seen.
        sql = (
            "SELECT pin_id, board_id, SUM(weight) AS weight, "
            "CAST(CAST(MIN(dt) AS DATE) AS TIMESTAMP) AS first_day FROM pin_board_edges "
            f"WHERE {window.all_days()} GROUP BY pin_id, board_id"
        )
    else:
        sql = (
            "SELECT pin_id, board_id, CAST(COUNT(*) AS DOUBLE) AS weight, "
            "MIN(event_time) AS first_time FROM ("
            f"SELECT pin_id, board_id, event_time FROM save WHERE {window.inside()} UNION ALL "
            f"SELECT pin_id, board_id, event_time FROM pin_create WHERE {window.inside()}"
            ") AS e GROUP BY pin_id, board_id"
        )
    cols = read_columns(engine, f"{sql} ORDER BY pin_id, board_id")
    first = cols["first_day"] + (DAY_MS - 1) if from_job_table else cols["first_time"]
    return Edges(cols["pin_id"], cols["board_id"], cols["weight"].astype(np.float32), first)


def read_board_owners(engine: Engine, window: Window) -> Edges:
    """Each board's owner by its latest ``board_create`` before ``end``, from that time on."""
    sql = (
        "SELECT board_id, user_id, event_time FROM (SELECT board_id, user_id, event_time, "
        f"{_LATEST.format(key='board_id')} AS rn FROM board_create WHERE {window.before_end()}"
        ") AS latest WHERE rn = 1 ORDER BY board_id"
    )
    cols = read_columns(engine, sql)
    ones = np.ones(len(cols["board_id"]), dtype=np.float32)
    return Edges(cols["board_id"], cols["user_id"], ones, cols["event_time"])


def read_follows(engine: Engine, window: Window) -> Follows:
    """The final state before ``end``: the latest follow or unfollow of each (user, target)."""
    key = "user_id, target_type, target_id"
    sql = (
        "SELECT user_id, CASE WHEN target_type = 'user' THEN 0 ELSE 1 END AS target_code, "
        f"target_id, event_time FROM (SELECT {key}, action, event_time, "
        f"{_LATEST.format(key=key)} AS rn FROM follow WHERE {window.before_end()}) AS latest "
        "WHERE rn = 1 AND action = 'follow' ORDER BY user_id, target_code, target_id"
    )
    cols = read_columns(engine, sql)
    return Follows(cols["user_id"], cols["target_code"].astype(np.int8), cols["target_id"],
                   cols["event_time"])  # fmt: skip


def read_pins(engine: Engine, window: Window) -> Pins:
    """Each pin's latest ``pin_create`` before ``end``, sorted by pin_id."""
    sql = (
        "SELECT pin_id, user_id, event_time, title, topics FROM (SELECT pin_id, user_id, "
        f"event_time, title, topics, {_LATEST.format(key='pin_id')} AS rn FROM pin_create "
        f"WHERE {window.before_end()}) AS latest WHERE rn = 1 ORDER BY pin_id"
    )
    pins = _PinColumns()
    for batch in engine.batches(sql):
        pins.add(batch)
    return pins.build()


class _PinColumns:
    """Accumulates pin batches; topic names get codes as they appear, sorted at the end."""

    def __init__(self) -> None:
        self.ids: list[np.ndarray] = []
        self.creators: list[np.ndarray] = []
        self.created: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.text: list[str] = []
        self.vocabulary: dict[str, int] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        self.ids.append(_int64(batch.column("pin_id")))
        self.creators.append(_int64(batch.column("user_id")))
        self.created.append(_epoch_ms(batch.column("event_time")))
        self.text.extend(s or "" for s in batch.column("title").to_pylist())
        topics = batch.column("topics")
        lengths = pc.fill_null(pc.list_value_length(topics), 0)
        self.lengths.append(lengths.to_numpy().astype(np.int64))
        encoded = pc.list_flatten(topics).dictionary_encode()
        names = encoded.dictionary.to_pylist()
        to_global = np.array(
            [self.vocabulary.setdefault(n, len(self.vocabulary)) for n in names], dtype=np.int32
        )
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.codes.append(to_global[indices] if len(indices) else np.empty(0, np.int32))

    def build(self) -> Pins:
        topics = sorted(self.vocabulary)
        remap = np.empty(len(topics), dtype=np.int32)
        for new, name in enumerate(topics):
            remap[self.vocabulary[name]] = new
        codes = _concat(self.codes, np.int32)
        lengths = _concat(self.lengths, np.int64)
        return Pins(
            pin_id=_concat(self.ids, np.int64),
            creator_id=_concat(self.creators, np.int64),
            created_ms=_concat(self.created, np.int64),
            topic_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            topic_codes=remap[codes] if len(codes) else codes,
            topics=tuple(topics),
            text=tuple(self.text),
        )


# ---- streaming into NumPy -------------------------------------------------------------------


def read_columns(engine: Engine, sql: str) -> dict[str, np.ndarray]:
    """The result of ``sql`` as one NumPy array per column, filled batch by batch.

    A ``COUNT(*)`` first sizes the arrays, so nothing is held twice. Timestamps become epoch
    milliseconds (int64), integers int64, floating point float64.
    """
    total = int(engine.query(f"SELECT COUNT(*) AS n FROM ({sql}) AS counted").column(0)[0].as_py())
    out: dict[str, np.ndarray] = {}
    filled = 0
    for batch in engine.batches(sql):
        if not out:
            out = {f.name: np.empty(total, dtype=_dtype(f.type)) for f in batch.schema}
        n = batch.num_rows
        if filled + n > total:
            raise RuntimeError(f"the lake changed while reading: more than {total} rows")
        for name, array in out.items():
            array[filled : filled + n] = _numpy(batch.column(name))
        filled += n
    if not out:  # no batches at all: take the columns from the empty result's schema
        schema = engine.query(f"SELECT * FROM ({sql}) AS e LIMIT 0").schema
        out = {f.name: np.empty(0, dtype=_dtype(f.type)) for f in schema}
    return {name: array[:filled] for name, array in out.items()}


def _dtype(t: pa.DataType) -> type[np.generic]:
    if pa.types.is_integer(t) or pa.types.is_timestamp(t):
        return np.int64
    if pa.types.is_floating(t):
        return np.float64
    raise TypeError(f"column type {t} cannot be read into a NumPy column")


def _numpy(column: pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(column.type):
        return _epoch_ms(column)
    if column.null_count:
        raise ValueError(f"unexpected nulls in a {column.type} column")
    return column.to_numpy(zero_copy_only=False)


def _epoch_ms(column: pa.Array) -> np.ndarray:
    per_ms = {"s": 0, "ms": 1, "us": 1000, "ns": 1_000_000}[column.type.unit]
    raw = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return raw * 1000 if per_ms == 0 else raw // per_ms


def _int64(column: pa.Array) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _concat(parts: list[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)


__all__ = [
    "LakeDataMissing",
    "Window",
    "event_days",
    "load_ranker_examples",
    "load_training_data",
    "partition_days",
]
