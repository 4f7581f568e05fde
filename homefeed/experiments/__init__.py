"""A/B experiments: config, deterministic assignment, exposure events, analysis and alerts.

``assign(experiment, user_id)`` is all a service needs to pick a variant; ``log_exposure``
records that the variant took effect; ``compare`` turns per-user metrics (from the lake or a
simulation) into a report with intervals, lifts and a sample-ratio check.

Importing this package stays light (config.py imports its settings): NumPy, SciPy and the SDK
load only when a function below is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from homefeed.experiments.settings import ExperimentConfig, ExperimentsConfig, VariantConfig

if TYPE_CHECKING:
    from homefeed.experiments.assignment import assign, bucket
    from homefeed.experiments.exposure import exposure_event, log_exposure
    from homefeed.experiments.stats import Report, compare

_LAZY = {
    "assign": "homefeed.experiments.assignment",
    "bucket": "homefeed.experiments.assignment",
    "compare": "homefeed.experiments.stats",
    "Report": "homefeed.experiments.stats",
    "exposure_event": "homefeed.experiments.exposure",
    "log_exposure": "homefeed.experiments.exposure",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'homefeed.experiments' has no attribute {name!r}")


__all__ = [
    "ExperimentConfig",
    "ExperimentsConfig",
    "Report",
    "VariantConfig",
    "assign",
    "bucket",
    "compare",
    "exposure_event",
    "log_exposure",
]
