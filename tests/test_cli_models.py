"""``homefeed train`` and ``homefeed models`` on a small simulated lake, through the CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from homefeed.cli.common import settings
from homefeed.cli.models import models_app, train
from homefeed.models.bundle import ModelBundle
from homefeed.models.registry import ModelRegistry
from homefeed.models.sources.base import NO_PIN
from tests.models.test_lake_data import (
    START,
    WORLD,
    SimulatedLake,
    build_simulated_lake,
    run_day_jobs,
)

Run = Callable[..., tuple[int, str]]
TOML = """
[lake]
uri = "{lake}"

[models]
train_days = 14
ranker_days = 1

# Every source but item_item, the slowest to fit: the CLI is under test here, not the sources.
[models.sources.following]
[models.sources.als]
[models.sources.pixie]
[models.sources.content]
[models.sources.trending]

[models.ranker]
rounds = 8
min_data_in_leaf = 5
"""


def make_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("train")(train)
    app.add_typer(models_app, name="models")

    @app.callback()
    def root(config: Annotated[Path, typer.Option("--config", "-c")]) -> None:
        settings.config_path = config
        settings.reset()

    return app


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> SimulatedLake:
    """Two simulated days; the jobs have run so that day two has training examples."""
    built = build_simulated_lake(
        tmp_path_factory.mktemp("cli"), WORLD.model_copy(update={"days": 2.0})
    )
    run_day_jobs(built, START, ["pin_stats_daily", "user_topic_interest"])
    run_day_jobs(built, START + timedelta(days=1), ["training_examples"])
    return built


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Run]:
    monkeypatch.setenv("COLUMNS", "200")
    runner, app = CliRunner(), make_app()

    def run(lake: Path, *args: str) -> tuple[int, str]:
        config = tmp_path / "homefeed.toml"
        config.write_text(TOML.format(lake=lake))
        result = runner.invoke(app, ["--config", str(config), *args])
        # Rich wraps long lines at the console width: compare text with whitespace collapsed.
        return result.exit_code, " ".join(result.output.split())

    yield run
    settings.config_path = None
    settings.reset()


def test_train_registers_a_bundle_and_models_commands_manage_it(
    two_days: SimulatedLake, cli: Run, tmp_path: Path
) -> None:
    lake = two_days.root / "lake"
    code, out = cli(lake, "train", "--promote")
    assert code == 0, out
    assert "trained v0001" in out and "2026-11-01 .. 2026-11-02" in out
    assert "ranker examples" in out and "2026-11-02 .. 2026-11-02" in out
    assert re.search(r"source als \(final fit\)[\s│]+[\d.]+ s", out)
    assert re.search(r"ranker_examples[\s│]+[\d,]+", out)
    assert f"registered v0001 at {lake}/models/homefeed/v0001 and promoted to production" in out
    registry = ModelRegistry(two_days.lake, "homefeed")
    model = registry.show("v0001")
    assert model.data_range == {
        "start": "2026-11-01T00:00:00+00:00",
        "end": "2026-11-03T00:00:00+00:00",
    }
    assert model.metrics["ranker_examples"] > 100 and model.metrics["engagements"] > 1000
    assert registry.production() == "v0001"
    # The registered files are a bundle that loads and recommends.
    fetched = registry.fetch("v0001", tmp_path / "fetched")
    recs = ModelBundle.load(fetched).recommend(_some_users(two_days), k=5)
    assert recs.pins.shape == (2, 5) and (recs.pins != NO_PIN).all()

    # A second version (the same files again; training twice would only cost time).
    assert registry.register(fetched, {"engagements": 1}, (START, START)) == "v0002"
    code, out = cli(lake, "models", "list")
    assert code == 0, out
    assert re.search(r"v0001[\s│]+production[\s│]+\d{4}-", out)
    assert re.search(r"v0002[\s│]+\d{4}-", out)
    code, out = cli(lake, "models", "show", "v0001")
    assert code == 0, out
    assert "bundle.json" in out and "2026-11-01T00:00:00+00:00" in out
    code, out = cli(lake, "models", "promote", "v0002")
    assert code == 0 and "v0002 is production (was v0001)" in out
    assert json.loads(two_days.lake.get_bytes("models/homefeed/_state.json"))["production"] == (
        "v0002"
    )
    code, out = cli(lake, "models", "rollback")
    assert code == 0 and "rolled back to v0001 (from v0002)" in out
    code, out = cli(lake, "models", "rollback")
    assert code == 2 and "nothing to roll back to" in out
    code, out = cli(lake, "models", "show", "v0042")
    assert code == 2 and "no version v0042" in out and "v0001, v0002" in out
    code, out = cli(lake, "models", "promote", "v0042")
    assert code == 2 and "no version v0042" in out


def _some_users(built: SimulatedLake) -> np.ndarray:
    users = sorted({e["user_id"] for e in built.events if e["event_type"] == "impression"})
    return np.array(users[:2], dtype=np.int64)


def test_train_names_what_is_missing(two_days: SimulatedLake, cli: Run, tmp_path: Path) -> None:
    code, out = cli(tmp_path / "empty-lake", "train")
    assert code == 2 and "is empty: no events to train on" in out
    code, out = cli(two_days.root / "lake", "train", "--from", "2026-10-31", "--to", "2026-11-01")
    assert code == 2
    assert "tables/training_examples partitions dt=2026-11-01" in out
    assert "run `homefeed backfill --from 2026-11-01 --to 2026-11-01` first" in out
    code, out = cli(two_days.root / "lake", "train", "--from", "2026-11-05", "--to", "2026-11-02")
    assert code == 2 and "--from 2026-11-05 is after --to 2026-11-02" in out
    code, out = cli(two_days.root / "lake", "train", "--from", "2026-11-02")
    assert code == 2 and "leave no day before the ranker's examples" in out
    code, out = cli(two_days.root / "lake", "train", "--from", "yesterday")
    assert code == 2 and "--from 'yesterday' is not a date" in out
    code, out = cli(tmp_path / "empty-lake", "models", "list")
    assert code == 0 and "no versions of model homefeed" in out


def test_train_without_job_tables_says_to_backfill(tmp_path: Path, cli: Run) -> None:
    built = build_simulated_lake(tmp_path / "raw", WORLD.model_copy(update={"days": 0.25}))
    code, out = cli(built.root / "lake", "train")
    assert code == 2
    assert "has no tables/training_examples (events 2026-11-01 to 2026-11-01)" in out
    assert "run `homefeed backfill --from 2026-11-01 --to 2026-11-01` first" in out
