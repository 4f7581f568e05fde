"""Small generated training data for model tests: a simulated world, never a real dataset."""

from __future__ import annotations

from functools import cache

from homefeed.config import SimulatorConfig
from homefeed.models.data import TrainingData
from homefeed.models.from_events import TrainingDataBuilder
from homefeed.simulator import iter_events

SMALL_WORLD = SimulatorConfig.model_validate({"users": 200, "pins": 2000, "days": 2.0, "seed": 11})


@cache
def simulated_training_data(
    users: int = 200, pins: int = 2000, days: float = 2.0, seed: int = 11
) -> TrainingData:
    """The whole event stream of a small simulated world as TrainingData (cached per args)."""
    config = SimulatorConfig.model_validate(
        {"users": users, "pins": pins, "days": days, "seed": seed}
    )
    builder = TrainingDataBuilder().add_all(iter_events(config))
    return builder.build(meta={"source": "simulator", "seed": seed})
