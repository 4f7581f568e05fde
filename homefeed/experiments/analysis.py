"""From config and lake to reports: what ``homefeed experiments report|alerts`` compute."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from homefeed.experiments.alerts import WeekOverWeek, check_series
from homefeed.experiments.metrics import daily_series, experiment_data
from homefeed.experiments.settings import ExperimentsConfig
from homefeed.experiments.stats import Report, compare
from homefeed.jobs.engines.base import Engine


def experiment_report(engine: Engine, name: str, config: ExperimentsConfig) -> Report:
    """The report of experiment ``name`` over the lake registered in ``engine``."""
    experiment = config.get(name)
    data = experiment_data(engine, name, experiment)
    configured = [v.name for v in experiment.variants]
    report = compare(
        {v: data.values[v] for v in configured},
        control=experiment.control_name,
        weights={v.name: v.weight for v in experiment.variants},
        confidence=config.confidence,
        srm_threshold=config.srm_p_value,
        metrics=experiment.metrics,
    )
    strays = {v: len(next(iter(m.values()))) for v, m in data.values.items() if v not in configured}
    report.extra = {
        "experiment": name,
        "targets": {v.name: v.target for v in experiment.variants},
        "switched_users": data.switched_users,
        "unconfigured_variants": strays,
    }
    return report


def lake_alerts(
    engine: Engine, config: ExperimentsConfig, through: date | None = None
) -> list[WeekOverWeek]:
    """Week-over-week checks of the configured daily metrics, ending at ``through``.

    ``through`` defaults to yesterday (UTC): today is still being written and would read as a
    drop. Days after ``through`` are ignored."""
    through = through or (datetime.now(UTC) - timedelta(days=1)).date()
    series = daily_series(engine)
    keep = [i for i, d in enumerate(series.dates) if d <= through.isoformat()]
    if not keep:
        return []
    cut = keep[-1] + 1
    values = {m: v[:cut] for m, v in series.values.items()}
    alerts = config.alerts
    return check_series(
        values,
        alerts.metrics,
        z=alerts.z,
        history_weeks=alerts.history_weeks,
        last_date=series.dates[cut - 1],
    )
