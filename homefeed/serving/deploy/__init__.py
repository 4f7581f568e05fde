"""Canary deploys: route a share of users to a new model version, judge it, promote or roll back.

``state.py`` (the deploy state in the lake), ``router.py`` (the ``FeedBackend`` that splits
users between the stable version and the canary), ``signals.py`` (impressions, clicks and saves
per arm from the event log), ``judge.py`` (the verdict, pure functions), ``controller.py``
(start, rollback, and the step that applies verdicts), ``loop.py`` (all of it wired in a
serving process).
"""

import importlib
from typing import Any

# Imported lazily: homefeed.config imports settings.py from this package, and the modules
# below import the config tree (a cycle if they loaded with the package).
_WHERE = {
    "DeployController": "controller", "DeployError": "controller", "registry_loader": "controller",
    "ArmStats": "judge", "Verdict": "judge", "DeployLoop": "loop",
    "DeployRouter": "router", "RoutingTable": "router", "in_canary": "router",
    "DeployConfig": "settings", "DeploySignals": "signals", "DeployState": "state",
    "DeployStore": "state",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "ArmStats",
    "DeployConfig",
    "DeployController",
    "DeployError",
    "DeployLoop",
    "DeployRouter",
    "DeploySignals",
    "DeployState",
    "DeployStore",
    "RoutingTable",
    "Verdict",
    "in_canary",
    "registry_loader",
]
