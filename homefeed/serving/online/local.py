"""``LocalOnlineStore``: the embedded default, plain dicts under one lock in this process.

Good for a laptop, tests and a single-process demo; not for production: the state lives in
one process (several feed servers would each see a different store) and is lost on exit
unless ``snapshot_path`` is set, in which case ``close()`` writes it and the next open loads
it. Users are never expired here (Redis keys are); each user's state is bounded.
"""

from __future__ import annotations

import heapq
import os
import pickle
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from homefeed.models.data import Action
from homefeed.serving.online.base import (
    COUNTER_OF_ACTION,
    ENGAGEMENTS,
    HOUR_MS,
    OnlineStore,
    Reaction,
    UserOnlineState,
    action_weight,
    check_ids,
    decay_factor,
    now_ms,
)
from homefeed.serving.settings import OnlineStoreConfig

_SNAPSHOT_VERSION = 1


@dataclass
class _User:
    recent: deque[tuple[int, int, int]]  # (pin, action, time), newest on the right
    ids: OrderedDict[str, None] = field(default_factory=OrderedDict)  # applied event ids
    hidden: set[int] = field(default_factory=set)
    seen: dict[int, int] = field(default_factory=dict)
    affinity: dict[str, float] = field(default_factory=dict)
    affinity_t: int = 0  # the time the affinity values are decayed to


