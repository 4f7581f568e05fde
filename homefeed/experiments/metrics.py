"""Experiment metrics from the lake, in SQL through an engine (DuckDB by default).

Per user exposed to an experiment: the variant of their first exposure in the experiment's
window, and how many impressions, closeups, clicks, saves and hides they made from that first
exposure to the window's end. Events before exposure are excluded because assignment cannot have
caused them. A user logged under two variants (a bug in a service, or a changed salt) keeps
the first one and is counted in ``switched_users`` so the report can warn.

Daily series for alerts: per event date, counts of each event type over all users, and rates
per impression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from homefeed.experiments.settings import METRICS, ExperimentConfig
from homefeed.jobs.engines.base import Engine

TABLE_OF = {
    "impressions": "impression",
    "closeups": "closeup",
    "clicks": "click",
    "saves": "save",
    "hides": "hide",
}
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class ExperimentData:
    """Per-user metrics by variant (``values[variant][metric]``, one entry per user)."""

    values: dict[str, dict[str, np.ndarray]]
    switched_users: int


def _literal(when: datetime) -> str:
    return f"CAST('{when.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00' AS TIMESTAMPTZ)"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def per_user_sql(name: str, experiment: ExperimentConfig) -> str:
    """One row per exposed user: user_id, variant, switched (0/1), and one column per metric."""
    start, end = _literal(experiment.start), _literal(experiment.end or FAR_FUTURE)
    counts = [
        f"{metric} AS (SELECT t.user_id, COUNT(*) AS n FROM {table} t JOIN exposed x "
        f"ON t.user_id = x.user_id WHERE t.event_time >= x.first_seen AND t.event_time < {end} "
        "GROUP BY t.user_id)"
        for metric, table in TABLE_OF.items()
    ]
    joins = " ".join(f"LEFT JOIN {m} ON {m}.user_id = x.user_id" for m in TABLE_OF)
    columns = ", ".join(f"COALESCE({m}.n, 0) AS {m}" for m in TABLE_OF)
    return (
        "WITH exposed AS (SELECT user_id, ARG_MIN(variant, event_time) AS variant, "
        "MIN(event_time) AS first_seen, COUNT(DISTINCT variant) AS variants FROM exposure "
        f"WHERE experiment = {_quoted(name)} AND event_time >= {start} AND event_time < {end} "
        f"GROUP BY user_id), {', '.join(counts)} "
        "SELECT x.user_id, x.variant, CASE WHEN x.variants > 1 THEN 1 ELSE 0 END AS switched, "
        f"{columns} FROM exposed x {joins} ORDER BY x.user_id"
    )


def experiment_data(engine: Engine, name: str, experiment: ExperimentConfig) -> ExperimentData:
    """Per-user metrics of every configured variant (empty arrays for a variant nobody saw).

    ``engine`` must have the lake registered (``homefeed.jobs.catalog.register_lake``)."""
    table = engine.query(per_user_sql(name, experiment))
    variants = np.asarray(table.column("variant").to_numpy(zero_copy_only=False), dtype=object)
    values: dict[str, dict[str, np.ndarray]] = {}
    names = [v.name for v in experiment.variants]
    for variant in [*names, *sorted(set(variants.tolist()) - set(names))]:
        mask = variants == variant
        values[variant] = {m: _column(table, m)[mask] for m in METRICS}
    switched = int(_column(table, "switched").sum()) if table.num_rows else 0
    return ExperimentData(values, switched)


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def daily_sql() -> str:
    """Per event date (dt): count of each event type; a date with no events has no row."""
    parts = [
        f"SELECT dt, '{metric}' AS metric, COUNT(*) AS n FROM {table} GROUP BY dt"
        for metric, table in TABLE_OF.items()
    ]
    return " UNION ALL ".join(parts) + " ORDER BY dt, metric"


@dataclass
class DailySeries:
    """Consecutive dates (missing days filled: 0 events) and each daily metric's values."""

    dates: list[str]
    values: dict[str, np.ndarray]


def daily_series(engine: Engine) -> DailySeries:
    """Daily counts and per-impression rates from the lake registered in ``engine``."""
    table = engine.query(daily_sql())
    if table.num_rows == 0:
        return DailySeries([], {})
    dt = table.column("dt").to_pylist()
    dates = _date_range(min(dt), max(dt))
    index = {d: i for i, d in enumerate(dates)}
    counts = {m: np.zeros(len(dates)) for m in TABLE_OF}
    for day, metric, n in zip(
        dt, table.column("metric").to_pylist(), table.column("n").to_pylist(), strict=True
    ):
        counts[metric][index[day]] = n
    impressions = counts["impressions"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = {
            f"{m[:-1]}_rate": np.where(impressions > 0, counts[m] / impressions, np.nan)
            for m in ("clicks", "saves", "hides", "closeups")
        }
    return DailySeries(dates, {**counts, **rates})


def _date_range(first: str, last: str) -> list[str]:
    days = np.arange(np.datetime64(first), np.datetime64(last) + 1)
    return [str(d) for d in days]
