"""The ranker: one LightGBM binary model per head (click, save, hide), calibrated, weighted.

Training holds out a deterministic slice of users (by a hash of the user id, so a user's rows
are all on one side) for early stopping and for fitting the calibration. A head whose labels
are constant (or with fewer than MIN_CLASS_ROWS rows of a class) cannot be learned: it is
skipped with a logged warning and scores 0. Files are
LightGBM model text and JSON, never pickle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from homefeed.config import RankerConfig

log = logging.getLogger(__name__)

HEADS = ("click", "save", "hide")
HOLDOUT_SHARE = 0.2  # users held out for early stopping and calibration
MIN_CLASS_ROWS = 10  # fewer positive (or negative) rows: the head is skipped, not guessed
MIN_HOLDOUT_POSITIVES = 5  # fewer than this: calibrate on training rows, no early stopping
EARLY_STOPPING_ROUNDS = 30
CALIBRATION_BINS = 1000  # quantile bins before pool-adjacent-violators
NUM_THREADS = 1  # scoring: a serving request is small; training uses config.num_threads


def holdout_mask(user_ids: np.ndarray, share: float = HOLDOUT_SHARE) -> np.ndarray:
    """True for rows of held-out users: a fixed hash of the id, the same in every run."""
    x = np.asarray(user_ids, dtype=np.int64).view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return np.asarray((x % np.uint64(10_000)) < np.uint64(round(share * 10_000)))


@dataclass(frozen=True)
class Calibration:
    """Raw margin -> probability: isotonic (piecewise linear through knots), Platt or none."""

    kind: str
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def apply(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.kind == "isotonic":
            return np.interp(raw, self.knots_x, self.knots_y)
        return _sigmoid(self.a * raw + self.b)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "knots_x": list(self.knots_x), "knots_y": list(self.knots_y),
                "a": self.a, "b": self.b}  # fmt: skip

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> Calibration:
        return cls(v["kind"], tuple(v["knots_x"]), tuple(v["knots_y"]), v["a"], v["b"])

    @classmethod
    def fit(
        cls, kind: str, raw: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
    ) -> Calibration:
        if kind == "isotonic":
            x, y = isotonic_knots(raw, labels, weights)
            return cls(kind, tuple(x.tolist()), tuple(y.tolist()))
        if kind == "platt":
            a, b = platt(raw, labels, weights)
            return cls(kind, a=a, b=b)
        if kind == "none":
            return cls(kind)
        raise ValueError(f"calibration = {kind!r}: expected isotonic, platt or none")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


def isotonic_knots(
    raw: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Monotone non-decreasing fit of labels on raw (pool adjacent violators).

    Rows are first pooled into at most CALIBRATION_BINS quantile bins, so the Python loop runs
    over bins, not rows. Knots are each block's mean raw score and mean label; ``np.interp``
    between them is monotone and clamps outside the range.
    """
    order = np.argsort(raw, kind="stable")
    raw, labels = np.asarray(raw, np.float64)[order], np.asarray(labels, np.float64)[order]
    w = np.ones(len(raw)) if weights is None else np.asarray(weights, np.float64)[order]
    edges = np.linspace(0, len(raw), min(CALIBRATION_BINS, len(raw)) + 1).astype(np.int64)
    starts = np.unique(edges)[:-1]
    sums_x, sums_y = np.add.reduceat(raw * w, starts), np.add.reduceat(labels * w, starts)
    sums_w = np.add.reduceat(w, starts)
    blocks: list[list[float]] = []  # [sum_x, sum_y, weight]
    for sx, sy, sw in zip(sums_x, sums_y, sums_w, strict=True):
        blocks.append([sx, sy, sw])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][i] + last[i] for i in range(3)]
    arr = np.asarray(blocks)
    x, y = arr[:, 0] / arr[:, 2], arr[:, 1] / arr[:, 2]
    return x, y


