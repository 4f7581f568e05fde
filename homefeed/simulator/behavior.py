"""How simulated users react to a feed they are shown.

``UserModel.react`` takes any ranked feed (from the baseline here, or from a model later) and
returns the events the user emits: impressions for the pins they scroll past, then closeups,
saves, clicks and hides. The knobs, in ``Behaviour``:

* **interest match**: engagement grows with the user's latent interest in the pin's topic
  (``World.match``; 1.0 is an average topic for that user) and with the pin's quality;
* **position bias**: attention decays down the feed, and the user stops scrolling after a
  geometric number of pins, so lower positions are seen less and engaged with less;
* **fatigue**: a pin seen before, or the n-th pin of one topic in the same feed, is less
  engaging; recent exposures per user are remembered (bounded);
* **hides**: poorly matched and repeated pins get hidden; a hidden pin is never engaged again;
* **follows**: a save sometimes leads to following the pin's creator.

A feed that ranks by the user's interests therefore earns more saves per user than one that
does not: the property the online experiments of later stages measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from homefeed.simulator.timefmt import format_ms
from homefeed.simulator.world import World

SEEN_MEMORY = 500  # exposures remembered per user
CLIENT = {"platform": "simulator", "app_version": "sim-1"}


@dataclass(frozen=True)
class Behaviour:
    stop_rate: float = 0.05  # chance of leaving the feed after each pin
    closeup_rate: float = 0.08  # closeups per pin at match 1, quality 0.5, top position
    save_given_closeup: float = 0.35
    click_given_closeup: float = 0.3
    hide_rate: float = 0.015  # hides per pin at match 0
    position_decay: float = 0.04
    repeat_fatigue: float = 0.4  # engagement multiplier per earlier exposure of the pin
    topic_fatigue: float = 0.92  # multiplier per earlier pin of the same topic in the feed
    follow_after_save: float = 0.05
    seconds_per_pin: float = 2.5


class UserModel:
    """Simulated users with memory of what they saw, hid, saved and follow."""

    def __init__(self, world: World, behaviour: Behaviour | None = None, seed: int = 0) -> None:
        self.world = world
        self.b = behaviour or Behaviour()
        self.rng = np.random.default_rng([world.seed, seed, 17])
        self.seen: dict[int, dict[int, int]] = {}
        self.hidden: dict[int, set[int]] = {}
        self.following: list[set[int]] = [set(f.tolist()) for f in world.follows_users]
        self.counter = 0
        self.id_prefix = f"sim-{world.seed}-{seed}-"

    def probabilities(self, user: int, pins: np.ndarray) -> dict[str, np.ndarray]:
        """Per-pin chances of closeup, save and click (given closeup) and hide, at each position."""
        w, b = self.world, self.b
        match = w.match(user, pins)
        relevance = np.power(match, 0.8) * (0.3 + 1.4 * w.pin_quality[pins])
        seen = self.seen.get(user, {})
        repeats = np.array([seen.get(int(p), 0) for p in pins], dtype=np.float64)
        fatigue = np.power(b.repeat_fatigue, repeats) * np.power(
            b.topic_fatigue, _topic_rank(w.pin_topic[pins])
        )
        position = 1.0 / (1.0 + b.position_decay * np.arange(len(pins)))
        closeup = 1.0 - np.exp(-b.closeup_rate * relevance * fatigue * position)
        save = np.clip(b.save_given_closeup * 2 * relevance / (1 + relevance), 0, 0.95)
        click = np.clip(b.click_given_closeup * (0.5 + w.pin_quality[pins]), 0, 0.95)
        hide = np.clip(b.hide_rate * np.exp(-1.5 * match) * (1 + 2 * (repeats > 0)), 0, 0.5)
        return {"closeup": closeup, "save": save, "click": click, "hide": hide}

    def react(
        self,
        user_id: int,
        pins: Sequence[int] | np.ndarray,
        *,
        request_id: str,
        sources: Sequence[str] | str = "unknown",
        model_version: str = "unknown",
        now: float,
        surface: str = "home_feed",
    ) -> list[dict[str, Any]]:
        """The events ``user_id`` emits when shown ``pins`` (ranked, top first) at ``now``.

        ``now`` is epoch seconds. Only the pins the user scrolls to get impressions; events
        come in time order. Pins the user hid before are skipped without an impression.
        """
        hidden = self.hidden.setdefault(user_id, set())
        feed = np.array([p for p in pins if int(p) not in hidden], dtype=np.int64)
        source_of = _sources(pins, sources)
        viewed = feed[: min(len(feed), int(self.rng.geometric(self.b.stop_rate)))]
        if not len(viewed):
            return []
        chance = self.probabilities(user_id, viewed)
        draws = self.rng.random((4, len(viewed)))
        events: list[dict[str, Any]] = []
        base_ms = int(now * 1000)
        for i, pin in enumerate(viewed.tolist()):
            at = base_ms + int(i * self.b.seconds_per_pin * 1000)
            source = source_of.get(pin, "unknown")
            events.append(self._event("impression", user_id, at, surface, pin_id=pin,
                                      request_id=request_id, position=i, candidate_source=source,
                                      model_version=model_version))  # fmt: skip
            if draws[0, i] < chance["closeup"][i]:
                events += self._engage(user_id, pin, at, surface, draws[1:, i], chance, i)
            elif draws[3, i] < chance["hide"][i]:
                hidden.add(pin)
                events.append(self._event("hide", user_id, at + 800, surface, pin_id=pin,
                                          reason="not_interested"))  # fmt: skip
        self._remember(user_id, viewed)
        return events

    def _engage(
        self, user: int, pin: int, at: int, surface: str, draws: np.ndarray, chance: dict, i: int
    ) -> list[dict[str, Any]]:
        events = [self._event("closeup", user, at + 700, surface, pin_id=pin,
                              duration_ms=int(2000 + 8000 * draws[0]))]  # fmt: skip
        if draws[0] < chance["save"][i]:
            boards = self.world.user_boards[user]
            topic = self.world.pin_topic[pin]
            on_topic = boards[self.world.board_topic[boards] == topic]
            board = int((on_topic if len(on_topic) else boards)[0])
            events.append(self._event("save", user, at + 1500, surface, pin_id=pin, board_id=board))
            creator = int(self.world.pin_creator[pin])
            if (
                creator != user
                and creator not in self.following[user]
                and draws[2] < self.b.follow_after_save
            ):
                self.following[user].add(creator)
                events.append(self._event("follow", user, at + 1800, surface, action="follow",
                                          target_type="user", target_id=creator))  # fmt: skip
        if draws[1] < chance["click"][i]:
            events.append(self._event("click", user, at + 2200, surface, pin_id=pin))
        return events

    def _remember(self, user: int, pins: np.ndarray) -> None:
        seen = self.seen.setdefault(user, {})
        for pin in pins.tolist():
            seen[pin] = seen.pop(pin, 0) + 1  # re-inserted: dict order is recency
        while len(seen) > SEEN_MEMORY:
            del seen[next(iter(seen))]

    def _event(
        self, event_type: str, user: int, at_ms: int, surface: str, **fields: Any
    ) -> dict[str, Any]:
        self.counter += 1
        return {"event_id": f"{self.id_prefix}{self.counter}", "event_type": event_type,
                "user_id": user, "event_time": format_ms(at_ms), "surface": surface,
                "client": CLIENT, **fields}  # fmt: skip


def _topic_rank(topics: np.ndarray) -> np.ndarray:
    """For each position, how many earlier pins in the feed share its topic."""
    out = np.zeros(len(topics))
    counts: dict[int, int] = {}
    for i, t in enumerate(topics.tolist()):
        out[i] = counts.get(t, 0)
        counts[t] = counts.get(t, 0) + 1
    return out


def _sources(pins: Sequence[int] | np.ndarray, sources: Sequence[str] | str) -> dict[int, str]:
    if isinstance(sources, str):
        return {int(p): sources for p in pins}
    if len(sources) != len(pins):
        raise ValueError(f"sources has {len(sources)} entries for {len(pins)} pins")
    return {int(p): s for p, s in zip(pins, sources, strict=True)}


def expected_saves(model: UserModel, user: int, pins: np.ndarray) -> float:
    """Expected saves from showing ``pins`` (ignoring where the user stops): for checks."""
    chance = model.probabilities(user, pins)
    survive = np.power(1 - model.b.stop_rate, np.arange(len(pins)))
    return float(np.sum(survive * chance["closeup"] * chance["save"]))
