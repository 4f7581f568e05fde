"""The lake jobs: what each reads, how its SQL is parameterised, and where its output goes.

Every job is one SQL file in ``homefeed/jobs/sql/`` written in DuckDB's dialect (the Spark
engine transpiles it). A job runs for one *partition*: an event hour (grain ``hourly``,
output ``tables/<name>/dt=D/hr=HH/``) or a day (grain ``daily``, output ``tables/<name>/dt=D/``).

Parameters are written into the SQL as literals by :func:`render`, never by string pasting of
user input: each value is typed (str -> quoted with quotes doubled, int/float -> numeric
literal) and a placeholder the job does not define is an error naming the job and placeholder.

Inputs:

* ``events``: event types whose hours must all be marked ``_SUCCESS`` before the job runs
  (the partition's own hours; ``training_examples`` also needs the label window after the day).
* ``previous``: views over the *previous day's* partition of a job table (``prev_<table>``);
  on the first day (no such partition) the view is empty with the declared columns. Daily
  cumulative jobs (``user_topic_interest``, ``follow_graph``) read their own previous output.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

from homefeed.config import JobsConfig
from homefeed.lake.layout import HOUR_MS

Grain = Literal["hourly", "daily"]
DAY_MS = 24 * HOUR_MS
LOOKBACK_DAYS = 7  # user history features in training_examples
MAX_PINS_PER_USER = 50  # pin_pin_coengagement: at most 50*49/2 pairs per user and day
ACTION_WEIGHTS = {"w_click": 1.0, "w_closeup": 0.5, "w_save": 3.0}
MIN_INTEREST_WEIGHT = 1e-3
CREATE_WEIGHT = 1.0

SQL_DIR = Path(__file__).parent / "sql"
_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class Previous:
    """The previous day's partition of ``table`` as view ``prev_<table>``; empty if missing."""

    table: str
    empty_sql: str  # a query with the table's columns and no rows

    @property
    def view(self) -> str:
        return f"prev_{self.table}"


@dataclass(frozen=True)
class JobSpec:
    name: str
    grain: Grain
    events: tuple[str, ...]  # event types whose hours must be complete
    sort_key: tuple[str, ...]  # the output's order (the SQL's ORDER BY), for determinism
    previous: tuple[Previous, ...] = ()
    label_window: bool = False  # also needs the hours up to the end of the day + label window
    depends_on: tuple[str, ...] = field(default=())  # jobs that must run before (same date)

    @property
    def output(self) -> str:
        return self.name

    def sql_template(self) -> str:
        return (SQL_DIR / f"{self.name}.sql").read_text()


_TOPIC_EMPTY = (
    "SELECT CAST(NULL AS BIGINT) AS user_id, CAST(NULL AS VARCHAR) AS topic, "
    "CAST(NULL AS DOUBLE) AS weight WHERE 1 = 0"
)
_FOLLOW_EMPTY = (
    "SELECT CAST(NULL AS BIGINT) AS user_id, CAST(NULL AS VARCHAR) AS target_type, "
    "CAST(NULL AS BIGINT) AS target_id, CAST(NULL AS TIMESTAMPTZ) AS followed_at WHERE 1 = 0"
)
_PIN_STATS_EMPTY = (
    "SELECT CAST(NULL AS BIGINT) AS pin_id, CAST(NULL AS BIGINT) AS impressions, "
    "CAST(NULL AS BIGINT) AS clicks, CAST(NULL AS BIGINT) AS saves, "
    "CAST(NULL AS BIGINT) AS hides, CAST(NULL AS DOUBLE) AS click_rate, "
    "CAST(NULL AS DOUBLE) AS save_rate, CAST(NULL AS DOUBLE) AS hide_rate WHERE 1 = 0"
)
_ENGAGE = ("impression", "click", "closeup", "save", "hide")

JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in [
        JobSpec("pin_engagement_hourly", "hourly", _ENGAGE, ("pin_id",)),
        JobSpec(
            "user_activity_hourly",
            "hourly",
            (*_ENGAGE, "follow", "pin_create"),
            ("user_id",),
        ),
        JobSpec(
            "surface_position_hourly",
            "hourly",
            ("impression", "click", "save"),
            ("surface", "position_bucket"),
        ),
        JobSpec("pin_stats_daily", "daily", ("impression", "click", "save", "hide"), ("pin_id",)),
        JobSpec(
            "user_topic_interest",
            "daily",
            ("click", "closeup", "save", "pin_create"),
            ("user_id", "topic"),
            previous=(Previous("user_topic_interest", _TOPIC_EMPTY),),
        ),
        JobSpec("pin_pin_coengagement", "daily", ("click", "save"), ("pin_a", "pin_b")),
        JobSpec("pin_board_edges", "daily", ("save", "pin_create"), ("pin_id", "board_id")),
        JobSpec(
            "follow_graph",
            "daily",
            ("follow",),
            ("user_id", "target_type", "target_id"),
            previous=(Previous("follow_graph", _FOLLOW_EMPTY),),
        ),
        JobSpec(
            "training_examples",
            "daily",
            ("impression", "click", "save", "hide", "pin_create"),
            ("event_time", "impression_id"),
            previous=(
                Previous("pin_stats_daily", _PIN_STATS_EMPTY),
                Previous("user_topic_interest", _TOPIC_EMPTY),
            ),
            label_window=True,
        ),
    ]
}

HOURLY = [s for s in JOBS.values() if s.grain == "hourly"]
# Dependency order within a day: previous-day inputs come from earlier dates, so the only
# constraint is that a date's cumulative tables exist before the next date's jobs read them.
DAILY = [s for s in JOBS.values() if s.grain == "daily"]


def get_job(name: str) -> JobSpec:
    try:
        return JOBS[name]
    except KeyError:
        raise ValueError(f"unknown job {name!r}; jobs are: {', '.join(JOBS)}") from None


# ---- partitions -----------------------------------------------------------------------------


def parse_date(label: str) -> date:
    try:
        return datetime.strptime(label, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"date {label!r} is not of the form YYYY-MM-DD") from None


def day_start_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def partition_of(spec: JobSpec, start_ms: int) -> str:
    """The output directory suffix: ``dt=D/hr=HH`` (hourly) or ``dt=D`` (daily)."""
    t = datetime.fromtimestamp(start_ms / 1000, tz=UTC)
    return f"dt={t:%Y-%m-%d}/hr={t:%H}" if spec.grain == "hourly" else f"dt={t:%Y-%m-%d}"


def required_hours(spec: JobSpec, start_ms: int, config: JobsConfig) -> list[int]:
    """Start (ms) of every event hour that must be complete to run ``spec`` at ``start_ms``."""
    if spec.grain == "hourly":
        return [start_ms]
    end = start_ms + DAY_MS
    if spec.label_window:
        end += math.ceil(config.label_window_hours) * HOUR_MS
    return list(range(start_ms, end, HOUR_MS))


def parameters(spec: JobSpec, start_ms: int, config: JobsConfig) -> dict[str, str | int | float]:
    """The values of the SQL placeholders for one partition."""
    t = datetime.fromtimestamp(start_ms / 1000, tz=UTC)
    d = t.date()
    label_end = datetime.fromtimestamp(
        (start_ms + DAY_MS + config.label_window_hours * 3_600_000) / 1000, tz=UTC
    ).date()
    return {
        "dt": f"{d:%Y-%m-%d}",
        "hr": t.hour,
        "day_end": f"{d + timedelta(days=1):%Y-%m-%d} 00:00:00+00:00",
        "label_end_dt": f"{label_end:%Y-%m-%d}",
        "label_window_seconds": round(config.label_window_hours * 3600),
        "lookback_start_dt": f"{d - timedelta(days=LOOKBACK_DAYS - 1):%Y-%m-%d}",
        "half_life_days": float(config.interest_half_life_days),
        "smoothing": float(config.smoothing_impressions),
        "max_pins_per_user": MAX_PINS_PER_USER,
        "min_weight": MIN_INTEREST_WEIGHT,
        "create_weight": CREATE_WEIGHT,
        **ACTION_WEIGHTS,
    }


# ---- SQL rendering --------------------------------------------------------------------------


def literal(value: str | int | float) -> str:
    """``value`` as a SQL literal: strings quoted (quotes doubled), numbers as numbers."""
    if isinstance(value, bool):
        raise TypeError(f"boolean parameter {value!r} is not supported")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"parameter {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"parameter {value!r} of type {type(value).__name__} is not supported")


def render(spec: JobSpec, params: dict[str, str | int | float]) -> str:
    """The job's SQL with every ``:name`` placeholder replaced by its literal value."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            raise KeyError(f"job {spec.name}: SQL placeholder :{name} has no parameter")
        return literal(params[name])

    sql = _strip_comments(spec.sql_template())
    return _PLACEHOLDER.sub(sub, sql)


def _strip_comments(sql: str) -> str:
    # Comments may mention placeholders (":dt") in prose; only the SQL is rendered.
    return "\n".join(line.split("--", 1)[0].rstrip() for line in sql.splitlines()).strip()
