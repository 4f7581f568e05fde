"""The deploy router: a ``FeedBackend`` that sends a fixed share of users to a canary version.

A user is in the canary when ``bucket(user_id, salt) < percent * 100`` (``experiments``'
BLAKE2b bucketing, salt = the canary version): the same users on every process and every
request, so the share is sticky per user and matches ``percent`` over many users.

The routing table (both arms' backends, the share, the salt) is one immutable object;
``swap`` replaces the reference in one assignment, atomic under the GIL. A request resolves
its arm once, through ``route(user_id)`` (the feed service's hook), and finishes on that
backend whatever swaps happen meanwhile: no request is dropped or served half by each arm.

Each arm counts its requests, errors (exceptions other than a client's 4xx) and latencies
for the judge. Counters belong to a deploy (``deploy_id``): a new deploy starts them at zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from homefeed.experiments.assignment import BUCKETS, bucket
from homefeed.serving.api.backend import (
    CandidatePool,
    Exclusions,
    FeedBackend,
    PinInfo,
    UserInfo,
)
from homefeed.serving.online.reactions import PinTopics, pin_topics_from_catalogue

LATENCY_MEMORY = 8192  # latest request latencies kept per arm, for the p99

Loader = Callable[[str], FeedBackend]  # version -> a loaded backend serving it


def in_canary(user_id: int, salt: str, percent: float) -> bool:
    """Whether ``user_id`` is in the canary's ``percent`` (0..100) for ``salt``."""
    return bucket(user_id, salt) < canary_buckets(percent)


def canary_buckets(percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValueError(f"canary percent = {percent}: must be within 0..100")
    return round(percent * BUCKETS / 100)


class ArmCounters:
    """Requests, errors and a ring of recent latencies of one arm; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self._latency_ms = np.zeros(LATENCY_MEMORY, dtype=np.float64)

    def observe(self, seconds: float, error: bool) -> None:
        with self._lock:
            self._latency_ms[self.requests % LATENCY_MEMORY] = seconds * 1000
            self.requests += 1
            self.errors += int(error)

    def snapshot(self) -> tuple[int, int, float]:
        """(requests, errors, p99 latency in ms over the latest requests; NaN without any)."""
        with self._lock:
            kept = self._latency_ms[: min(self.requests, LATENCY_MEMORY)].copy()
            requests, errors = self.requests, self.errors
        p99 = float(np.percentile(kept, 99)) if len(kept) else float("nan")
        return requests, errors, p99


@dataclass(frozen=True)
class Arm:
    version: str
    backend: FeedBackend
    counters: ArmCounters = field(default_factory=ArmCounters)


@dataclass(frozen=True)
class RoutingTable:
    stable: Arm
    canary: Arm | None = None
    percent: float = 0.0
    deploy_id: str | None = None

    def __post_init__(self) -> None:
        canary_buckets(self.percent)  # validates
        if self.canary is not None and self.canary.version == self.stable.version:
            raise ValueError(f"canary version {self.canary.version} is the stable version")

    def arm_for(self, user_id: int) -> Arm:
        canary = self.canary
        if canary is not None and in_canary(user_id, canary.version, self.percent):
            return canary
        return self.stable

    def arms(self) -> dict[str, Arm]:
        out = {self.stable.version: self.stable}
        if self.canary is not None:
            out[self.canary.version] = self.canary
        return out


class DeployRouter:
    """A ``FeedBackend`` over a ``RoutingTable``; see the module docstring."""

    def __init__(self, table: RoutingTable) -> None:
        self._table = table
        self._swap_lock = threading.Lock()

    @classmethod
    def single(cls, version: str, backend: FeedBackend) -> DeployRouter:
        return cls(RoutingTable(Arm(version, backend)))

    @property
    def table(self) -> RoutingTable:
        return self._table

    def swap(self, table: RoutingTable) -> RoutingTable:
        """Route new requests by ``table``; returns the table it replaced."""
        with self._swap_lock:  # writers only; readers take the reference without a lock
            old, self._table = self._table, table
        return old

    def set_routes(
        self,
        stable: str,
        canary: str | None,
        percent: float,
        deploy_id: str | None,
        load: Loader,
    ) -> RoutingTable:
        """Swap to these routes, reusing loaded backends; counters carry over within a deploy."""
        with self._swap_lock:
            current = self._table
            loaded = current.arms()
            same_deploy = deploy_id == current.deploy_id

            def arm(version: str) -> Arm:
                have = loaded.get(version)
                if have is None:
                    return Arm(version, load(version))
                return have if same_deploy else Arm(version, have.backend)

            table = RoutingTable(
                arm(stable),
                arm(canary) if canary is not None else None,
                percent if canary is not None else 0.0,
                deploy_id,
            )
            self._table = table
        return table

    @contextmanager
    def route(self, user_id: int) -> Iterator[FeedBackend]:
        """The backend of ``user_id``'s arm for one request; counts it when the block ends."""
        arm = self._table.arm_for(user_id)
        start, error = time.perf_counter(), False
        try:
            yield arm.backend
        except Exception as e:
            # A FeedError below 500 is the client's mistake (unknown user, bad cursor).
            error = int(getattr(e, "status", 500)) >= 500
            raise
        finally:
            arm.counters.observe(time.perf_counter() - start, error)

    def counters(self) -> dict[str, tuple[int, int, float]]:
        """Per version of the current table: (requests, errors, p99 ms)."""
        return {v: arm.counters.snapshot() for v, arm in self._table.arms().items()}

    # ---- FeedBackend, for callers that do not route per request -----------------------------

    @property
    def model_version(self) -> str:
        return self._table.stable.version

    def _of(self, user_id: int) -> FeedBackend:
        return self._table.arm_for(user_id).backend

    def known_user(self, user_id: int) -> bool:
        return self._of(user_id).known_user(user_id)

    def candidates(self, user_id: int, now_ms: int) -> CandidatePool:
        return self._of(user_id).candidates(user_id, now_ms)

    def features(self, pool: CandidatePool, now_ms: int) -> CandidatePool:
        return self._of(pool.user_id).features(pool, now_ms)

    def rank(self, pool: CandidatePool) -> np.ndarray:
        return self._of(pool.user_id).rank(pool)

    def exclusions(self, user_id: int, now_ms: int) -> Exclusions:
        return self._of(user_id).exclusions(user_id, now_ms)

    def served(self, user_id: int, pins: np.ndarray, now_ms: int) -> None:
        self._of(user_id).served(user_id, pins, now_ms)

    def pin(self, pin_id: int) -> PinInfo | None:
        return self._table.stable.backend.pin(pin_id)

    def user(self, user_id: int) -> UserInfo | None:
        return self._of(user_id).user(user_id)


def stable_pin_topics(router: DeployRouter) -> PinTopics:
    """Pins' topics from the catalogue of the version stable at each call (a promote changes
    it), for the reaction consumer beside a routed service; a backend without a catalogue
    (``data``) gives no topics."""
    current: list[object] = [None, None]  # [the Pins object, its lookup]

    def lookup(pin_ids: Sequence[int]) -> Sequence[tuple[str, ...]]:
        data = getattr(router.table.stable.backend, "data", None)
        if data is None:
            return [() for _ in pin_ids]
        if current[0] is not data.pins:
            current[:] = [data.pins, pin_topics_from_catalogue(data.pins)]
        return current[1](pin_ids)  # type: ignore[operator]

    return lookup


__all__ = [
    "Arm",
    "ArmCounters",
    "DeployRouter",
    "Loader",
    "RoutingTable",
    "canary_buckets",
    "in_canary",
    "stable_pin_topics",
]
