"""Trending: pins with a high smoothed engagement rate lately, plus fresh pins to explore.

Over the last ``window_days`` before ``data.as_of_ms`` each event counts with a recency weight
``0.5 ** (age / half_life_hours)``. A pin's rate is

    (saves * w_save + clicks * w_click + closeups * w_closeup + prior_impressions * g)
    / (impressions + prior_impressions)

where ``g`` is the window's global engagement per impression, so a pin with three impressions
cannot outrank one with three thousand on luck. The score is that rate times the recency weight
of the pin's last event: a pin whose activity stopped a day ago cools down. Data without
impressions (ratings) falls back to the decayed engagement itself.

Fresh pins (created within ``fresh_hours``, fewer than ``fresh_max_impressions`` impressions)
have no rate to speak of yet; ``explore_share`` of the k slots go to the freshest of them with
an optimistic score ``rate + explore_bonus * g / sqrt(1 + impressions)``. Everything is
deterministic. The list is the same for every user, minus that user's exclude set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from homefeed.models.data import Action, TrainingData
from homefeed.models.sources.base import Candidates, CandidateSource, excluded_keys

HOUR_MS = 3_600_000
STATE_FILE = "trending.npz"
_BATCH_USERS = 1024  # rows of the (users x prefix) matrices at once


class TrendingSource(CandidateSource):
    """One global list: smoothed recent engagement rate, with slots reserved for fresh pins."""

    name = "trending"

    def __init__(
        self,
        *,
        window_days: float = 2.0,
        half_life_hours: float = 24.0,
        w_save: float = 3.0,
        w_click: float = 1.0,
        w_closeup: float = 0.5,
        prior_impressions: float = 50.0,
        fresh_hours: float = 24.0,
        fresh_max_impressions: int = 20,
        explore_share: float = 0.2,
        explore_bonus: float = 1.0,
    ) -> None:
        for field, value in [
            ("window_days", window_days),
            ("half_life_hours", half_life_hours),
            ("prior_impressions", prior_impressions),
        ]:
            _require(field, value, low=0.0, strict=True)
        for field, value in [
            ("w_save", w_save),
            ("w_click", w_click),
            ("w_closeup", w_closeup),
            ("fresh_hours", fresh_hours),
            ("fresh_max_impressions", fresh_max_impressions),
            ("explore_bonus", explore_bonus),
        ]:
            _require(field, value, low=0.0)
        _require("explore_share", explore_share, low=0.0, high=1.0)
        self.window_days = float(window_days)
        self.half_life_hours = float(half_life_hours)
        self.w_save, self.w_click, self.w_closeup = float(w_save), float(w_click), float(w_closeup)
        self.prior_impressions = float(prior_impressions)
        self.fresh_hours = float(fresh_hours)
        self.fresh_max_impressions = int(fresh_max_impressions)
        self.explore_share = float(explore_share)
        self.explore_bonus = float(explore_bonus)
        self._pin_ids = np.empty(0, dtype=np.int64)
        self._trend_order = np.empty(0, dtype=np.int64)  # pin indices, best first
        self._trend_score = np.empty(0, dtype=np.float32)
        self._fresh_order = np.empty(0, dtype=np.int64)  # pin indices, newest first
        self._fresh_score = np.empty(0, dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {
            "window_days": self.window_days,
            "half_life_hours": self.half_life_hours,
            "w_save": self.w_save,
            "w_click": self.w_click,
            "w_closeup": self.w_closeup,
            "prior_impressions": self.prior_impressions,
            "fresh_hours": self.fresh_hours,
            "fresh_max_impressions": self.fresh_max_impressions,
            "explore_share": self.explore_share,
            "explore_bonus": self.explore_bonus,
        }

    def fit(self, data: TrainingData) -> None:
        stats = self._window_stats(data)
        rate, scale = self._rates(stats)
        trend = rate * stats.last_decay
        active = np.flatnonzero(stats.events > 0)
        self._trend_order = active[np.lexsort((active, -trend[active]))]
        self._trend_score = trend[self._trend_order].astype(np.float32)
        fresh = self._fresh_pins(data, stats.impressions)
        self._fresh_order = fresh[np.lexsort((-fresh, -data.pins.created_ms[fresh]))]
        bonus = self.explore_bonus * scale / np.sqrt(1.0 + stats.impressions[self._fresh_order])
        self._fresh_score = (rate[self._fresh_order] + bonus).astype(np.float32)
        self._pin_ids = data.pins.pin_id.copy()

    def retrieve(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None = None
    ) -> Candidates:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = Candidates.empty(user_ids, k)
        n_explore = round(self.explore_share * k)
        for start in range(0, len(user_ids), _BATCH_USERS):
            rows = np.arange(start, min(start + _BATCH_USERS, len(user_ids)))
            banned = excluded_keys(user_ids[rows], exclude, self._pin_ids)
            picks = self._pick(len(rows), k, n_explore, banned)
            _fill_ranked(out, rows, *picks, self._pin_ids)
        return out

    def _pick(
        self, n: int, k: int, n_explore: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, pin index, score) of each row's picks: exploit, then explore, then refill."""
        size = len(self._pin_ids)
        first = _first_valid(self._trend_order, n, k - n_explore, banned, size)
        fresh = _first_valid(self._fresh_order, n, n_explore, _keys(banned, first, size), size)
        # Rows short of fresh pins give the unused explore slots back to trending, and rows
        # short of trending pins (a small catalogue) fill up with more fresh ones.
        limit = k - np.bincount(fresh[0], minlength=n)
        trend = _first_valid(self._trend_order, n, limit, _keys(banned, fresh, size), size)
        limit = k - np.bincount(trend[0], minlength=n)
        fresh = _first_valid(self._fresh_order, n, limit, _keys(banned, trend, size), size)
        return (
            np.concatenate([trend[0], fresh[0]]),
            np.concatenate([trend[1], fresh[1]]),
            np.concatenate([self._trend_score[trend[2]], self._fresh_score[fresh[2]]]),
        )

    def _window_stats(self, data: TrainingData) -> _WindowStats:
        eng, n = data.engagements, len(data.pins)
        start = data.as_of_ms - self.window_days * 24 * HOUR_MS
        pin = data.pins.index.index(eng.pin_id)
        inside = (eng.time_ms >= start) & (eng.time_ms < data.as_of_ms) & (pin >= 0)
        inside &= eng.action != Action.CREATE  # posting a pin is no sign anyone wants it
        pin, action, time = pin[inside], eng.action[inside], eng.time_ms[inside]
        decay = self._decay(data.as_of_ms - time)
        weights = np.zeros(max(Action) + 1)
        weights[[Action.SAVE, Action.CLICK, Action.CLOSEUP]] = [
            self.w_save,
            self.w_click,
            self.w_closeup,
        ]
        is_impression = action == Action.IMPRESSION
        # Pins without window events keep age = window, whose weight never matters (events == 0).
        last = np.full(n, int(start), dtype=np.int64)
        np.maximum.at(last, pin, time)
        return _WindowStats(
            engagement=np.bincount(pin, weights=weights[action] * decay, minlength=n),
            decayed_impressions=np.bincount(pin, weights=is_impression * decay, minlength=n),
            impressions=np.bincount(pin, weights=is_impression, minlength=n),
            events=np.bincount(pin, minlength=n),
            last_decay=self._decay(data.as_of_ms - last),
        )

    def _rates(self, stats: _WindowStats) -> tuple[np.ndarray, float]:
        """Each pin's smoothed rate and the global scale the exploration bonus is relative to."""
        total_impressions = stats.decayed_impressions.sum()
        if total_impressions > 0:
            g = stats.engagement.sum() / total_impressions
            m = self.prior_impressions
            return (stats.engagement + m * g) / (stats.decayed_impressions + m), float(g)
        # No impressions logged (ratings data): rank by decayed engagement volume.
        active = stats.events > 0
        mean = float(stats.engagement[active].mean()) if active.any() else 0.0
        return stats.engagement.copy(), mean

    def _fresh_pins(self, data: TrainingData, impressions: np.ndarray) -> np.ndarray:
        created = data.pins.created_ms
        newest = data.as_of_ms - self.fresh_hours * HOUR_MS
        fresh = (created >= newest) & (created < data.as_of_ms)
        return np.flatnonzero(fresh & (impressions < self.fresh_max_impressions))

    def _decay(self, age_ms: np.ndarray) -> np.ndarray:
        return np.power(0.5, age_ms / (self.half_life_hours * HOUR_MS))

    def save_state(self, path: Path) -> None:
        np.savez(
            path / STATE_FILE,
            pin_ids=self._pin_ids,
            trend_order=self._trend_order,
            trend_score=self._trend_score,
            fresh_order=self._fresh_order,
            fresh_score=self._fresh_score,
        )

    def load_state(self, path: Path) -> None:
        with np.load(path / STATE_FILE, allow_pickle=False) as z:
            self._pin_ids = z["pin_ids"]
            self._trend_order, self._trend_score = z["trend_order"], z["trend_score"]
            self._fresh_order, self._fresh_score = z["fresh_order"], z["fresh_score"]


