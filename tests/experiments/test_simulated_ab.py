"""An online A/B test in the simulator: users assigned by hash, each arm's feed shown through
``UserModel.react``, exposures logged through the SDK, and ``compare`` on in-memory arrays."""

from __future__ import annotations

import numpy as np
import orjson

from homefeed.config import LocalLogConfig, SimulatorConfig
from homefeed.events import EventLogger
from homefeed.experiments import ExperimentConfig, assign, compare, log_exposure
from homefeed.log.local import LocalLog
from homefeed.simulator.behavior import UserModel
from homefeed.simulator.world import World

EXPERIMENT = ExperimentConfig(
    salt="feed-match-1",
    start="2026-11-01T00:00:00Z",
    variants=[
        {"name": "control", "weight": 50, "target": "random"},
        {"name": "treatment", "weight": 50, "target": "best-match"},
    ],
)
NOW = "2026-11-01T12:00:00.000Z"


def feed(world: World, user: int, variant: str, rng: np.random.Generator) -> np.ndarray:
    pool = rng.choice(world.pins, 300, replace=False)
    if variant == "control":
        return pool[:40]
    return pool[np.argsort(-world.match(user, pool), kind="stable")[:40]]


def test_a_better_feed_wins_and_exposures_go_through_the_sdk(tmp_path):
    world = World.generate(SimulatorConfig(users=600, pins=3000, seed=5))
    users = UserModel(world, seed=1)
    rng = np.random.default_rng(9)
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "log")))
    per_user: dict[str, dict[str, list[int]]] = {
        v: {"saves": [], "impressions": []} for v in ("control", "treatment")
    }
    with EventLogger(log, partitions=2, strict=True) as logger:
        for user in range(world.users):
            variant = log_exposure(
                logger, "feed_match", EXPERIMENT, user, NOW, request_id=f"r{user}"
            )
            assert variant == assign(EXPERIMENT, user)
            events = users.react(
                user, feed(world, user, variant, rng), request_id=f"r{user}", now=1.7938e9
            )
            kinds = [e["event_type"] for e in events]
            per_user[variant]["saves"].append(kinds.count("save"))
            per_user[variant]["impressions"].append(kinds.count("impression"))
    arrays = {v: {m: np.array(x) for m, x in ms.items()} for v, ms in per_user.items()}
    report = compare(arrays, weights={"control": 50, "treatment": 50})
    saves = report.effects["saves"]["treatment"]
    assert saves.lift_ci.lo > 0 and saves.p_value < 0.01, saves
    assert report.srm is not None and not report.srm.mismatch
    with log.consumer("check", ["events.exposure"]) as consumer:
        logged: list[dict] = []
        while batch := consumer.poll(10_000, 0.5):
            logged += [orjson.loads(r.value) for r in batch]
    assert len(logged) == world.users
    assert {(e["user_id"], e["variant"]) for e in logged} == {
        (u, assign(EXPERIMENT, u)) for u in range(world.users)
    }
    log.close()