def platt(
    raw: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, iterations: int = 50
) -> tuple[float, float]:
    """Logistic fit p = sigmoid(a * raw + b) by Newton steps (lightly regularised)."""
    x = np.asarray(raw, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    sw = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = _sigmoid(a * x + b)
        w = sw * np.maximum(p * (1 - p), 1e-12)
        grad = np.array([np.sum(sw * (p - y) * x) + 1e-6 * a, np.sum(sw * (p - y))])
        hess = np.array([[np.sum(w * x * x) + 1e-6, np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(hess + 1e-9 * np.eye(2), grad)
        a, b = a - float(step[0]), b - float(step[1])
        if np.abs(step).max() < 1e-9:
            break
    return a, b


class Ranker:
    """One calibrated LightGBM model per head; ``score`` is their weighted sum."""

    def __init__(self, config: RankerConfig, feature_names: tuple[str, ...] = ()) -> None:
        self.config = config
        self.feature_names = tuple(feature_names)
        self.boosters: dict[str, lgb.Booster] = {}
        self._compiled: dict[str, Callable[[np.ndarray], np.ndarray]] = {}  # see compile()
        self.calibrations: dict[str, Calibration] = {}
        self.skipped: dict[str, str] = {}  # head -> why
        self.report: dict[str, dict[str, Any]] = {}  # head -> iterations, held-out AUC, ...

    def params(self) -> dict[str, Any]:
        c = self.config
        return {
            "objective": "binary", "num_leaves": c.num_leaves, "learning_rate": c.learning_rate,
            "min_data_in_leaf": c.min_data_in_leaf, "seed": c.seed, "deterministic": True,
            "force_row_wise": True, "num_threads": c.num_threads, "verbosity": -1,
            "feature_pre_filter": False,
        }  # fmt: skip

    def fit(
        self,
        x: np.ndarray,
        labels: Mapping[str, np.ndarray],
        user_ids: np.ndarray,
        feature_names: tuple[str, ...] | None = None,
        weights: np.ndarray | None = None,
    ) -> Ranker:
        """Train every head in ``labels`` (names from HEADS) on the rows of ``x``.

        ``weights`` (per row) stand for rows left out by sampling: a kept row of weight 4
        counts as four, in training and in calibration.
        """
        x = np.asarray(x, dtype=np.float32)
        if feature_names is not None:
            self.feature_names = tuple(feature_names)
        if len(self.feature_names) != x.shape[1]:
            raise ValueError(f"feature_names has {len(self.feature_names)} names, "
                             f"x has {x.shape[1]} columns")  # fmt: skip
        held = holdout_mask(user_ids)
        if weights is not None and np.shape(weights) != (x.shape[0],):
            raise ValueError(f"weights has shape {np.shape(weights)}, expected ({x.shape[0]},)")
        w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        for head, y in labels.items():
            if head not in HEADS:
                raise ValueError(f"labels head {head!r}: expected one of {HEADS}")
            y = np.asarray(y, dtype=np.float64)
            if y.shape != (x.shape[0],):
                raise ValueError(f"labels[{head!r}] has shape {y.shape}, expected ({x.shape[0]},)")
            self._fit_head(head, x, y, held, w)
        return self

    def _fit_head(
        self, head: str, x: np.ndarray, y: np.ndarray, held: np.ndarray, w: np.ndarray
    ) -> None:
        positives, negatives = int((y > 0).sum()), int((y <= 0).sum())
        if min(positives, negatives) < MIN_CLASS_ROWS:
            why = f"{positives} positive and {negatives} negative rows"
            log.warning("ranker head %s skipped (%s); its weight is 0", head, why)
            self.skipped[head] = why
            return
        use_holdout = _both_classes(y[held], MIN_HOLDOUT_POSITIVES) and _both_classes(y[~held], 1)
        train = ~held if use_holdout else np.ones(len(y), dtype=bool)
        booster = self._train(x, y, w, train, held if use_holdout else None)
        calib_rows = held if use_holdout else train
        raw = np.asarray(
            booster.predict(x[calib_rows], raw_score=True, num_threads=self.config.num_threads)
        )
        self.boosters[head] = booster
        self.calibrations[head] = Calibration.fit(
            self.config.calibration, raw, y[calib_rows], w[calib_rows]
        )
        self.skipped.pop(head, None)
        self.report[head] = {
            "iterations": booster.current_iteration(), "train_rows": int(train.sum()),
            "positives": int(y.sum()), "early_stopping": use_holdout,
            "holdout_rows": int(held.sum()) if use_holdout else 0,
            "holdout_auc": auc(raw, y[calib_rows]) if use_holdout else None,
        }  # fmt: skip

    def _train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        train: np.ndarray,
        valid: np.ndarray | None,
    ) -> lgb.Booster:
        names = list(self.feature_names)
        dtrain = lgb.Dataset(
            x[train], y[train], weight=w[train], feature_name=names, params={"verbosity": -1}
        )
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Callable[..., Any]] = []
        if valid is not None:
            valid_sets = [
                lgb.Dataset(
                    x[valid], y[valid], weight=w[valid], reference=dtrain, feature_name=names
                )
            ]
            callbacks = [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)]
        booster = lgb.train(
            self.params(), dtrain, num_boost_round=self.config.rounds, valid_sets=valid_sets,
            callbacks=callbacks,
        )  # fmt: skip
        best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
        # Re-reading the text model gives the exact object ``load`` will give back.
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h for h in HEADS if h in self.boosters)

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Calibrated probability of each trained head (skipped heads are absent)."""
        x = self._check(x)
        return {head: self.calibrations[head].apply(self._raw(head, x)) for head in self.heads}

    def compile(self, cache_dir: Path | None = None) -> tuple[str, ...]:
        """Score with native-code heads from now on (see ``compiled.py``); the heads compiled."""
        from homefeed.models.compiled import compile_head

        fast = {head: compile_head(self.boosters[head], cache_dir) for head in self.heads}
        self._compiled = {head: f for head, f in fast.items() if f is not None}
        return tuple(self._compiled)

    def _raw(self, head: str, x: np.ndarray) -> np.ndarray:
        compiled = self._compiled.get(head)
        if compiled is not None:
            return compiled(x)
        return np.asarray(self.boosters[head].predict(x, raw_score=True, num_threads=NUM_THREADS))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Sum of head weight x calibrated probability; skipped heads count 0."""
        out = np.zeros(len(x), dtype=np.float64)
        for head, prob in self.predict(x).items():
            out += self.config.head_weights.get(head, 0.0) * prob
        return out

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"x has shape {x.shape}; the ranker expects "
                             f"{len(self.feature_names)} features")  # fmt: skip
        return x

    def importance(self, head: str, kind: str = "gain") -> dict[str, float]:
        """Feature importance of one head (``gain`` or ``split``), by feature name."""
        if head not in self.boosters:
            raise KeyError(f"head {head!r} is not trained (trained: {self.heads})")
        values = self.boosters[head].feature_importance(importance_type=kind)
        return dict(zip(self.feature_names, (float(v) for v in values), strict=True))

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for head, booster in self.boosters.items():
            (path / f"{head}.txt").write_text(booster.model_to_string())
        manifest = {
            "config": self.config.model_dump(), "feature_names": list(self.feature_names),
            "heads": list(self.heads), "skipped": self.skipped, "report": self.report,
            "calibrations": {h: c.to_json() for h, c in self.calibrations.items()},
        }  # fmt: skip
        (path / "ranker.json").write_text(json.dumps(manifest, indent=1))

    @classmethod
    def load(cls, path: Path) -> Ranker:
        manifest = json.loads((path / "ranker.json").read_text())
        ranker = cls(RankerConfig(**manifest["config"]), tuple(manifest["feature_names"]))
        for head in manifest["heads"]:
            ranker.boosters[head] = lgb.Booster(model_str=(path / f"{head}.txt").read_text())
            ranker.calibrations[head] = Calibration.from_json(manifest["calibrations"][head])
        ranker.skipped = dict(manifest["skipped"])
        ranker.report = dict(manifest["report"])
        return ranker


def auc(score: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    y = np.asarray(labels) > 0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mid_rank = (ends - (counts - 1) / 2.0)[inverse]  # average rank of tied scores
    return float((mid_rank[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _both_classes(y: np.ndarray, min_positives: int) -> bool:
    return bool(len(y) and y.sum() >= min_positives and (len(y) - y.sum()) >= 1)


__all__ = ["HEADS", "Calibration", "Ranker", "auc", "holdout_mask", "isotonic_knots", "platt"]
