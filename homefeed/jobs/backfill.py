"""Run many partitions in dependency order, and drop old partitions from the lake.

Order: for each date, its hourly partitions (every hourly job, hour by hour), then its daily
jobs; dates ascending, because cumulative daily tables (``user_topic_interest``,
``follow_graph``) and training features read the previous date's partitions. A partition is
skipped when its ``_SUCCESS`` says it was built from the current version of its inputs
(``force`` rebuilds anyway). A partition whose inputs are not ready stops the backfill there:
later dates would read a missing previous partition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from homefeed.config import JobsConfig
from homefeed.jobs.definitions import DAILY, HOURLY, JobSpec, day_start_ms, partition_of
from homefeed.jobs.engines.base import Engine
from homefeed.jobs.runner import TABLES, InputsNotReady, is_done, run_job
from homefeed.lake.base import LakeStore
from homefeed.lake.layout import EVENTS, HOUR_MS

Step = tuple[JobSpec, int]  # (job, partition start in ms)


@dataclass
class BackfillReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    waiting: str | None = None  # the InputsNotReady message that stopped the backfill


def plan(start: date, end: date) -> Iterator[Step]:
    """Every (job, partition) from ``start`` to ``end`` inclusive, in the order to run them."""
    if end < start:
        raise ValueError(f"backfill range is empty: {start} is after {end}")
    day = start
    while day <= end:
        first = day_start_ms(day)
        for hour in range(first, first + 24 * HOUR_MS, HOUR_MS):
            for spec in HOURLY:
                yield spec, hour
        for spec in DAILY:
            yield spec, first
        day += timedelta(days=1)


def backfill(
    engine: Engine,
    lake: LakeStore,
    config: JobsConfig,
    start: date,
    end: date,
    *,
    force: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> BackfillReport:
    """Run the plan; ``on_step(label)`` is called after each step (for a progress bar)."""
    report = BackfillReport()
    for spec, start_ms in plan(start, end):
        label = f"{spec.name} {partition_of(spec, start_ms)}"
        if not force and is_done(lake, spec, start_ms, config):
            report.skipped.append(label)
        else:
            try:
                run_job(engine, lake, spec, start_ms, config)
            except InputsNotReady as e:
                report.waiting = str(e)
                return report
            report.ran.append(label)
        if on_step is not None:
            on_step(label)
    return report


def steps_in(start: date, end: date) -> int:
    return ((end - start).days + 1) * (24 * len(HOURLY) + len(DAILY))


# ---- garbage collection ----------------------------------------------------------------------

_DT = re.compile(r"^((?:events|tables)/[^/]+/dt=(\d{4}-\d{2}-\d{2}))/")


@dataclass
class GcReport:
    prefixes: list[str] = field(default_factory=list)  # dt= directories removed (or to remove)
    files: int = 0


def lake_gc(
    lake: LakeStore, retention_days: int, *, now: datetime | None = None, dry_run: bool = False
) -> GcReport:
    """Delete ``events/*/dt=D`` and ``tables/*/dt=D`` for dates older than the retention.

    A date is kept while any of it is younger than ``retention_days`` days before ``now``.
    """
    now = now or datetime.now(UTC)
    cutoff = f"{(now - timedelta(days=retention_days)).date():%Y-%m-%d}"
    counts: dict[str, int] = {}
    for prefix in (EVENTS, TABLES):
        for info in lake.list(prefix):
            m = _DT.match(info.path)
            if m and m.group(2) < cutoff:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    report = GcReport(prefixes=sorted(counts), files=sum(counts.values()))
    if not dry_run:
        for p in report.prefixes:
            lake.delete_prefix(p)
    return report
