"""Shared worlds and checks for the simulator tests (small, so the suite stays fast)."""

from __future__ import annotations

from typing import Any

import numpy as np

from homefeed.config import SimulatorConfig
from homefeed.events import EventValidator, Rejection, SchemaRegistry
from homefeed.simulator import UserModel, World

SMALL = SimulatorConfig(users=50, pins=300, days=1.0, seed=3)
MEDIUM = SimulatorConfig(users=300, pins=3000, days=1.0, seed=5)
VALIDATOR = EventValidator(SchemaRegistry())
WORLD = World.generate(MEDIUM)
NOW = WORLD.start_ms / 1000 + 3600  # epoch seconds, one hour into the window


def rejections(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Rejection]]:
    return [(e, r) for e in events if isinstance(r := VALIDATOR.check(e), Rejection)]


def pins_by_match(user: int, count: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """The user's ``count`` best- and worst-matching pins, best first."""
    order = np.argsort(-WORLD.match(user, np.arange(WORLD.pins)), kind="stable")
    return order[:count], order[-count:]


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == kind]


def fresh_model(seed: int = 0) -> UserModel:
    """A model whose users remember nothing yet."""
    return UserModel(WORLD, seed=seed)
