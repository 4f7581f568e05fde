"""Statistics of an A/B comparison on per-user metrics, with no data source attached.

``compare`` takes per-user values by variant (in-memory arrays: from the lake, or from an
experiment run in the simulator) and returns per-variant means with t intervals, each
treatment's difference from control with a Welch interval and p-value, its relative lift with a
delta-method interval, and a sample-ratio-mismatch check against the configured weights.

Why these: per-user metrics (saves per user) keep the user as the unit of randomisation, so
observations are independent; Welch does not assume equal variances across arms; the delta
method gives the variance of a ratio of means, var(T/C) ~ var(T)/C^2 + T^2 var(C)/C^4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float

    def covers(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def __str__(self) -> str:
        return f"[{self.lo:.4g}, {self.hi:.4g}]"


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    ci: Interval


@dataclass(frozen=True)
class Effect:
    diff: float
    diff_ci: Interval
    lift: float
    lift_ci: Interval
    p_value: float


@dataclass(frozen=True)
class SampleRatio:
    observed: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool


@dataclass
class Report:
    control: str
    variants: list[str]
    users: dict[str, int]
    summaries: dict[str, dict[str, Summary]]  # metric -> variant -> summary
    effects: dict[str, dict[str, Effect]]  # metric -> treatment -> effect vs control
    srm: SampleRatio | None
    confidence: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    """Floats that JSON can carry: NaN and infinities become None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.floating | np.integer | np.bool_):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def summarize(values: np.ndarray, confidence: float = 0.95) -> Summary:
    """Mean with a t interval (n-1 degrees of freedom); NaN interval below two users."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n > 1 else float("nan")
    if n < 2:
        return Summary(n, mean, std, Interval(float("nan"), float("nan")))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, Interval(mean - half, mean + half))


def welch(treatment: np.ndarray, control: np.ndarray, confidence: float = 0.95) -> Effect:
    """Treatment minus control (Welch), and the relative lift (delta method)."""
    t, c = np.asarray(treatment, np.float64), np.asarray(control, np.float64)
    if len(t) < 2 or len(c) < 2:
        nan = float("nan")
        return Effect(nan, Interval(nan, nan), nan, Interval(nan, nan), nan)
    mt, mc = float(t.mean()), float(c.mean())
    vt, vc = float(t.var(ddof=1)) / len(t), float(c.var(ddof=1)) / len(c)
    diff, se = mt - mc, math.sqrt(vt + vc)
    df = _welch_df(vt, vc, len(t), len(c))
    q = float(sps.t.ppf(0.5 + confidence / 2, df)) if np.isfinite(df) else float("nan")
    p = float(2 * sps.t.sf(abs(diff) / se, df)) if se > 0 else (1.0 if diff == 0 else 0.0)
    lift, lift_se = _delta_lift(mt, mc, vt, vc)
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    return Effect(
        diff,
        Interval(diff - q * se, diff + q * se) if se > 0 else Interval(diff, diff),
        lift,
        Interval(lift - z * lift_se, lift + z * lift_se),
        p,
    )


def _welch_df(vt: float, vc: float, nt: int, nc: int) -> float:
    denominator = vt**2 / (nt - 1) + vc**2 / (nc - 1)
    return (vt + vc) ** 2 / denominator if denominator > 0 else float("inf")


def _delta_lift(mt: float, mc: float, vt: float, vc: float) -> tuple[float, float]:
    """(T/C - 1, its standard error); NaN when the control mean is 0 (no lift defined)."""
    if mc == 0:
        return float("nan"), float("nan")
    variance = vt / mc**2 + mt**2 * vc / mc**4
    return mt / mc - 1, float(np.sqrt(variance))


def sample_ratio(
    observed: Mapping[str, int], weights: Mapping[str, float], threshold: float = 0.001
) -> SampleRatio:
    """Chi-square goodness of fit of the users per variant to the configured weights."""
    names = list(weights)
    total_weight = sum(weights.values())
    share = {n: weights[n] / total_weight for n in names}
    counts = np.array([observed.get(n, 0) for n in names], dtype=np.float64)
    total = counts.sum()
    arms = [i for i, n in enumerate(names) if share[n] > 0]
    if total == 0 or len(arms) < 2:
        return SampleRatio(dict(observed), share, 0.0, 1.0, False)
    expected = np.array([share[names[i]] for i in arms]) * total
    chi2 = float(np.sum((counts[arms] - expected) ** 2 / expected))
    # A user in a zero-weight arm is a mismatch whatever the test says.
    stray = any(counts[i] > 0 for i, n in enumerate(names) if share[n] == 0)
    p = 0.0 if stray else float(sps.chi2.sf(chi2, len(arms) - 1))
    return SampleRatio(dict(observed), share, chi2, p, p < threshold)


def compare(
    per_user: Mapping[str, Mapping[str, np.ndarray]],
    *,
    control: str | None = None,
    weights: Mapping[str, float] | None = None,
    confidence: float = 0.95,
    srm_threshold: float = 0.001,
    metrics: Sequence[str] | None = None,
) -> Report:
    """Compare variants on per-user metrics: ``per_user[variant][metric]`` is one value per user.

    Every variant must give every metric an array of the same length (its users). ``control``
    defaults to the first variant; ``weights`` (configured shares) enables the SRM check.
    """
    variants = list(per_user)
    if len(variants) < 2:
        raise ValueError(f"compare needs at least two variants, got {variants}")
    control = control or variants[0]
    if control not in per_user:
        raise ValueError(f"control {control!r} is not among the variants {variants}")
    metrics = list(metrics or per_user[control])
    users = {v: _users(v, per_user[v], metrics) for v in variants}
    summaries = {m: {v: summarize(per_user[v][m], confidence) for v in variants} for m in metrics}
    effects = {
        m: {
            v: welch(per_user[v][m], per_user[control][m], confidence)
            for v in variants
            if v != control
        }
        for m in metrics
    }
    srm = sample_ratio(users, weights, srm_threshold) if weights else None
    return Report(control, variants, users, summaries, effects, srm, confidence)


def _users(variant: str, values: Mapping[str, np.ndarray], metrics: Sequence[str]) -> int:
    lengths = {}
    for m in metrics:
        if m not in values:
            raise ValueError(f"variant {variant!r} has no metric {m!r} (has {sorted(values)})")
        lengths[m] = len(values[m])
    if len(set(lengths.values())) > 1:
        raise ValueError(f"variant {variant!r}: metrics cover different users: {lengths}")
    return next(iter(lengths.values()), 0)
