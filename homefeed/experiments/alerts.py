"""Week-over-week alerts on daily metric series.

A drop alerts when this week's mean (the last 7 days) falls below last week's (the 7 before)
by more than ``z`` times the normal variation of a weekly mean: the standard deviation of the
daily values over the ``history_weeks`` weeks before this week, divided by sqrt(7). Using the
weeks before this one keeps the drop under test out of its own yardstick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEEK = 7


@dataclass(frozen=True)
class WeekOverWeek:
    metric: str
    this_week: float
    last_week: float
    threshold: float  # how far below last week this week may fall
    drop: float  # last_week - this_week
    alert: bool
    last_date: str

    @property
    def change(self) -> float:
        return self.this_week / self.last_week - 1 if self.last_week else float("nan")


def week_over_week(
    metric: str, values: np.ndarray, *, z: float, history_weeks: int, last_date: str = ""
) -> WeekOverWeek | None:
    """Check the last 7 values against the 7 before; None below two full weeks of data.

    NaN days (a rate on a day without impressions) are left out of the means and spread."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2 * WEEK:
        return None
    this, last = x[-WEEK:], x[-2 * WEEK : -WEEK]
    history = x[-WEEK - history_weeks * WEEK : -WEEK]
    if np.isnan(this).all() or np.isnan(last).all() or np.count_nonzero(~np.isnan(history)) < 2:
        return None
    this_mean, last_mean = float(np.nanmean(this)), float(np.nanmean(last))
    threshold = z * float(np.nanstd(history, ddof=1)) / float(np.sqrt(WEEK))
    drop = last_mean - this_mean
    return WeekOverWeek(
        metric, this_mean, last_mean, threshold, drop, bool(drop > threshold), last_date
    )


def check_series(
    series: dict[str, np.ndarray],
    metrics: list[str],
    *,
    z: float,
    history_weeks: int,
    last_date: str = "",
) -> list[WeekOverWeek]:
    """Week-over-week of every watched metric that has two weeks of data."""
    results = []
    for metric in metrics:
        if metric not in series:
            continue
        found = week_over_week(
            metric, series[metric], z=z, history_weeks=history_weeks, last_date=last_date
        )
        if found is not None:
            results.append(found)
    return results
