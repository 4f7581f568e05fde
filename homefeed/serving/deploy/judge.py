"""The canary judge: pure functions from per-arm counters to promote, rollback or wait.

Inputs are what the feed service and the event log tell about each arm (the stable version and
the canary) over the bake window: requests, errors, p99 latency, and per user the impressions
served by that arm and the saves and clicks attributed to them (``attribute`` does the join).

Engagement is (saves + clicks) per impression, a ratio of sums over users. Its variance is the
cluster-robust (delta method) one with the user as the unit, because a user's impressions are
not independent of each other. With ``m = min_engagement_ratio`` the statistic is
``z = (R_canary - m R_stable) / se``; a small one-sided p of ``R_canary <= m R_stable`` shows
the canary is no worse (promote), a small one of ``R_canary >= m R_stable`` shows it is worse
(rollback). Noise alone therefore waits; it neither promotes a worse model nor rolls back a
good one more often than ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

from homefeed.serving.deploy.settings import DeployConfig

Decision = Literal["promote", "rollback", "wait"]
EMPTY = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class ArmStats:
    """One arm over the bake window; ``user_*`` are aligned per user of that arm."""

    version: str
    requests: int = 0
    errors: int = 0
    p99_ms: float = float("nan")
    user_impressions: np.ndarray = field(default_factory=lambda: EMPTY)
    user_engagements: np.ndarray = field(default_factory=lambda: EMPTY)

    def __post_init__(self) -> None:
        if len(self.user_impressions) != len(self.user_engagements):
            raise ValueError(
                f"arm {self.version}: user_impressions has {len(self.user_impressions)} users, "
                f"user_engagements {len(self.user_engagements)}"
            )
        if self.errors > self.requests or self.requests < 0 or self.errors < 0:
            raise ValueError(
                f"arm {self.version}: errors = {self.errors}, requests = {self.requests}"
            )

    @property
    def impressions(self) -> int:
        return int(self.user_impressions.sum())

    @property
    def engagements(self) -> int:
        return int(self.user_engagements.sum())

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else float("nan")

    def figures(self) -> dict[str, Any]:
        rate, _ = ratio_and_variance(self.user_impressions, self.user_engagements)
        return {
            "version": self.version,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": _finite(self.error_rate),
            "p99_ms": _finite(self.p99_ms),
            "users": len(self.user_impressions),
            "impressions": self.impressions,
            "engagements": self.engagements,
            "engagement_rate": _finite(rate),
        }


@dataclass(frozen=True)
class EngagementTest:
    stable_rate: float
    canary_rate: float
    ratio: float  # canary / stable
    margin: float  # min_engagement_ratio
    z: float
    p_no_worse: float  # one-sided p of "canary <= margin x stable": small means promote
    p_worse: float  # one-sided p of "canary >= margin x stable": small means rollback


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reasons: list[str]
    figures: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reasons": self.reasons, "figures": self.figures}


def ratio_and_variance(impressions: np.ndarray, engagements: np.ndarray) -> tuple[float, float]:
    """sum(engagements) / sum(impressions) and its delta-method variance, users as clusters."""
    n = np.asarray(impressions, dtype=np.float64)
    e = np.asarray(engagements, dtype=np.float64)
    total = float(n.sum())
    if total <= 0:
        return float("nan"), float("nan")
    rate = float(e.sum()) / total
    users = len(n)
    if users < 2:
        return rate, float("nan")
    residual = e - rate * n
    variance = float(np.sum(residual**2)) / total**2 * users / (users - 1)
    return rate, variance


def engagement_test(stable: ArmStats, canary: ArmStats, margin: float) -> EngagementTest:
    """The one-sided tests of ``canary rate`` against ``margin x stable rate``."""
    rs, vs = ratio_and_variance(stable.user_impressions, stable.user_engagements)
    rc, vc = ratio_and_variance(canary.user_impressions, canary.user_engagements)
    ratio = rc / rs if rs > 0 else float("nan")
    diff = rc - margin * rs
    se = math.sqrt(vc + margin**2 * vs) if np.isfinite(vc + vs) else float("nan")
    if not np.isfinite(diff) or not np.isfinite(se):
        z = float("nan")
        p_no_worse = p_worse = 1.0
    elif se == 0:
        z = math.copysign(math.inf, diff) if diff else 0.0
        p_no_worse, p_worse = (0.0, 1.0) if diff > 0 else ((1.0, 0.0) if diff < 0 else (1.0, 1.0))
    else:
        z = diff / se
        p_no_worse, p_worse = float(sps.norm.sf(z)), float(sps.norm.cdf(z))
    return EngagementTest(rs, rc, ratio, margin, z, p_no_worse, p_worse)


def judge(
    stable: ArmStats, canary: ArmStats, config: DeployConfig, baked_minutes: float
) -> Verdict:
    """Promote, rollback or wait, with the reasons and every figure they rest on.

    Order: latency and error guardrails (once both arms have ``min_requests``), then enough
    impressions, then a canary shown worse (rolled back at once), then the bake time, then a
    canary shown no worse (promoted), and past ``max_bake_minutes`` an inconclusive one is
    rolled back.
    """
    test = engagement_test(stable, canary, config.min_engagement_ratio)
    figures = {
        "baked_minutes": round(baked_minutes, 3),
        "stable": stable.figures(),
        "canary": canary.figures(),
        "engagement": {k: _finite(v) for k, v in asdict(test).items()},
    }

    def verdict(decision: Decision, *reasons: str) -> Verdict:
        return Verdict(decision, list(reasons), figures)

    guard = _guardrails(stable, canary, config)
    if guard:
        return verdict("rollback", *guard)
    short = [
        f"{name} has {arm.impressions} impressions of the {config.min_impressions} needed"
        for name, arm in (("stable", stable), ("canary", canary))
        if arm.impressions < config.min_impressions
    ]
    if short:
        return verdict("wait", *short)
    ratio = f"engagement ratio {_fmt(test.ratio)} (canary {_fmt(test.canary_rate)} / stable "
    ratio += f"{_fmt(test.stable_rate)}) vs the {config.min_engagement_ratio} floor"
    if test.p_worse < config.alpha:
        return verdict("rollback", f"{ratio}: worse, p = {test.p_worse:.3g} < {config.alpha}")
    if baked_minutes < config.bake_minutes:
        return verdict(
            "wait", f"baking: {baked_minutes:.1f} of {config.bake_minutes} minutes", ratio
        )
    low = [
        f"{name} has {arm.requests} requests of the {config.min_requests} needed"
        for name, arm in (("stable", stable), ("canary", canary))
        if arm.requests < config.min_requests
    ]
    if low:
        return verdict("wait", *low)
    if test.p_no_worse < config.alpha:
        return verdict("promote", f"{ratio}: no worse, p = {test.p_no_worse:.3g} < {config.alpha}")
    if baked_minutes >= config.max_bake_minutes:
        return verdict(
            "rollback",
            f"{ratio}: still inconclusive (p = {test.p_no_worse:.3g}) after "
            f"{baked_minutes:.1f} minutes (max_bake_minutes = {config.max_bake_minutes})",
        )
    return verdict("wait", f"{ratio}: inconclusive, p = {test.p_no_worse:.3g}")


def _guardrails(stable: ArmStats, canary: ArmStats, config: DeployConfig) -> list[str]:
    if min(stable.requests, canary.requests) < config.min_requests:
        return []
    out = []
    delta = canary.error_rate - stable.error_rate
    if delta > config.max_error_rate_delta:
        out.append(
            f"error rate {canary.error_rate:.4f} vs stable {stable.error_rate:.4f}: "
            f"+{delta:.4f} > max_error_rate_delta {config.max_error_rate_delta}"
        )
    if np.isfinite(stable.p99_ms) and np.isfinite(canary.p99_ms) and stable.p99_ms > 0:
        ratio = canary.p99_ms / stable.p99_ms
        if ratio > config.max_p99_ratio:
            out.append(
                f"p99 latency {canary.p99_ms:.1f} ms vs stable {stable.p99_ms:.1f} ms: "
                f"x{ratio:.2f} > max_p99_ratio {config.max_p99_ratio}"
            )
    return out


def attribute(
    impressions: dict[str, np.ndarray],
    engagements: dict[str, np.ndarray],
    window_ms: int,
    skew_ms: int = 60_000,
) -> np.ndarray:
    """For each engagement, the index of the impression it is attributed to, or -1.

    ``impressions`` and ``engagements`` hold aligned ``user``, ``pin`` and ``time_ms`` arrays.
    An engagement goes to the latest impression of the same user and pin shown at most
    ``window_ms`` before it (and at most ``skew_ms`` after it: client and server clocks differ).
    """
    iu, ip, it = (np.asarray(impressions[k], dtype=np.int64) for k in ("user", "pin", "time_ms"))
    eu, ep, et = (np.asarray(engagements[k], dtype=np.int64) for k in ("user", "pin", "time_ms"))
    out = np.full(len(eu), -1, dtype=np.int64)
    if not len(iu) or not len(eu):
        return out
    pairs, inverse = np.unique(
        np.stack([np.concatenate([iu, eu]), np.concatenate([ip, ep])]), axis=1, return_inverse=True
    )
    pair_i, pair_e = inverse[: len(iu)], inverse[len(iu) :]
    t0 = min(int(it.min()), int(et.min()))
    span = max(int(it.max()), int(et.max())) - t0 + skew_ms + 1
    if pairs.shape[1] * span >= 2**62:
        raise ValueError(f"attribute: {pairs.shape[1]} pairs over {span} ms overflow the key")
    key_i = pair_i * span + (it - t0)
    order = np.argsort(key_i, kind="stable")
    sorted_keys = key_i[order]
    pos = np.searchsorted(sorted_keys, pair_e * span + (et - t0) + skew_ms, "right") - 1
    ok = pos >= 0
    hit = order[np.maximum(pos, 0)]
    ok &= pair_i[hit] == pair_e
    ok &= et - it[hit] <= window_ms
    out[ok] = hit[ok]
    return out


def per_user(
    impression_users: np.ndarray, attributed_users: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per user of an arm: (impressions, attributed engagements), aligned, users sorted."""
    users, counts = np.unique(np.asarray(impression_users, dtype=np.int64), return_counts=True)
    engaged = np.zeros(len(users), dtype=np.int64)
    if len(attributed_users):
        np.add.at(engaged, np.searchsorted(users, attributed_users), 1)
    return counts.astype(np.int64), engaged


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _fmt(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "n/a"


__all__ = [
    "ArmStats",
    "EngagementTest",
    "Verdict",
    "attribute",
    "engagement_test",
    "judge",
    "per_user",
    "ratio_and_variance",
]