class _WindowStats:
    """Per-pin window counts (arrays aligned with ``data.pins``)."""

    def __init__(
        self,
        *,
        engagement: np.ndarray,
        decayed_impressions: np.ndarray,
        impressions: np.ndarray,
        events: np.ndarray,
        last_decay: np.ndarray,
    ) -> None:
        self.engagement = engagement
        self.decayed_impressions = decayed_impressions
        self.impressions = impressions
        self.events = events
        self.last_decay = last_decay


def _first_valid(
    order: np.ndarray, n: int, limit: int | np.ndarray, banned: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of n rows, the first ``limit`` entries of ``order`` whose key is not banned.

    Returns (row, pin index, position in ``order``). Only a prefix of ``order`` is scanned:
    a row can lose at most its banned keys, so ``limit + banned keys`` entries suffice.
    """
    limits = np.broadcast_to(np.asarray(limit, dtype=np.int64), (n,))
    if n == 0 or not len(order):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    banned_per_row = np.bincount(banned // max(size, 1), minlength=n)[:n]
    width = int(min(len(order), (limits + banned_per_row).max(initial=0)))
    rows = np.arange(n)[:, None]
    prefix = order[:width][None, :]
    valid = ~np.isin(rows * size + prefix, banned)
    rank = np.cumsum(valid, axis=1) - 1
    chosen = valid & (rank < limits[:, None])
    row, pos = np.nonzero(chosen)
    return row, order[pos], pos


def _keys(
    banned: np.ndarray, picks: tuple[np.ndarray, np.ndarray, np.ndarray], size: int
) -> np.ndarray:
    """``banned`` plus the keys of ``picks`` (row, pin index, ...)."""
    return np.union1d(banned, picks[0] * size + picks[1])


def _fill_ranked(
    out: Candidates,
    out_rows: np.ndarray,
    row: np.ndarray,
    pin: np.ndarray,
    score: np.ndarray,
    pin_ids: np.ndarray,
) -> None:
    """Write picks into ``out`` per row, best score first (ties by pin id)."""
    order = np.lexsort((pin, -score, row))
    row, pin, score = row[order], pin[order], score[order]
    starts = np.r_[True, row[1:] != row[:-1]] if len(row) else np.empty(0, dtype=bool)
    rank = np.arange(len(row)) - np.maximum.accumulate(np.where(starts, np.arange(len(row)), 0))
    out.pins[out_rows[row], rank] = pin_ids[pin]
    out.scores[out_rows[row], rank] = score


def _require(
    field: str, value: object, *, low: float, strict: bool = False, high: float | None = None
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = (number > low if strict else number >= low) and (high is None or number <= high)
    if not ok:
        bounds = f"{'>' if strict else '>='} {low}" + ("" if high is None else f" and <= {high}")
        raise ValueError(f"{field} must be a number {bounds}, got {value!r}")


__all__ = ["TrendingSource"]
