"""The online feature store: what happened in the last minutes, for the feed being built now.

The offline jobs know everything up to the last lake hour; the online store knows what the
reaction consumer (reactions.py) applied since. Per user it holds the recent engagements, the
hidden pins, the seen pins and topic-affinity deltas; per pin, hourly counters for fresh
trending. The contract every backend honours (tests/serving/test_online_contract.py):

* ``apply(reactions)`` is idempotent by ``event_id``: a reaction applied again (a redelivered
  batch after a crash between apply and commit) changes nothing, as long as its id is among
  the user's last ``dedup_capacity`` applied ids. It returns how many reactions were new.
  Each reaction is applied atomically: a reader sees all of its effects or none.
* Recent engagements: closeups, clicks, saves and hides (not impressions), newest applied
  first, at most ``recent_capacity`` (a ring: the oldest fall off). The log keeps one user's
  events in order, so applied order is event order.
* Hidden pins: every pin the user hid (until the user's keys expire).
* Seen pins: impressions and ``mark_seen``; pin -> the latest time it was seen; at most
  ``seen_capacity`` pins, keeping the latest by time.
* ``record_served(user, pins, t)`` has the effect of applying one impression per pin at ``t``
  (seen and counted), for a feed server that applies the pages it serves itself instead of
  waiting for their impression events (see ``ReactionConsumer.skip_request_prefix``).
* Topic affinity: for each engagement, ``ACTION_WEIGHT[action]`` is added to each of the pin's
  topics, decayed by event time with ``affinity_half_life_hours``; ``user_state(now_ms=...)``
  reports the sum decayed to ``now_ms``. Out-of-order events decay correctly (the sum is the
  same whatever the apply order).
* Pin counters: impressions, clicks, saves and hides per event-time hour, the last
  ``counter_window_hours`` hours of each pin kept; ``pin_counters(pins, since_ms)`` sums the
  hours from the one holding ``since_ms`` on.
* Unknown users and pins read as empty state and zero counters, never as an error.
* Times are epoch milliseconds of event time; the store never reads the clock except for
  ``now_ms=None`` (wall clock) in ``user_state``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from homefeed.closing import Closing
from homefeed.events.validate import new_event_id
from homefeed.models.data import ACTION_WEIGHT, Action
from homefeed.serving.settings import OnlineStoreConfig

HOUR_MS = 3600 * 1000
# Pin counter columns, in order; an action outside this map does not count.
COUNTER_COLUMNS = ("impressions", "clicks", "saves", "hides")
COUNTER_OF_ACTION = {Action.IMPRESSION: 0, Action.CLICK: 1, Action.SAVE: 2, Action.HIDE: 3}
# Actions that enter the recent-engagement ring.
ENGAGEMENTS = frozenset({Action.CLOSEUP, Action.CLICK, Action.SAVE, Action.HIDE})


class OnlineStoreError(Exception):
    """The online store cannot serve the call (bad input or an unreachable backend)."""


@dataclass(frozen=True, slots=True)
class Reaction:
    """One event to apply: who did what to which pin, when, and the pin's topics."""

    event_id: str
    user_id: int
    pin_id: int
    action: Action
    time_ms: int
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.event_id:
            raise OnlineStoreError(f"reaction event_id = {self.event_id!r}: must not be empty")
        if self.user_id < 0 or self.pin_id < 0:
            raise OnlineStoreError(
                f"reaction {self.event_id}: user_id = {self.user_id}, pin_id = {self.pin_id}: "
                "ids must be >= 0"
            )
        if not isinstance(self.action, Action):
            raise OnlineStoreError(f"reaction {self.event_id}: action = {self.action!r}")


@dataclass(frozen=True)
class UserOnlineState:
    user_id: int
    recent_pins: np.ndarray  # int64, newest first
    recent_actions: np.ndarray  # int8 Action codes, aligned with recent_pins
    recent_times: np.ndarray  # int64 epoch ms, aligned with recent_pins
    hidden: frozenset[int] = frozenset()
    seen: dict[int, int] = field(default_factory=dict)  # pin -> latest time seen (ms)
    topic_affinity: dict[str, float] = field(default_factory=dict)  # decayed to now_ms

    @classmethod
    def empty(cls, user_id: int) -> UserOnlineState:
        none = np.empty(0, dtype=np.int64)
        return cls(user_id, none, np.empty(0, dtype=np.int8), none.copy())


class OnlineStore(Closing, ABC):
    """Per-user and per-pin online state; see the module docstring for the contract."""

    name: str = "abstract"
    config: OnlineStoreConfig

    @abstractmethod
    def apply(self, reactions: Sequence[Reaction]) -> int:
        """Apply a batch (one round trip on remote backends); returns how many were new."""

    @abstractmethod
    def user_state(
        self, user_ids: Sequence[int], now_ms: int | None = None
    ) -> list[UserOnlineState]:
        """The state of each user, in the order given; affinity decayed to ``now_ms``."""

    @abstractmethod
    def mark_seen(self, user_id: int, pin_ids: Sequence[int], time_ms: int) -> None:
        """Record that the user was shown these pins at ``time_ms`` (a served feed)."""

    def record_served(self, user_id: int, pin_ids: Sequence[int], time_ms: int) -> None:
        """Apply a served page's impressions: each pin seen at ``time_ms`` and counted.

        The default applies one impression reaction per pin (one round trip on remote
        backends); ``LocalOnlineStore`` does the same without the reaction objects.
        """
        (uid,) = check_ids("user_id", [user_id])
        pins = check_ids("pin_ids", pin_ids)
        prefix = f"served-{new_event_id()}-"
        self.apply(
            [Reaction(f"{prefix}{i}", uid, p, Action.IMPRESSION, int(time_ms)) for i, p in
             enumerate(pins)]
        )  # fmt: skip

    @abstractmethod
    def pin_counters(self, pin_ids: Sequence[int], since_ms: int) -> np.ndarray:
        """int64 array (len(pin_ids), 4): COUNTER_COLUMNS summed over hours >= since_ms's."""

    def close(self) -> None:
        """Release connections (remote) or write the snapshot (local)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def decay_factor(dt_ms: float, half_life_ms: float) -> float:
    """2^(-dt/half_life): the weight left of something ``dt_ms`` old."""
    return float(2.0 ** (-dt_ms / half_life_ms))


def action_weight(action: Action) -> float:
    return ACTION_WEIGHT.get(action, 0.0)


def check_ids(name: str, ids: Sequence[int]) -> list[int]:
    """Ids as Python ints; a clear error naming the argument for anything else."""
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or i < 0:
            raise OnlineStoreError(f"{name}: {i!r} is not a non-negative integer id")
        out.append(int(i))
    return out