class LocalOnlineStore(OnlineStore):
    name = "local"

    def __init__(self, config: OnlineStoreConfig | None = None) -> None:
        self.config = config or OnlineStoreConfig()  # type: ignore[call-arg]
        self._half_life_ms = self.config.affinity_half_life_hours * HOUR_MS
        self._lock = threading.Lock()
        self._users: dict[int, _User] = {}
        self._pins: dict[int, dict[int, list[int]]] = {}  # pin -> hour -> 4 counters
        if self.config.snapshot_path and Path(self.config.snapshot_path).exists():
            self._load(Path(self.config.snapshot_path))

    def apply(self, reactions: Sequence[Reaction]) -> int:
        applied = 0
        with self._lock:
            for r in reactions:
                applied += self._apply_one(r)
        return applied

    def _apply_one(self, r: Reaction) -> int:
        user = self._user(r.user_id)
        if r.event_id in user.ids:
            return 0
        user.ids[r.event_id] = None
        if len(user.ids) > self.config.dedup_capacity:
            user.ids.popitem(last=False)
        if r.action in ENGAGEMENTS:
            user.recent.append((r.pin_id, int(r.action), r.time_ms))
        if r.action == Action.HIDE:
            user.hidden.add(r.pin_id)
        if r.action == Action.IMPRESSION:
            self._see(user, (r.pin_id,), r.time_ms)
        self._add_affinity(user, r)
        self._count(r)
        return 1

    def _user(self, user_id: int) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(deque(maxlen=self.config.recent_capacity))
        return user

    def _see(self, user: _User, pins: Sequence[int], time_ms: int) -> None:
        seen = user.seen
        for pin in pins:
            if seen.get(pin, -1) < time_ms:
                seen[pin] = time_ms
        excess = len(seen) - self.config.seen_capacity
        if excess > 0:
            # Redis's rule (ZREMRANGEBYRANK): the oldest go, ties by the pin id as a string.
            for pin, _ in heapq.nsmallest(excess, seen.items(), key=_seen_order):
                del seen[pin]

    def _add_affinity(self, user: _User, r: Reaction) -> None:
        weight = action_weight(r.action)
        if not weight or not r.topics:
            return
        if not user.affinity:
            user.affinity_t = r.time_ms
        if r.time_ms > user.affinity_t:
            factor = decay_factor(r.time_ms - user.affinity_t, self._half_life_ms)
            user.affinity = {t: v * factor for t, v in user.affinity.items()}
            user.affinity_t = r.time_ms
        share = (
            weight / len(r.topics) * decay_factor(user.affinity_t - r.time_ms, self._half_life_ms)
        )
        for topic in r.topics:
            user.affinity[topic] = user.affinity.get(topic, 0.0) + share

    def _count(self, r: Reaction) -> None:
        column = COUNTER_OF_ACTION.get(r.action)
        if column is not None:
            self._count_one(r.pin_id, r.time_ms, column)

    def _count_one(self, pin: int, time_ms: int, column: int) -> None:
        hours = self._pins.setdefault(pin, {})
        hour = time_ms // HOUR_MS
        latest = max(hours, default=hour)
        if hour <= latest - self.config.counter_window_hours:
            return  # older than the window the pin keeps
        hours.setdefault(hour, [0, 0, 0, 0])[column] += 1
        if hour > latest:
            oldest = hour - self.config.counter_window_hours + 1
            for old in [h for h in hours if h < oldest]:
                del hours[old]

    def user_state(
        self, user_ids: Sequence[int], now_ms: int | None = None
    ) -> list[UserOnlineState]:
        ids = check_ids("user_ids", user_ids)
        now = _now(now_ms)
        with self._lock:
            return [self._state(uid, now) for uid in ids]

    def _state(self, user_id: int, now: int) -> UserOnlineState:
        user = self._users.get(user_id)
        if user is None:
            return UserOnlineState.empty(user_id)
        recent = np.array(list(reversed(user.recent)), dtype=np.int64).reshape(-1, 3)
        factor = decay_factor(now - user.affinity_t, self._half_life_ms)
        return UserOnlineState(
            user_id=user_id,
            recent_pins=recent[:, 0].copy(),
            recent_actions=recent[:, 1].astype(np.int8),
            recent_times=recent[:, 2].copy(),
            hidden=frozenset(user.hidden),
            seen=dict(user.seen),
            topic_affinity={t: v * factor for t, v in user.affinity.items()},
        )

    def mark_seen(self, user_id: int, pin_ids: Sequence[int], time_ms: int) -> None:
        (uid,) = check_ids("user_id", [user_id])
        pins = check_ids("pin_ids", pin_ids)
        with self._lock:
            self._see(self._user(uid), pins, int(time_ms))

    def record_served(self, user_id: int, pin_ids: Sequence[int], time_ms: int) -> None:
        # Served pages never come twice, so they take no place in the dedup ring (25 ids a
        # page would push the ids of real engagements out of it).
        (uid,) = check_ids("user_id", [user_id])
        pins = check_ids("pin_ids", pin_ids)
        t = int(time_ms)
        with self._lock:
            self._see(self._user(uid), pins, t)
            for pin in pins:
                self._count_one(pin, t, COUNTER_OF_ACTION[Action.IMPRESSION])

    def pin_counters(self, pin_ids: Sequence[int], since_ms: int) -> np.ndarray:
        pins = check_ids("pin_ids", pin_ids)
        first = since_ms // HOUR_MS
        out = np.zeros((len(pins), 4), dtype=np.int64)
        with self._lock:
            for i, pin in enumerate(pins):
                for hour, counts in self._pins.get(pin, {}).items():
                    if hour >= first:
                        out[i] += counts
        return out

    def close(self) -> None:
        if self.config.snapshot_path:
            self.save(Path(self.config.snapshot_path))

    def save(self, path: Path) -> None:
        """Write the whole state atomically (temp file + rename)."""
        with self._lock:
            blob = pickle.dumps((_SNAPSHOT_VERSION, self._users, self._pins))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)

    def _load(self, path: Path) -> None:
        # A snapshot this process family wrote itself: trusted input, pickle is fine.
        version, users, pins = pickle.loads(path.read_bytes())
        if version != _SNAPSHOT_VERSION:
            raise ValueError(f"online store snapshot {path}: version {version}, expected 1")
        for user in users.values():
            user.recent = deque(user.recent, maxlen=self.config.recent_capacity)
        self._users, self._pins = users, pins


def _seen_order(item: tuple[int, int]) -> tuple[int, str]:
    return item[1], str(item[0])


def _now(value: int | None) -> int:
    return now_ms() if value is None else int(value)
