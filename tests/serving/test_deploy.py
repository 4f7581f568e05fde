"""Canary deploys: routing, the judge, the state, and the whole loop with simulated users.

The end-to-end tests serve feeds through ``FeedService`` over a ``DeployRouter`` whose arms are
two backends of clearly different quality on one simulated world (one ranks pins by how well
they match the user, the other worst match first). Simulated users (``UserModel.react``) react
to each page; the service logs impressions and the users' clicks and saves go through the SDK
into a local event log, which the judge reads as consumer group ``deploy-judge``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import orjson
import pytest
import typer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from homefeed.cli.common import settings
from homefeed.cli.deploy import deploy_app
from homefeed.config import LocalLogConfig, SdkConfig, SimulatorConfig
from homefeed.events.sdk import EventLogger
from homefeed.lake.local import LocalLake
from homefeed.log.local import LocalLog
from homefeed.models.data import TrainingData
from homefeed.models.registry import ModelRegistry
from homefeed.serving.api.backend import CandidatePool, FeedBackend, SimpleBackend
from homefeed.serving.api.service import FeedError, FeedService
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.serving.deploy import (
    ArmStats,
    DeployConfig,
    DeployController,
    DeployError,
    DeployRouter,
    DeploySignals,
    DeployStore,
    RoutingTable,
    in_canary,
)
from homefeed.serving.deploy.judge import attribute, engagement_test, judge, per_user
from homefeed.serving.deploy.loop import DeployLoop
from homefeed.serving.deploy.metrics import DeployCollector
from homefeed.serving.deploy.router import Arm
from homefeed.simulator import UserModel, World
from homefeed.testing.models import simulated_training_data

MODEL = "homefeed"  # the config's default models.name, so the CLI finds the same state
GOOD, BAD, WORSE = "v0001", "v0002", "v0003"
WORLD = {"users": 200, "pins": 2000, "days": 2.0, "seed": 11}  # simulated_training_data()'s
JUDGE = DeployConfig(
    bake_minutes=10,
    max_bake_minutes=60,
    min_impressions=1500,
    min_requests=50,
    max_p99_ratio=1000.0,  # in-process latencies are noise here; the guardrail has a unit test
    check_interval_s=0.05,
)


# ---- the judge, pure ---------------------------------------------------------------------------


def arm(version: str, rate: float, users: int = 400, seed: int = 0, **kw: float) -> ArmStats:
    """``users`` users with 5-30 impressions each, engaging with probability ``rate``."""
    rng = np.random.default_rng(seed)
    imps = rng.integers(5, 30, users)
    engaged = rng.binomial(imps, rate)
    counters = {"requests": 1000, "errors": 0, "p99_ms": 20.0} | kw
    return ArmStats(version, int(counters["requests"]), int(counters["errors"]),
                    float(counters["p99_ms"]), imps, engaged)  # fmt: skip


def test_the_judge_waits_for_impressions_then_bake_time_then_promotes() -> None:
    few = judge(arm("s", 0.1, users=20), arm("c", 0.1, users=20), JUDGE, 30)
    assert few.decision == "wait" and "impressions" in few.reasons[0]
    baking = judge(arm("s", 0.1), arm("c", 0.12, seed=1), JUDGE, 5)
    assert baking.decision == "wait" and baking.reasons[0].startswith("baking: 5.0 of 10")
    done = judge(arm("s", 0.1), arm("c", 0.12, seed=1), JUDGE, 11)
    assert done.decision == "promote", done.reasons
    assert done.figures["canary"]["impressions"] > JUDGE.min_impressions
    assert done.figures["engagement"]["p_no_worse"] < 0.05


def test_a_clearly_worse_canary_is_rolled_back_before_the_bake_time() -> None:
    verdict = judge(arm("s", 0.10), arm("c", 0.06, seed=1), JUDGE, 1)
    assert verdict.decision == "rollback"
    assert "worse" in verdict.reasons[0]
    assert verdict.figures["engagement"]["ratio"] < 0.7


def test_noise_does_not_promote_a_canary_below_the_floor() -> None:
    # True ratio 0.9 < 0.95: promotion needs p < 0.05 for "no worse", so it happens rarely.
    promoted = sum(
        judge(arm("s", 0.1, seed=2 * i), arm("c", 0.09, seed=2 * i + 1), JUDGE, 60).decision
        == "promote"
        for i in range(60)
    )
    assert promoted <= 3
    # And an equally good canary past max_bake_minutes with too few users is not promoted.
    small = judge(arm("s", 0.1, users=100), arm("c", 0.1, users=100, seed=9), JUDGE, 60)
    assert small.decision == "rollback" and "inconclusive" in small.reasons[0]


def test_the_guardrails_roll_back_on_errors_and_latency() -> None:
    errors = judge(arm("s", 0.1), arm("c", 0.1, seed=1, errors=50), JUDGE, 1)
    assert errors.decision == "rollback" and "error rate" in errors.reasons[0]
    slow = DeployConfig(max_p99_ratio=1.5)
    latency = judge(arm("s", 0.1), arm("c", 0.1, seed=1, p99_ms=45.0), slow, 1)
    assert latency.decision == "rollback" and "p99 latency 45.0 ms" in latency.reasons[0]
    # Below min_requests the guardrails do not fire yet.
    early = judge(arm("s", 0.1, requests=10), arm("c", 0.1, requests=10, errors=5), JUDGE, 1)
    assert early.decision != "rollback"


def test_engagement_variance_counts_users_not_impressions() -> None:
    # One user with every engagement: the rate is the same as evenly spread, the evidence not.
    even = ArmStats("e", user_impressions=np.full(100, 10), user_engagements=np.full(100, 1))
    lumpy = ArmStats("l", user_impressions=np.full(100, 10),
                     user_engagements=np.r_[np.full(10, 10), np.zeros(90, int)])  # fmt: skip
    base = arm("s", 0.1)
    assert engagement_test(base, even, 0.95).canary_rate == pytest.approx(0.1)
    assert engagement_test(base, lumpy, 0.95).canary_rate == pytest.approx(0.1)
    assert abs(engagement_test(base, lumpy, 0.95).z) < abs(engagement_test(base, even, 0.95).z)


def test_attribution_joins_by_user_and_pin_within_the_window() -> None:
    imps = {"user": np.array([1, 1, 2, 1]), "pin": np.array([10, 10, 10, 11]),
            "time_ms": np.array([1000, 5000, 1000, 1000])}  # fmt: skip
    eng = {"user": np.array([1, 1, 2, 3, 1, 2]), "pin": np.array([10, 10, 10, 10, 11, 10]),
           "time_ms": np.array([6000, 2000, 999_999, 6000, 2000, 500])}  # fmt: skip
    hit = attribute(imps, eng, window_ms=60_000, skew_ms=600)
    # latest impression before; the earlier one; outside the window; unknown user; other pin;
    # an engagement 500 ms before its impression (within the clock skew).
    assert hit.tolist() == [1, 0, -1, -1, 3, 2]
    counts, engaged = per_user(imps["user"][:3], imps["user"][hit[hit >= 0][:2]])
    assert counts.tolist() == [2, 1] and engaged.tolist() == [2, 0]


# ---- routing -----------------------------------------------------------------------------------


def test_routing_share_matches_the_percent_and_is_sticky() -> None:
    users = np.arange(100_000)
    share = np.mean([in_canary(int(u), "v0002", 10) for u in users])
    assert 0.095 < share < 0.105
    other = np.array([in_canary(int(u), "v0003", 10) for u in users[:20_000]])
    same = np.array([in_canary(int(u), "v0002", 10) for u in users[:20_000]])
    assert 0.5 < np.mean(other == same) < 0.95  # another canary salts another set of users
    assert not any(in_canary(int(u), "v0002", 0) for u in users[:1000])
    with pytest.raises(ValueError, match="canary percent = 120"):
        in_canary(1, "v0002", 120)

    stable, canary = object(), object()
    router = DeployRouter(
        RoutingTable(Arm(GOOD, stable), Arm(BAD, canary), 10.0)  # type: ignore[arg-type]
    )
    first = {}
    for user in range(2000):
        with router.route(user) as backend:
            first[user] = backend
    for user in range(2000):  # a second pass lands every user on the same arm
        with router.route(user) as backend:
            assert backend is first[user]
    assert 150 < sum(b is canary for b in first.values()) < 250
    requests = router.counters()
    assert requests[GOOD][0] + requests[BAD][0] == 4000


def test_the_arms_are_on_metrics_per_deploy() -> None:
    router = DeployRouter(
        RoutingTable(Arm(GOOD, object()), Arm(BAD, object()), 50.0, "d1")  # type: ignore[arg-type]
    )
    for user in range(200):
        with router.route(user):
            pass
    registry = CollectorRegistry()
    registry.register(DeployCollector(router))
    samples = {
        (s.name, s.labels.get("arm", "")): s
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    stable = samples[("homefeed_deploy_requests_total", "stable")]
    canary = samples[("homefeed_deploy_requests_total", "canary")]
    assert stable.labels == {"deploy_id": "d1", "version": GOOD, "arm": "stable"}
    assert stable.value + canary.value == 200 and canary.labels["version"] == BAD
    assert samples[("homefeed_deploy_errors_total", "canary")].value == 0
    assert samples[("homefeed_deploy_p99_seconds", "stable")].value >= 0
    assert samples[("homefeed_deploy_canary_percent", "")].value == 50.0


# ---- the simulated service ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(SimulatorConfig.model_validate(WORLD))


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return simulated_training_data(**WORLD)


class TaggedBackend(SimpleBackend):
    """Ranks pins with ``sign * match``; tags pools so a request split across arms fails."""

    def __init__(self, data: TrainingData, world: World, version: str, sign: float) -> None:
        super().__init__(data, {}, scorer=self._score, model_version=version)
        self.world, self.sign = world, sign
        self.delay_s = 0.0

    def _score(self, pool: CandidatePool) -> np.ndarray:
        match = self.world.match(pool.user_id, pool.pins)
        return np.asarray(self.sign * match * (0.5 + self.world.pin_quality[pool.pins]))

    def candidates(self, user_id: int, now_ms: int) -> CandidatePool:
        if self.delay_s:
            time.sleep(self.delay_s)  # widens the window in which a swap can hit a request
        return replace(super().candidates(user_id, now_ms), state=self.model_version)

    def rank(self, pool: CandidatePool) -> np.ndarray:
        if pool.state != self.model_version:
            raise AssertionError(f"pool of {pool.state} ranked by {self.model_version}")
        return super().rank(pool)


@dataclass
class Rollout:
    """A lake with a registry and deploy state, a local log, the routed service, the loop."""

    root: Path
    registry: ModelRegistry
    controller: DeployController
    router: DeployRouter
    service: FeedService
    logger: EventLogger
    users: UserModel
    backends: dict[str, TaggedBackend]
    skip_s: list[float]  # the controller's clock runs this far ahead of the wall clock

    def traffic(self, rounds: int, user_ids: np.ndarray) -> None:
        """Every user opens the feed ``rounds`` times and reacts to what the service served."""
        for _ in range(rounds):
            for user in user_ids.tolist():
                page = self.service.feed(user, 25, None)
                self.service.log_impressions(self.service.impressions(page))
                reactions = self.users.react(
                    user, [item.pin_id for item in page.items], request_id=page.request_id,
                    model_version=page.model_version, now=self.now(),
                )  # fmt: skip
                # The service logged the impressions; the client sends what the user did.
                self.logger.log_many(e for e in reactions if e["event_type"] != "impression")
        self.logger.flush()

    def now(self) -> float:
        """The clock of the service, the users and the controller: minutes can be skipped."""
        return time.time() + self.skip_s[0]

    def advance(self, minutes: float) -> None:
        self.skip_s[0] += minutes * 60


@pytest.fixture
def rollout(tmp_path: Path, world: World, data: TrainingData) -> Iterator[Rollout]:
    lake = LocalLake(tmp_path / "lake")
    registry = ModelRegistry(lake, MODEL)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for version in (GOOD, BAD, WORSE):
        (bundle / "ranker.txt").write_text(version)
        assert registry.register(bundle, {}, {"start": "a", "end": "b"}, "test") == version
    backends = {
        GOOD: TaggedBackend(data, world, GOOD, 1.0),
        BAD: TaggedBackend(data, world, BAD, -1.0),
        WORSE: TaggedBackend(data, world, WORSE, -1.0),
    }
    event_log = LocalLog(LocalLogConfig(path=str(tmp_path / "log"), fsync="never"))
    logger = EventLogger(event_log, config=SdkConfig(linger_ms=10), strict=True)
    signals = DeploySignals(event_log)
    router = DeployRouter.single(BAD, backends[BAD])
    skip = [0.0]
    controller = DeployController(
        DeployStore(lake, MODEL), registry, JUDGE, router=router, signals=signals,
        loader=backends.__getitem__, clock=lambda: time.time() + skip[0],
    )  # fmt: skip
    service = FeedService(
        router, logger, FeedServiceConfig(),  # type: ignore[call-arg]
        clock_ms=lambda: int((time.time() + skip[0]) * 1000),
    )  # fmt: skip
    users = UserModel(world, seed=5)
    yield Rollout(tmp_path, registry, controller, router, service, logger, users, backends, skip)
    logger.close()
    signals.close()
    event_log.close()


def known_users(backend: FeedBackend, n: int) -> np.ndarray:
    return np.array([u for u in range(n) if backend.known_user(u)], dtype=np.int64)


def run_until_decided(r: Rollout, users: np.ndarray, max_rounds: int = 8) -> list[str]:
    decisions: list[str] = []
    for _ in range(max_rounds):
        r.traffic(1, users)
        verdict = r.controller.check()
        assert verdict is not None
        decisions.append(verdict.decision)
        if verdict.decision != "wait":
            break
        r.advance(JUDGE.bake_minutes / 2)
    return decisions


def cli(root: Path) -> Callable[..., tuple[int, str]]:
    config = root / "homefeed.toml"
    config.write_text(f'[lake]\nuri = "{root / "lake"}"\n')
    app = typer.Typer(pretty_exceptions_enable=False)
    app.add_typer(deploy_app, name="deploy")

    @app.callback()
    def main(path: Annotated[Path, typer.Option("--config")]) -> None:
        settings.config_path = path
        settings.reset()

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["--config", str(config), "deploy", *args])
        return result.exit_code, result.output

    return run


def test_a_better_canary_is_promoted_and_a_worse_one_rolled_back(rollout: Rollout) -> None:
    r = rollout
    r.registry.promote(BAD)
    users = known_users(r.backends[BAD], 200)
    assert len(users) > 150

    started = r.controller.start(GOOD, 30, bake_minutes=10)
    assert (started.status, started.stable, started.canary) == ("baking", BAD, GOOD)
    decisions = run_until_decided(r, users)
    assert decisions[-1] == "promote", r.controller.status().verdicts[-1]
    assert decisions[0] == "wait"  # never before the bake time
    state = r.controller.status()
    assert (state.status, state.stable, state.canary) == ("promoted", GOOD, None)
    assert r.registry.production() == GOOD
    assert r.router.table.canary is None and r.router.table.stable.version == GOOD
    figures = state.history[-1]["figures"]
    assert figures["canary"]["engagement_rate"] > figures["stable"]["engagement_rate"]
    canary_users = figures["canary"]["users"]
    assert 0.2 < canary_users / (canary_users + figures["stable"]["users"]) < 0.4

    r.controller.start(WORSE, 30, bake_minutes=10)
    decisions = run_until_decided(r, users)
    assert decisions[-1] == "rollback", r.controller.status().verdicts[-1]
    state = r.controller.status()
    assert (state.status, state.stable, state.canary) == ("rolled_back", GOOD, None)
    assert r.registry.production() == GOOD  # a rollback leaves the registry alone
    assert r.router.table.canary is None and r.router.table.stable.version == GOOD
    assert "worse" in state.history[-1]["reasons"][0]

    run = cli(r.root)
    code, out = run("history")
    assert code == 0, out
    assert f"{BAD}" in out and "promoted" in out and f"{WORSE}" in out and "rolled_back" in out
    code, out = run("rollback", "--reason", "late regression")
    assert code == 0, out
    assert f"stable is {BAD}" in out
    assert r.registry.production() == BAD
    r.controller.sync()
    assert r.router.table.stable.version == BAD
    assert [h["outcome"] for h in r.controller.status().history] == [
        "promoted", "rolled_back", "rolled_back"
    ]  # fmt: skip


def test_impressions_in_the_log_carry_the_arm_that_served_them(rollout: Rollout) -> None:
    r = rollout
    r.registry.promote(BAD)
    r.controller.start(GOOD, 50)
    r.controller.sync()
    users = known_users(r.backends[BAD], 60)
    r.traffic(1, users)
    consumer = LocalLog(LocalLogConfig(path=str(r.root / "log"))).consumer(
        "test-reader", ["events.impression"]
    )
    served: dict[int, set[str]] = {}
    while records := consumer.poll(10_000, 0.0):
        for record in records:
            event = orjson.loads(record.value)
            served.setdefault(event["user_id"], set()).add(event["model_version"])
    assert set(served) == set(users.tolist())
    for user, versions in served.items():
        assert versions == {GOOD if in_canary(user, GOOD, 50) else BAD}


def test_a_swap_under_concurrent_requests_drops_nothing(rollout: Rollout) -> None:
    r = rollout
    for backend in r.backends.values():
        backend.delay_s = 0.0005
    users = known_users(r.backends[BAD], 100)
    served: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def client(offset: int) -> None:
        i = offset
        while not stop.is_set():
            try:
                page = r.service.feed(int(users[i % len(users)]), 10, None)
                served.append(page.model_version)
            except BaseException as e:  # any failure is the finding
                failures.append(e)
            i += 1

    initial = r.router.table
    threads = [threading.Thread(target=client, args=(k * 7,)) for k in range(4)]
    for t in threads:
        t.start()
    tables = [
        RoutingTable(Arm(BAD, r.backends[BAD]), Arm(GOOD, r.backends[GOOD]), 50, "a"),
        RoutingTable(Arm(GOOD, r.backends[GOOD]), Arm(WORSE, r.backends[WORSE]), 30, "b"),
        RoutingTable(Arm(WORSE, r.backends[WORSE])),
    ]
    swaps = 0
    while swaps < 300 or len(set(served)) < 3:
        r.router.swap(tables[swaps % 3])
        swaps += 1
        time.sleep(0.001)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    arms = [arm for table in [initial, *tables] for arm in table.arms().values()]
    counted = sum(arm.counters.snapshot()[0] for arm in arms)
    assert counted == len(served) > 0  # every request started finished, on one arm
    assert set(served) == {GOOD, BAD, WORSE}


def test_deploy_commands_start_status_and_roll_back(rollout: Rollout) -> None:
    r = rollout
    run = cli(r.root)
    code, out = run(GOOD, "--canary", "10")
    assert code == 2 and "no stable version" in out
    r.registry.promote(BAD)
    code, out = run("v0009", "--canary", "10")
    assert code == 2 and "has no version v0009" in out
    code, out = run(GOOD, "--canary", "0")
    assert code == 2 and "--canary 0" in out
    code, out = run(GOOD, "--canary", "10", "--bake-minutes", "15")
    assert code == 0, out
    assert f"canary {GOOD} serves 10% of users" in out
    code, out = run(WORSE, "--canary", "10")
    assert code == 2 and "already baking" in out
    code, out = run("status")
    assert code == 0 and "baking" in out and GOOD in out and "10%" in out

    r.controller.sync()  # the serve process picks the deploy up
    assert r.router.table.canary is not None and r.router.table.canary.version == GOOD
    assert r.router.table.percent == 10
    code, out = run("rollback")
    assert code == 0, out
    assert f"stable is {BAD}" in out
    r.controller.sync()
    assert r.router.table.canary is None and r.router.table.stable.version == BAD
    state = r.controller.status()
    assert (state.status, state.stable, r.registry.production()) == ("rolled_back", BAD, BAD)
    with pytest.raises(DeployError, match="is already the stable version"):
        r.controller.start(BAD, 10)


def test_unknown_users_are_client_errors_not_canary_errors(rollout: Rollout) -> None:
    r = rollout
    r.registry.promote(BAD)
    r.controller.start(GOOD, 50)
    r.controller.sync()
    for user in range(10_000, 10_050):
        with pytest.raises(FeedError):
            r.service.feed(user, 10, None)
    counters = r.router.counters()
    assert sum(c[0] for c in counters.values()) == 50
    assert sum(c[1] for c in counters.values()) == 0


def test_the_deploy_loop_serves_a_baking_canary_from_its_first_request(rollout: Rollout) -> None:
    r = rollout
    r.registry.promote(BAD)
    r.controller.start(GOOD, 50)
    lake = LocalLake(r.root / "lake")
    event_log = LocalLog(LocalLogConfig(path=str(r.root / "log"), fsync="never"))
    config = JUDGE.model_copy(update={"check_interval_s": 3600})
    assert r.controller.signals is not None
    r.controller.signals.close()  # the local log has one live consumer per group
    try:
        with DeployLoop(lake, event_log, MODEL, r.backends.__getitem__, config) as loop:
            table = loop.router.table
            assert table.stable.version == BAD and table.canary is not None
            assert (table.canary.version, table.percent) == (GOOD, 50)
            assert loop.router.table.deploy_id == r.controller.status().deploy_id
        with pytest.raises(DeployError, match="nothing to serve"):
            DeployLoop(lake, event_log, "other", r.backends.__getitem__, config)
    finally:
        event_log.close()
