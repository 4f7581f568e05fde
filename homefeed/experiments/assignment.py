"""Deterministic assignment: a user's variant is a pure function of (user, salt, weights).

``bucket`` hashes ``"<salt>:<user_id>"`` with BLAKE2b (never Python's ``hash()``, which is
salted per process) into 0..9999; the variants own consecutive bucket ranges proportional to
their weights, in declared order. Every process, service and the offline analysis therefore
agree on who saw what without sharing state, and experiments with different salts split users
independently of each other.
"""

from __future__ import annotations

import hashlib

import numpy as np

from homefeed.experiments.settings import ExperimentConfig

BUCKETS = 10_000


def bucket(user_id: int, salt: str) -> int:
    """The user's bucket in 0..BUCKETS-1 for ``salt``."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def bucket_bounds(experiment: ExperimentConfig) -> np.ndarray:
    """Upper bucket bound (exclusive) of each variant, in declared order; the last is BUCKETS.

    Rounding follows the cumulative share, so the ranges tile 0..BUCKETS-1 exactly."""
    weights = np.array([v.weight for v in experiment.variants], dtype=np.float64)
    bounds = np.rint(np.cumsum(weights) / weights.sum() * BUCKETS).astype(np.int64)
    bounds[-1] = BUCKETS
    return bounds


def assign(experiment: ExperimentConfig, user_id: int) -> str:
    """The name of the variant ``user_id`` is in."""
    index = int(
        np.searchsorted(bucket_bounds(experiment), bucket(user_id, experiment.salt), "right")
    )
    return experiment.variants[index].name


def assign_many(experiment: ExperimentConfig, user_ids: np.ndarray) -> np.ndarray:
    """Variant index (into ``experiment.variants``) of every user, for simulations and checks."""
    buckets = np.fromiter(
        (bucket(int(u), experiment.salt) for u in user_ids), dtype=np.int64, count=len(user_ids)
    )
    return np.searchsorted(bucket_bounds(experiment), buckets, "right")
