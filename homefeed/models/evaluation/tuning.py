"""A stacked ratings-mode model measured on MovieLens, and the features it needs.

Stacking: each user's engagements fall in 5 folds; for each fold, base models (EASE, ALS,
sequence co-occurrence and the ``views``) fit on the other 4, EASE proposes 100 candidates,
and the fold labels them. A LightGBM binary model learns from all folds' rows (5x the rows
of a single 80/20 split: one split overfits, see docs/benchmarks.md); then the base models
refit on everything and the ranker orders their candidates. Users it cannot place fall back
to EASE, then popularity.

Everything is read from training engagements only. Temporal features: MovieLens users rate
in sessions, and a random split puts test ratings in the same sessions as train ratings,
so pins rated around the user's own rating times, and pins rated next to each other in
other users' sessions (``_sequence_cooccurrence``), carry signal that whole-history
co-occurrence does not. Test timestamps are never read.

``validate`` measures candidates on several per-user 75/25 re-splits of the train part (the
protocol again, one seed each); ``tune`` and ``tune_blend`` run it over parameter grids.
``CHOSEN`` holds the stack's result. On those splits the linear blend of ``blend`` gains more
over EASE than this stack, and more steadily (docs/benchmarks.md). The features here are
candidates for ``homefeed.models.features``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from homefeed.models.data import Action, IdIndex, TrainingData
from homefeed.models.evaluation.blend import (
    BlendedRecommender,
    BlendParams,
    ease_weights,
    sequence_cooccurrence,
)
from homefeed.models.evaluation.movielens import (
    Ease,
    ImplicitAls,
    ModelFactory,
    Split,
    evaluate,
    group_items,
    mask_excluded,
    user_ranks,
)
from homefeed.models.sources.base import Candidates

log = logging.getLogger(__name__)

DAY_S = 86_400.0
VIEW_L2 = 200.0  # L2 of the EASE-like extra views (smaller inputs than the main EASE)


@dataclass(frozen=True)
class StackParams:
    """Hyperparameters of the stack; chosen on a validation split (see ``tune``)."""

    candidates: int = 100  # EASE candidates per user that the ranker reorders
    ease_l2: float = 400.0
    ease_dropout: float = 0.0  # EDLAE-style popularity-proportional extra L2
    als_factors: int = 64
    als_regularization: float = 0.05
    als_alpha: float = 20.0
    windows_days: tuple[float, ...] = (1.0, 7.0, 30.0)
    sequence_window: int = 5  # neighbours in a user's rating order that count as co-rated
    views: tuple[str, ...] = ()  # extra scorers as features: ease_liked, user_ease, rp3
    drop: tuple[str, ...] = ()  # features left out of the ranker (ablations)
    folds: int = 5  # each user's engagements in k folds: base fits on k-1, labels from one
    label_folds: int = 5  # how many of the folds produce ranker rows (more rows, less noise)
    objective: str = "binary"
    num_leaves: int = 15
    learning_rate: float = 0.05
    rounds: int = 200
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.8
    seed: int = 42


# Chosen on one 80/20 validation split; on 75/25 validation seeds 1-3 it gains +1.2% over EASE
# (+3.7, +1.2, -1.2), where ``blend.CHOSEN`` gains +3.1% (docs/benchmarks.md).
CHOSEN = StackParams(views=("ease_liked", "user_ease", "rp3", "sequence_1", "sequence_20"))

FEATURES = (
    "ease_score", "ease_rank", "ease_score_share", "als_score", "als_rank",
    "pin_popularity", "pin_save_share", "user_log_count", "user_save_share",
    "genre_affinity", "pin_age_days", "pin_median_offset_days", "pin_first_offset_days",
    "user_span_days", "pin_share_in_user_span", "sequence_score", "sequence_rank",
)  # fmt: skip


class BaseModels:
    """The base scorers and per-user/per-pin statistics, fitted on one TrainingData."""

    def __init__(self, data: TrainingData, params: StackParams) -> None:
        self.params = params
        self.ease = Ease(data, params.ease_l2, params.ease_dropout)
        self.als = ImplicitAls(
            data, params.als_factors, params.als_regularization, params.als_alpha,
            seed=params.seed,
        )  # fmt: skip
        self.users, self.pins = self.ease.users, self.ease.pins
        pos = data.positives()
        u, p = self.users.index(pos.user_id), self.pins.index(pos.pin_id)
        keep = (u >= 0) & (p >= 0)
        u, p, t = u[keep], p[keep], pos.time_ms[keep] / 1000.0
        saved = pos.action[keep] == Action.SAVE
        n_users, n_pins = len(self.users), len(self.pins)
        self.pin_count = np.bincount(p, minlength=n_pins).astype(np.float64)
        self.pin_saves = np.bincount(p, weights=saved, minlength=n_pins)
        self.user_count = np.bincount(u, minlength=n_users).astype(np.float64)
        self.user_saves = np.bincount(u, weights=saved, minlength=n_users)
        self.user_time = _group_quantiles(u, t, n_users, (0.0, 0.5, 1.0))
        self.pin_time = _group_quantiles(p, t, n_pins, (0.0, 0.5))
        self.pin_created_s = data.pins.created_ms[data.pins.index.index(self.pins.ids)] / 1000.0
        self.events = _TimeIndex(p, t, n_pins)
        topics = data.pins.topic_matrix()[data.pins.index.index(self.pins.ids)]
        self.pin_topics = _unit(topics.astype(np.float64))
        self.sequence = _sequence_cooccurrence(data, self.users, self.pins, params.sequence_window)
        profile = np.zeros((n_users, topics.shape[1]))
        np.add.at(profile, u, topics[p])
        self.user_topics = _unit(profile)
        self.views = {name: _view(name, data, self.ease) for name in params.views}

    def candidates(
        self, user_ids: np.ndarray, exclude: dict[int, np.ndarray]
    ) -> tuple[Candidates, np.ndarray]:
        """EASE's top candidates of known users, and their feature matrix (rows = flat pairs)."""
        rows = self.users.index(user_ids)
        if np.any(rows < 0):
            raise ValueError("BaseModels.candidates takes known users only")
        ease = self.ease.scores(rows).astype(np.float32)
        mask_excluded(ease, user_ids, self.pins, exclude)
        als = self.als.scores(rows).astype(np.float32)
        mask_excluded(als, user_ids, self.pins, exclude)
        seq = np.asarray(self.ease.x[rows] @ self.sequence, dtype=np.float32)
        mask_excluded(seq, user_ids, self.pins, exclude)
        cands = Candidates.from_scores(user_ids, self.pins.ids, ease, self.params.candidates)
        x = self._features(rows, cands, ease, als, seq)
        if not self.views:
            return cands, x
        safe = np.maximum(self.pins.index(cands.pins), 0)
        extra = []
        for view in self.views.values():
            scores = view(user_ids)
            mask_excluded(scores, user_ids, self.pins, exclude)
            extra += [
                np.take_along_axis(scores, safe, axis=1).ravel(),
                _rank_of(scores, safe).ravel(),
            ]
        return cands, np.column_stack([x, *extra]).astype(np.float32)

    def _features(
        self, rows: np.ndarray, cands: Candidates, ease: np.ndarray, als: np.ndarray,
        seq: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        n, k = cands.pins.shape
        cols = self.pins.index(cands.pins)  # -1 on padding
        safe = np.maximum(cols, 0)
        u = np.repeat(rows, k).reshape(n, k)
        ease_s = np.take_along_axis(ease, safe, axis=1)
        top = np.maximum(ease_s[:, :1], 1e-6)
        als_s = np.take_along_axis(als, safe, axis=1)
        als_rank = _rank_of(als, safe)
        t_first, t_median, t_last = (self.user_time[q][u] for q in range(3))
        total = max(float(self.pin_count.sum()), 1.0)
        columns = [
            ease_s, np.broadcast_to(np.arange(k, dtype=np.float64), (n, k)), ease_s / top,
            als_s, als_rank,
            self.pin_count[safe] / total,
            self.pin_saves[safe] / np.maximum(self.pin_count[safe], 1.0),
            np.log1p(self.user_count[u]),
            self.user_saves[u] / np.maximum(self.user_count[u], 1.0),
            (self.user_topics[u] * self.pin_topics[safe]).sum(axis=2),
            (t_median - self.pin_created_s[safe]) / DAY_S,
            (self.pin_time[1][safe] - t_median) / DAY_S,
            (self.pin_time[0][safe] - t_median) / DAY_S,
            (t_last - t_first) / DAY_S,
            self.events.share(safe, t_first - DAY_S, t_last + DAY_S),
            np.take_along_axis(seq, safe, axis=1), _rank_of(seq, safe),
        ]  # fmt: skip
        for days in self.params.windows_days:
            columns.append(
                self.events.share(safe, t_median - days * DAY_S, t_median + days * DAY_S)
            )
        out = np.stack([np.asarray(c, dtype=np.float32).ravel() for c in columns], axis=1)
        out[(cols < 0).ravel()] = np.nan
        return out

    def feature_names(self) -> tuple[str, ...]:
        windows = tuple(f"pin_share_within_{d:g}d" for d in self.params.windows_days)
        views = tuple(f"{v}_{what}" for v in self.params.views for what in ("score", "rank"))
        return FEATURES + windows + views

    def kept_columns(self) -> np.ndarray:
        """Indices of the features the ranker reads (all but ``StackParams.drop``)."""
        names = self.feature_names()
        unknown = set(self.params.drop) - set(names)
        if unknown:
            raise ValueError(f"StackParams.drop: unknown features {sorted(unknown)}")
        return np.array([i for i, n in enumerate(names) if n not in self.params.drop], dtype=int)


class _TimeIndex:
    """Engagement times sorted by (pin, time): a pin's engagements in any window in O(log n)."""

    def __init__(self, pins: np.ndarray, times: np.ndarray, n_pins: int) -> None:
        self.t0 = float(times.min(initial=0.0))
        self.span = float(times.max(initial=0.0)) - self.t0 + 4 * 365 * DAY_S
        self.keys = np.sort(pins * self.span + (times - self.t0))
        self.all_times = np.sort(times)

    def share(self, pins: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The pin's engagements in [start, end] over everyone's engagements in it."""
        lo = np.clip(start - self.t0, 0.0, self.span - 1)
        hi = np.clip(end - self.t0, 0.0, self.span - 1)
        base = pins * self.span
        count = np.searchsorted(self.keys, base + hi, "right") - np.searchsorted(
            self.keys, base + lo, "left"
        )
        total = np.searchsorted(self.all_times, end, "right") - np.searchsorted(
            self.all_times, start, "left"
        )
        return count / np.maximum(total, 1)


def _group_quantiles(
    group: np.ndarray, values: np.ndarray, n: int, qs: tuple[float, ...]
) -> np.ndarray:
    """(len(qs), n) lower quantiles of values per group (NaN for empty groups)."""
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    counts = np.bincount(g, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = np.full((len(qs), n), np.nan)
    has = counts > 0
    for i, q in enumerate(qs):
        pos = starts[has] + np.floor(q * (counts[has] - 1)).astype(np.int64)
        out[i, has] = v[pos]
    return out


def _unit(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def _rank_of(scores: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """0-based rank of each chosen column within its row (higher score = better)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return np.take_along_axis(ranks, cols, axis=1).astype(np.float32)


def _view(name: str, data: TrainingData, ease: Ease) -> Callable[[np.ndarray], np.ndarray]:
    """A dense (users x pins) scorer over ``ease``'s pins: another view of the same history."""
    x = ease.x
    if name == "ease_liked":
        saves = data.engagements.select(data.engagements.action == Action.SAVE)
        liked = Ease(replace(data, engagements=saves), VIEW_L2)
        return lambda users: _known_scores(liked, users)
    if name == "user_ease":
        weights = ease_weights((x @ x.T).toarray(), VIEW_L2)
        return lambda users: np.asarray(
            (x.T @ weights[:, ease.users.index(users)]).T, dtype=np.float32
        )
    if name == "rp3":
        popularity = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)
        activity = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
        walk = x.T.multiply(1.0 / popularity[:, None]) @ x.multiply(1.0 / activity[:, None])
        w = np.asarray(walk.toarray() / popularity[None, :] ** 0.6, dtype=np.float32)
        np.fill_diagonal(w, 0.0)
        return lambda users: np.asarray(x[ease.users.index(users)] @ w, dtype=np.float32)
    if name.startswith("sequence_"):
        window = int(name.removeprefix("sequence_"))
        seq = _sequence_cooccurrence(data, ease.users, ease.pins, window)
        return lambda users: np.asarray(x[ease.users.index(users)] @ seq, dtype=np.float32)
    raise ValueError(
        f"StackParams.views: unknown view {name!r} (ease_liked, user_ease, rp3, sequence_<n>)"
    )


def _known_scores(model: Ease, users: np.ndarray) -> np.ndarray:
    rows = model.users.index(users)
    out = np.zeros((len(users), len(model.pins)), dtype=np.float32)
    out[rows >= 0] = model.scores(rows[rows >= 0])
    return out


def _sequence_cooccurrence(
    data: TrainingData, users: IdIndex, pins: IdIndex, window: int
) -> np.ndarray:
    """``blend.sequence_cooccurrence`` of ``data``'s positives over these users and pins,
    columns scaled by 1 / sqrt(popularity)."""
    eng = data.positives()
    u, p = users.index(eng.user_id), pins.index(eng.pin_id)
    keep = (u >= 0) & (p >= 0)
    u, p, t = u[keep], p[keep], eng.time_ms[keep]
    order = np.lexsort((p, t, u))
    return sequence_cooccurrence(u[order], p[order], len(pins), window, 0.5)


def without(data: TrainingData, held: np.ndarray) -> TrainingData:
    """``data`` without the engagements of mask ``held`` (and their saves on boards)."""
    eng = data.engagements
    pb = data.pin_boards
    width = int(max(eng.pin_id.max(initial=0), pb.src.max(initial=0))) + 1
    held_keys = eng.user_id[held] * width + eng.pin_id[held]
    # boards belong to users here (board id = owner id), so a held-out save leaves its board
    owner = IdIndex(data.board_owner.src).index(pb.dst)
    owners = np.where(owner >= 0, data.board_owner.dst[np.maximum(owner, 0)], -1)
    keep_edge = ~np.isin(owners * width + pb.src, held_keys)
    return replace(data, engagements=eng.select(~held), pin_boards=pb.select(keep_edge))


def ranker_rows(
    data: TrainingData, params: StackParams
) -> tuple[np.ndarray, np.ndarray, int, tuple[str, ...]]:
    """(features, labels, rows per user, names) from every label fold of ``data``."""
    ranks = user_ranks(data.engagements.user_id, params.seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    names: tuple[str, ...] = ()
    for fold in range(params.label_folds):
        held = (ranks > fold / params.folds) & (ranks <= (fold + 1) / params.folds)
        part = without(data, held)
        base = BaseModels(part, params)
        held_eng = data.engagements.select(held)
        users = np.intersect1d(np.unique(held_eng.user_id), base.users.ids)
        exclude = group_items(part.engagements.user_id, part.engagements.pin_id)
        cands, x = base.candidates(users, exclude)
        xs.append(x)
        ys.append(_labels(cands, held_eng.user_id, held_eng.pin_id))
        names = base.feature_names()
    keep = base.kept_columns()
    return (
        np.concatenate(xs)[:, keep],
        np.concatenate(ys),
        params.candidates,
        tuple(names[i] for i in keep),
    )


class StackedRecommender:
    """EASE candidates reordered by a LightGBM ranker over base scores and context features."""

    def __init__(self, base: BaseModels, ranker: Any, fallback: Ease) -> None:
        self.base, self.ranker, self.fallback = base, ranker, fallback

    @classmethod
    def fit(cls, data: TrainingData, params: StackParams | None = None) -> StackedRecommender:
        params = params or CHOSEN
        start = time.perf_counter()
        x, y, group, names = ranker_rows(data, params)
        ranker = _train_ranker(x, y, group, params, names)
        log.info("ranker trained on %d rows in %.1f s", len(x), time.perf_counter() - start)
        full = BaseModels(data, params)
        return cls(full, ranker, full.ease)

    def recommend(self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray]) -> Candidates:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = self.fallback.recommend(user_ids, k, exclude)
        known = self.base.users.index(user_ids) >= 0
        if not known.any():
            return out
        cands, x = self.base.candidates(user_ids[known], exclude)
        n, m = cands.pins.shape
        scores = self.ranker.predict(x[:, self.base.kept_columns()]).reshape(n, m)
        scores = scores.astype(np.float32)
        scores[cands.pins < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        kk = order.shape[1]
        out.pins[known, :kk] = np.take_along_axis(cands.pins, order, axis=1)
        out.scores[known, :kk] = np.take_along_axis(scores, order, axis=1)
        out.pins[known, kk:] = -1
        out.scores[known, kk:] = -np.inf
        return out


def _labels(cands: Candidates, users: np.ndarray, pins: np.ndarray) -> np.ndarray:
    """1 where the candidate is one of the user's held-out engagements."""
    n, m = cands.pins.shape
    row = IdIndex(cands.user_ids).index(users)  # user_ids are sorted unique
    keep = row >= 0
    width = int(max(cands.pins.max(initial=0), pins.max(initial=0))) + 2
    truth = np.unique(row[keep] * width + pins[keep])
    keys = np.arange(n)[:, None] * width + cands.pins
    pos = np.searchsorted(truth, keys).clip(0, max(len(truth) - 1, 0))
    hit = (truth[pos] == keys) & (cands.pins >= 0) if len(truth) else np.zeros((n, m), bool)
    return hit.ravel().astype(np.float32)


def _train_ranker(
    x: np.ndarray, y: np.ndarray, group_size: int, params: StackParams, names: tuple[str, ...]
) -> Any:
    """A LightGBM booster (LambdaRank over each user's candidates, or binary logloss)."""
    import lightgbm as lgb

    rank = params.objective == "lambdarank"
    dataset = lgb.Dataset(
        x, y, feature_name=list(names), free_raw_data=True,
        group=np.full(len(x) // group_size, group_size) if rank else None,
    )  # fmt: skip
    settings = {
        "objective": "lambdarank" if rank else "binary",
        "num_leaves": params.num_leaves, "learning_rate": params.learning_rate,
        "min_data_in_leaf": params.min_data_in_leaf, "seed": params.seed,
        "feature_fraction": params.feature_fraction,
        "num_threads": 2, "verbosity": -1, "deterministic": True,
    }  # fmt: skip
    if rank:
        settings["lambdarank_truncation_level"] = 20
    return lgb.train(settings, dataset, num_boost_round=params.rounds)


VALIDATION_SEEDS = (1, 2, 3, 4, 5)


def validation_split(split: Split, seed: int = 1, ratio: float = 0.75) -> Split:
    """The protocol again inside ``split``'s train part: per-user ``ratio`` with its own seed.

    Parameters are chosen here, never on ``split.test``. One such split is noisy (a gain of
    2-3% on one seed has shrunk to nothing on test), so choose on several seeds. The gain of
    the session and time signals over EASE shrinks as the fitted share grows, so ``ratio``
    0.9 (the fitted part closest in size to the real training part) judges them best.
    """
    if seed == 42:
        raise ValueError("validation_split: seed 42 is the test split's own draw; use another")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"validation_split: ratio must be in (0, 1), got {ratio}")
    return Split.of(split.train, split.movies, ratio=ratio, seed=seed)


@dataclass(frozen=True)
class Validation:
    """NDCG@k of each model and of the baseline on each validation seed."""

    seeds: tuple[int, ...]
    baseline: tuple[float, ...]
    ndcg: dict[str, tuple[float, ...]]

    def gain(self, name: str) -> float:
        """Mean over seeds of the relative NDCG gain over the baseline."""
        return float(np.mean(np.array(self.ndcg[name]) / np.array(self.baseline) - 1.0))

    def worst_gain(self, name: str) -> float:
        return float(np.min(np.array(self.ndcg[name]) / np.array(self.baseline) - 1.0))


def validate(
    split: Split, models: Mapping[str, ModelFactory],
    seeds: Sequence[int] = VALIDATION_SEEDS, k: int = 10,
    baseline: ModelFactory = Ease, ratio: float = 0.75,
) -> Validation:  # fmt: skip
    """Fit every model (and the baseline, EASE) on each validation split (``ratio`` of the
    train part fitted) of ``split``'s train part and measure NDCG@k there; ``split.test`` is
    never read."""
    if not seeds:
        raise ValueError("validate: seeds is empty; give at least one validation seed")
    base: list[float] = []
    scores: dict[str, list[float]] = {name: [] for name in models}
    for seed in seeds:
        val = validation_split(split, seed, ratio)
        base.append(evaluate(baseline(val.data), val, k)["ndcg"])
        for name, factory in models.items():
            start = time.perf_counter()
            scores[name].append(evaluate(factory(val.data), val, k)["ndcg"])
            log.info("validation seed %d %s: ndcg %.4f (baseline %.4f, %.1f s)", seed, name,
                     scores[name][-1], base[-1], time.perf_counter() - start)  # fmt: skip
    return Validation(tuple(seeds), tuple(base), {n: tuple(v) for n, v in scores.items()})


def tune(
    split: Split, grid: Sequence[StackParams], k: int = 10,
    seeds: Sequence[int] = VALIDATION_SEEDS,
) -> Validation:  # fmt: skip
    """Each stack parameter set on the validation splits of ``split``'s train part."""
    models: dict[str, ModelFactory] = {
        repr(params): partial(StackedRecommender.fit, params=params) for params in grid
    }
    return validate(split, models, seeds, k)


def tune_blend(
    split: Split, grid: Sequence[BlendParams], k: int = 10,
    seeds: Sequence[int] = VALIDATION_SEEDS, ratio: float = 0.75,
) -> Validation:  # fmt: skip
    """Each blend parameter set on the validation splits of ``split``'s train part."""
    models: dict[str, ModelFactory] = {
        repr(params): partial(BlendedRecommender.fit, params=params) for params in grid
    }
    return validate(split, models, seeds, k, ratio=ratio)
