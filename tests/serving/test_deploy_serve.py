"""`homefeed deploy serve` serves each version as `homefeed serve` does: reactions reach it.

The real command runs against a local lake holding a registered, promoted bundle; only the
two slow edges are replaced: the training window's data comes from the simulated world
(no lake jobs), and instead of uvicorn the app is driven with a TestClient.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from homefeed.cli import deploy as deploy_cli
from homefeed.cli.common import settings
from homefeed.config import ModelsConfig, RankerConfig, SourceConfig
from homefeed.lake.local import LocalLake
from homefeed.models.data import TrainingData
from homefeed.models.pipeline import train_bundle
from homefeed.models.registry import ModelRegistry
from homefeed.serving.api import cli as serve_cli
from homefeed.serving.api.online_backend import OnlineBackend
from homefeed.serving.deploy.router import DeployRouter, stable_pin_topics
from homefeed.serving.online.reactions import pin_topics_from_catalogue
from homefeed.testing.events import valid_event
from homefeed.testing.models import simulated_training_data
from tests.serving.conftest import TestClient

MODELS = ModelsConfig(
    sources={"following": SourceConfig(k=100), "pixie": SourceConfig(k=150),
             "trending": SourceConfig(k=60)},
    ranker=RankerConfig(rounds=20, min_data_in_leaf=20, learning_rate=0.1),
)  # fmt: skip
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return simulated_training_data()


def _rfc3339_now() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _drive(app: Any, seen: dict[str, Any], user: int) -> None:
    """What a client does against the served app: a page, a hide, pages until it is gone."""
    client = TestClient(app)
    router = app.state.service.backend
    assert isinstance(router, DeployRouter)
    seen["backend"] = router.table.stable.backend
    first = client.get(f"/v1/users/{user}/feed", params={"limit": 10}).json()
    hidden = first["items"][0]["pin_id"]
    seen["first"] = [i["pin_id"] for i in first["items"]]
    event = valid_event("hide", user_id=user, pin_id=hidden, event_time=_rfc3339_now())
    assert client.post("/v1/events", json={"events": [event]}).json()["accepted"] == 1
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        # A new session each time; the hidden pin was served, so only the hide can keep it
        # out of the *session* (served pins are excluded too): check the exclusions instead.
        now_ms = int(time.time() * 1000)
        if hidden in router.exclusions(user, now_ms).hidden.tolist():
            seen["hidden_at"] = time.monotonic()
            break
        time.sleep(0.02)
    seen["hidden"] = hidden
    seen["store_counts"] = seen["backend"].store.pin_counters(seen["first"], since_ms=0)
    seen["topics"] = stable_pin_topics(router)(seen["first"])
    seen["metrics"] = client.get("/metrics").text


def test_deploy_serve_reacts_to_hides_and_records_its_pages(
    data: TrainingData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = LocalLake(tmp_path / "lake")
    registry = ModelRegistry(lake, "homefeed")
    train_bundle(data, MODELS).save(tmp_path / "bundle")
    version = registry.register(tmp_path / "bundle", {}, {"start": "a", "end": "b"}, "test")
    registry.promote(version)
    config = tmp_path / "homefeed.toml"
    config.write_text(
        f'[lake]\nuri = "{tmp_path / "lake"}"\n[log.local]\npath = "{tmp_path / "log"}"\n'
        "[serving.api]\ncompile_ranker = false\n"
    )
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    user = int(users[np.argmax(counts)])
    seen: dict[str, Any] = {}
    monkeypatch.setattr(deploy_cli, "_training_data", lambda registry, version: data)
    monkeypatch.setattr(serve_cli, "run_uvicorn", lambda app, *a, **k: _drive(app, seen, user))

    app = typer.Typer(pretty_exceptions_enable=False)
    app.add_typer(deploy_cli.deploy_app, name="deploy")

    @app.callback()
    def main() -> None:
        settings.config_path = config
        settings.reset()

    result = CliRunner().invoke(app, ["deploy", "serve"])
    assert result.exit_code == 0, result.output
    assert isinstance(seen["backend"], OnlineBackend) and seen["backend"].record_served
    assert seen["backend"].model_version == version
    assert "hidden_at" in seen, "the hide never reached the routed service's exclusions"
    # The served page was applied as served: one impression per pin, seen.
    assert seen["store_counts"][:, 0].tolist() == [1] * len(seen["first"])
    # The consumer's topic lookup follows the stable version's catalogue.
    assert seen["topics"] == pin_topics_from_catalogue(data.pins)(seen["first"])
    assert any(seen["topics"])
    # The router's arms are on /metrics (the first page was routed through the stable arm).
    line = next(x for x in seen["metrics"].splitlines() if x.startswith("homefeed_deploy_requests"))
    assert f'version="{version}"' in line and 'arm="stable"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 1
