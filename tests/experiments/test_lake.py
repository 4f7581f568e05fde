"""Experiment metrics and alerts over a small lake built through the real pipeline:
EventLogger -> local log -> Persister -> local lake -> DuckDB, and the CLI on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from homefeed.cli.common import settings
from homefeed.cli.experiments import experiments_app
from homefeed.config import LocalLogConfig, PersisterConfig
from homefeed.events import EventLogger
from homefeed.experiments import ExperimentsConfig, exposure_event
from homefeed.experiments.analysis import experiment_report
from homefeed.experiments.metrics import daily_series, experiment_data
from homefeed.jobs.catalog import register_lake
from homefeed.jobs.engines.duckdb import DuckDBEngine
from homefeed.lake.local import LocalLake
from homefeed.log.local import LocalLog
from homefeed.persister import Persister
from homefeed.testing.events import valid_event

DAY = "2026-11-21"
TOML = """
[log.local]
path = "data/log"
[lake]
uri = "data/lake"
[experiments]
srm_p_value = 0.001
[experiments.alerts]
metrics = ["impressions", "saves"]
z = 3.0
history_weeks = 2
[experiments.definitions.ranker_v2]
salt = "ranker-v2"
start = "2026-11-21T00:00:00Z"
end = "2026-11-23T00:00:00Z"
metrics = ["impressions", "clicks", "saves", "hides"]
variants = [
  { name = "control", weight = 50, target = "baseline" },
  { name = "treatment", weight = 50, target = "ranker:m-2" },
]
"""


def at(day: str, hh: int, mm: int = 0) -> str:
    return f"{day}T{hh:02d}:{mm:02d}:00.000Z"


def exposure(user: int, variant: str, when: str, experiment: str = "ranker_v2") -> dict[str, Any]:
    return exposure_event(user, experiment, variant, when, request_id=f"r-{user}")


def impression(user: int, when: str, pin: int = 1) -> dict[str, Any]:
    return valid_event("impression", user_id=user, pin_id=pin, event_time=when)


def experiment_events() -> list[dict[str, Any]]:
    return [
        # u1, control: one impression before exposure (not counted), then 2 + click + save.
        impression(1, at(DAY, 9)),
        exposure(1, "control", at(DAY, 10)),
        impression(1, at(DAY, 10, 5)),
        impression(1, at(DAY, 10, 5), pin=2),
        valid_event("click", user_id=1, event_time=at(DAY, 10, 6)),
        valid_event("save", user_id=1, event_time=at(DAY, 10, 7)),
        # u2, treatment first, later logged as control: keeps treatment, counted as switched.
        exposure(2, "treatment", at(DAY, 10)),
        exposure(2, "control", at(DAY, 11)),
        *[impression(2, at(DAY, 10, m)) for m in (1, 2, 3)],
        valid_event("hide", user_id=2, event_time=at(DAY, 10, 4)),
        # u3, treatment: one save inside the window and one after its end.
        exposure(3, "treatment", at(DAY, 12)),
        valid_event("save", user_id=3, event_time=at(DAY, 12, 30)),
        valid_event("save", user_id=3, event_time=at("2026-11-23", 1)),
        # u4 only in another experiment; u5 exposed before the start; u6 exposed, idle.
        exposure(4, "treatment", at(DAY, 12), experiment="other"),
        impression(4, at(DAY, 12, 5)),
        exposure(5, "control", at("2026-11-20", 23)),
        impression(5, at(DAY, 1)),
        exposure(6, "control", at(DAY, 13)),
        # u7 in a variant the config does not have.
        exposure(7, "holdout", at(DAY, 13)),
    ]


def daily_events() -> list[dict[str, Any]]:
    """Three weeks of impressions before the experiment: ~20 a day, then ~10 a day."""
    rng = np.random.default_rng(0)
    days = np.arange(np.datetime64("2026-10-31"), np.datetime64("2026-11-21"))
    events = []
    for i, day in enumerate(days):
        n = int(rng.integers(18, 23)) if i < 14 else int(rng.integers(9, 12))
        events += [impression(100 + k, at(str(day), 8, k)) for k in range(n)]
    return events


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experiments")
    log = LocalLog(LocalLogConfig(path=str(root / "data/log")))
    with EventLogger(log, partitions=2) as logger:
        rejected = logger.log_many([*experiment_events(), *daily_events()])
        assert not rejected, rejected
    config = PersisterConfig(batch_records=500, late_delay_minutes=0.0)
    Persister(log, LocalLake(root / "data/lake"), config=config).run()
    log.close()
    (root / "homefeed.toml").write_text(TOML, encoding="utf-8")
    return root


@pytest.fixture
def engine(root: Path):
    duck = DuckDBEngine()
    register_lake(duck, LocalLake(root / "data/lake"))
    yield duck
    duck.close()


def config() -> ExperimentsConfig:
    import tomllib

    return ExperimentsConfig.model_validate(tomllib.loads(TOML)["experiments"])


def test_per_user_metrics_count_from_first_exposure_to_the_end(engine):
    data = experiment_data(engine, "ranker_v2", config().get("ranker_v2"))
    control, treatment = data.values["control"], data.values["treatment"]
    assert control["impressions"].tolist() == [2, 0]  # users 1 and 6
    assert control["clicks"].tolist() == [1, 0] and control["saves"].tolist() == [1, 0]
    assert treatment["impressions"].tolist() == [3, 0]  # users 2 and 3
    assert treatment["hides"].tolist() == [1, 0] and treatment["saves"].tolist() == [0, 1]
    assert data.values["holdout"]["impressions"].tolist() == [0]
    assert data.switched_users == 1


def test_report_from_the_lake(engine):
    report = experiment_report(engine, "ranker_v2", config())
    assert report.users == {"control": 2, "treatment": 2}
    assert report.summaries["impressions"]["control"].mean == 1.0
    assert report.effects["impressions"]["treatment"].lift == pytest.approx(0.5)
    assert report.extra["unconfigured_variants"] == {"holdout": 1}
    assert report.srm is not None and not report.srm.mismatch


def test_daily_series_fills_days_and_computes_rates(engine):
    series = daily_series(engine)
    assert series.dates[0] == "2026-10-31" and series.dates[-1] == "2026-11-23"
    assert len(series.dates) == 24
    assert series.values["impressions"][:14].min() >= 18
    rate = series.values["save_rate"]
    assert np.isnan(rate[-1])  # 11-23: a save, no impressions
    assert rate[series.dates.index(DAY)] == pytest.approx(2 / 8)  # saves of u1, u3; 8 impressions


@pytest.fixture
def cli(root: Path, monkeypatch: pytest.MonkeyPatch, experiments_in_config: None):
    monkeypatch.chdir(root)
    monkeypatch.setenv("COLUMNS", "250")
    settings.config_path = None
    settings.reset()
    yield CliRunner()
    settings.reset()


def test_cli_list(cli):
    result = cli.invoke(experiments_app, ["list"])
    assert result.exit_code == 0, result.output
    assert "ranker_v2" in result.output and "treatment 50 -> ranker:m-2" in result.output


def test_cli_report_table_and_json(cli):
    table = cli.invoke(experiments_app, ["report", "ranker_v2"])
    assert table.exit_code == 0, table.output
    assert "impressions" in table.output and "[" in table.output and "sample ratio" in table.output
    assert "switched users: 1" in table.output
    result = cli.invoke(experiments_app, ["report", "ranker_v2", "--json"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.output)
    assert doc["users"] == {"control": 2, "treatment": 2}
    assert doc["extra"]["targets"]["treatment"] == "ranker:m-2"
    assert doc["effects"]["impressions"]["treatment"]["lift"] == pytest.approx(0.5)


def test_cli_report_unknown_experiment(cli):
    result = cli.invoke(experiments_app, ["report", "nope"])
    assert result.exit_code == 2 and "no experiment 'nope'" in result.output


def test_cli_alerts_flag_the_halved_week(cli):
    result = cli.invoke(experiments_app, ["alerts", "--through", "2026-11-20", "--json"])
    assert result.exit_code == 1, result.output
    rows = {r["metric"]: r for r in orjson.loads(result.output)}
    assert rows["impressions"]["alert"] and rows["impressions"]["last_date"] == "2026-11-20"
    assert rows["impressions"]["change"] < -0.4
    calm = cli.invoke(experiments_app, ["alerts", "--through", "2026-11-13"])
    assert calm.exit_code == 0, calm.output
    assert "impressions" in calm.output and "DROP" not in calm.output
