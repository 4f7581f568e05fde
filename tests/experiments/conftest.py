"""Config with an [experiments] section, whether or not HomefeedConfig has the field yet."""

from __future__ import annotations

import pytest
from pydantic import Field

import homefeed.config
from homefeed.experiments.settings import ExperimentsConfig


class _WithExperiments(homefeed.config.HomefeedConfig):
    experiments: ExperimentsConfig = Field(default_factory=ExperimentsConfig)  # type: ignore[arg-type]


@pytest.fixture
def experiments_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_config validates against this subclass (identical once the lead adds the field)."""
    if "experiments" not in homefeed.config.HomefeedConfig.model_fields:
        monkeypatch.setattr(homefeed.config, "HomefeedConfig", _WithExperiments)
