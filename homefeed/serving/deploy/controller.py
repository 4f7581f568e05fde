"""The deploy controller: start a canary, judge it, promote or roll it back.

``start`` and ``rollback`` only write the deploy state (``state.py``); they work from any
process, the CLI included. ``check`` is the loop's step, run where the feed service runs (it
needs the router's per-arm request counters): it makes the router follow the state, reads the
event log (``signals.py``), asks the judge, records the verdict and applies it:

* promote: ``ModelRegistry.promote(canary)``, then stable = canary, the router serves it alone;
* rollback: stable unchanged (so is the registry), the router drops the canary.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homefeed.models.registry import ModelRegistry
from homefeed.serving.deploy.judge import EMPTY, ArmStats, Verdict, judge
from homefeed.serving.deploy.router import DeployRouter, Loader, canary_buckets
from homefeed.serving.deploy.settings import DeployConfig
from homefeed.serving.deploy.signals import DeploySignals
from homefeed.serving.deploy.state import DeployState, DeployStore

if TYPE_CHECKING:
    from homefeed.models.bundle import ModelBundle
    from homefeed.models.data import TrainingData
    from homefeed.serving.api.backend import FeedBackend

    # (bundle, its training window's data, version) -> the backend serving that version
    BackendFactory = Callable[[ModelBundle, TrainingData, str], FeedBackend]

log = logging.getLogger(__name__)


class DeployError(Exception):
    """A deploy command cannot be done; the message says why and what to do."""


class DeployController:
    def __init__(
        self,
        store: DeployStore,
        registry: ModelRegistry,
        config: DeployConfig | None = None,
        *,
        router: DeployRouter | None = None,
        signals: DeploySignals | None = None,
        loader: Loader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.registry = store, registry
        self.config = config or DeployConfig()  # type: ignore[call-arg]
        self.router, self.signals, self.loader = router, signals, loader
        self.clock = clock

    # ---- commands (any process) --------------------------------------------------------------

    def start(self, version: str, percent: float, bake_minutes: float | None = None) -> DeployState:
        """Start serving ``version`` to ``percent`` of users as a canary (status baking)."""
        if not 0 < percent < 100:
            raise DeployError(f"--canary {percent}: the canary share must be within (0, 100)")
        canary_buckets(percent)
        if bake_minutes is not None and bake_minutes <= 0:
            raise DeployError(f"--bake-minutes {bake_minutes}: must be positive")
        self.registry.show(version)  # it must exist: UnknownVersion names the known ones
        state = self.store.load()
        if state.baking:
            raise DeployError(
                f"{state.model}: canary {state.canary} is already baking since "
                f"{state.started_at}; wait for its verdict or `homefeed deploy rollback`"
            )
        stable = self.registry.production() or state.stable
        if stable is None:
            raise DeployError(
                f"{state.model}: no stable version to compare with: promote one first "
                "(`homefeed models promote VERSION`)"
            )
        if stable == version:
            raise DeployError(f"{state.model}: {version} is already the stable version")
        state.stable, state.canary, state.percent = stable, version, float(percent)
        state.status, state.deploy_id = "baking", uuid.uuid4().hex[:12]
        state.started_at = _iso(self.clock())
        state.bake_minutes = bake_minutes or self.config.bake_minutes
        state.verdicts = []
        return self._saved_and_routed(state)

    def rollback(self, reason: str = "manual rollback") -> DeployState:
        """Stop a baking canary; with none, return to the version promoted before the stable
        one (``ModelRegistry.rollback``), e.g. to undo a promotion that went wrong later."""
        state = self.store.load()
        if state.baking:
            state = self._finish(state, "rolled_back", [reason], {})
            self._route_now()
            return state
        production = self.registry.production()
        if state.stable is None or production != state.stable:
            raise DeployError(
                f"{state.model}: the deploy state's stable version ({state.stable or 'none'}) "
                f"is not the registry's production version ({production or 'none'}): fix that "
                "with `homefeed models promote` first"
            )
        undone = state.stable
        state.stable = self.registry.rollback()
        state.status, state.deploy_id, state.started_at = "rolled_back", None, None
        state.history.append(
            _entry(state, outcome="rolled_back", canary=undone, reasons=[reason], at=self.clock())
        )
        return self._saved_and_routed(state)

    def _saved_and_routed(self, state: DeployState) -> DeployState:
        state = self.store.save(state)
        self._route_now()
        return state

    def _route_now(self) -> None:
        """In the serving process, route by the new state at once, not at the next check."""
        if self.router is not None:
            self.sync()

    def status(self) -> DeployState:
        return self.store.load()

    # ---- the loop (where the router runs) ----------------------------------------------------

    def sync(self) -> DeployState:
        """Make the router serve what the state says; returns the state."""
        state = self.store.load()
        if self.router is None or state.stable is None:
            return state
        if self.loader is None:
            raise DeployError("a controller with a router needs a loader to load versions")
        canary = state.canary if state.baking else None
        wanted = (state.stable, canary, state.percent if canary else 0.0, state.deploy_id)
        table = self.router.table
        current = table.canary.version if table.canary else None
        if (table.stable.version, current, table.percent, table.deploy_id) != wanted:
            self.router.set_routes(*wanted, load=self.loader)
            log.info("routing %s: stable %s, canary %s at %s%%", state.model, *wanted[:3])
        return state

    def check(self) -> Verdict | None:
        """One step: follow the state, count, judge a baking canary and apply the verdict."""
        if self.router is None or self.signals is None:
            raise DeployError("judging a canary needs the feed service's router and the event log")
        state = self.sync()
        if not state.baking or state.canary is None or state.stable is None:
            return None
        started = state.started_ms()
        self.signals.follow(state.deploy_id, started, {state.stable, state.canary})
        self.signals.poll()
        stable, canary = self._arms(state.stable, state.canary)
        config = self.config.model_copy(update={"bake_minutes": state.bake_minutes})
        verdict = judge(stable, canary, config, (self.clock() * 1000 - started) / 60_000)
        self._apply(state, verdict)
        return verdict

    def run(self, stop: threading.Event) -> None:
        """``check`` every ``check_interval_s`` until ``stop`` is set; a failing step is logged."""
        while not stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("deploy check failed; retrying in %ss", self.config.check_interval_s)
            stop.wait(self.config.check_interval_s)

    def _arms(self, stable: str, canary: str) -> tuple[ArmStats, ArmStats]:
        assert self.router is not None and self.signals is not None
        counters = self.router.counters()
        users = self.signals.per_user(int(self.config.attribution_minutes * 60_000))

        def arm(version: str) -> ArmStats:
            requests, errors, p99 = counters.get(version, (0, 0, float("nan")))
            imps, engaged = users.get(version, (EMPTY, EMPTY))
            return ArmStats(version, requests, errors, p99, imps, engaged)

        return arm(stable), arm(canary)

    def _apply(self, judged: DeployState, verdict: Verdict) -> None:
        state = self.store.load()
        if state.deploy_id != judged.deploy_id or not state.baking:
            return  # rolled back (or replaced) while we judged: that write wins
        state.verdicts.append({"at": _iso(self.clock()), **verdict.to_json()})
        if verdict.decision == "wait":
            self.store.save(state)
            return
        if verdict.decision == "promote":
            assert state.canary is not None
            self.registry.promote(state.canary)
        state = self._finish(
            state,
            "promoted" if verdict.decision == "promote" else "rolled_back",
            verdict.reasons,
            verdict.figures,
        )
        self.sync()

    def _finish(
        self, state: DeployState, outcome: str, reasons: list[str], figures: dict[str, Any]
    ) -> DeployState:
        state.history.append(
            _entry(
                state,
                outcome=outcome,
                canary=state.canary,
                reasons=reasons,
                at=self.clock(),
                figures=figures,
            )
        )
        if outcome == "promoted":
            state.stable = state.canary
        state.canary, state.percent = None, 0.0
        state.status = "promoted" if outcome == "promoted" else "rolled_back"
        return self.store.save(state)


def registry_loader(
    registry: ModelRegistry,
    data_for: Callable[[str], TrainingData],
    cache_dir: Path | None = None,
    make_backend: BackendFactory | None = None,
) -> Loader:
    """Load a registered version (fetched once into ``cache_dir``) over ``data_for(version)``,
    the catalogue and users that version was trained on, as ``make_backend(bundle, data,
    version)``: a plain ``BundleBackend`` unless given (``homefeed deploy serve`` gives the
    ``OnlineBackend`` of ``homefeed serve``)."""
    from homefeed.models.bundle import ModelBundle

    root = cache_dir or Path(tempfile.mkdtemp(prefix="homefeed-deploy-"))
    build = make_backend or _bundle_backend

    def load(version: str) -> FeedBackend:
        target = root / registry.name / version
        if not (target / "bundle.json").exists():
            shutil.rmtree(target, ignore_errors=True)
            registry.fetch(version, target)
        return build(ModelBundle.load(target), data_for(version), version)

    return load


def _bundle_backend(bundle: ModelBundle, data: TrainingData, version: str) -> FeedBackend:
    from homefeed.serving.api.bundle_backend import BundleBackend

    return BundleBackend(bundle, data, model_version=version)


def _entry(
    state: DeployState,
    *,
    outcome: str,
    canary: str | None,
    reasons: list[str],
    at: float,
    figures: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "deploy_id": state.deploy_id,
        "stable": state.stable,
        "canary": canary,
        "percent": state.percent,
        "started_at": state.started_at,
        "ended_at": _iso(at),
        "outcome": outcome,
        "reasons": reasons,
        "figures": figures or {},
    }


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


__all__ = ["DeployController", "DeployError", "registry_loader"]
