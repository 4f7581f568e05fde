"""Time-based holdout for lake or simulated data: train before T, evaluate on what followed.

The default T is one day before ``data.as_of_ms`` (the last day is held out). The model fits on
``data_before(data, T)``; then

* ranking: each user with held-out positive engagements (creates excluded) gets top k pins
  (excluding the pins they engaged positively before T); NDCG@k, recall@k (and MAP,
  precision) use those held-out positives as ground truth, with ``metrics``' definitions;
* heads: when the held-out day has impressions and the model can score pairs, AUC per head
  (click, save, hide) over the held-out impressions, labelled by whether the user did that
  action to the pin after T;
* catalogue coverage and feed diversity (1 - mean pairwise genre/topic cosine per feed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from homefeed.models.data import Action, TrainingData, action_weights
from homefeed.models.evaluation.metrics import (
    auc,
    catalogue_coverage,
    feed_diversity,
    find_hits,
    ranking_metrics,
    truth_from_pairs,
)
from homefeed.models.evaluation.movielens import ModelFactory, Recommender, group_items

DAY_MS = 86_400_000
# Which held-out actions make an impression a positive of each head.
HEAD_ACTIONS = {
    "click": (Action.CLOSEUP, Action.CLICK),
    "save": (Action.SAVE,),
    "hide": (Action.HIDE,),
}

# (user_ids, pin_ids, time_ms) -> calibrated probability per head, e.g. a bundle's ranker.
HeadScorer = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


@dataclass
class HoldoutResult:
    split_ms: int
    k: int
    users: int  # users with held-out positives (the ranking metrics' denominator)
    ranking: dict[str, float]  # map, ndcg, precision, recall at k
    coverage: float
    diversity: float
    head_auc: dict[str, float] = field(default_factory=dict)  # NaN: one class only
    impressions: int = 0
    fit_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_split_ms(data: TrainingData) -> int:
    return int(data.as_of_ms) - DAY_MS


def time_holdout(
    data: TrainingData,
    fit: ModelFactory,
    k: int = 10,
    split_ms: int | None = None,
    head_scorer: Callable[[Recommender], HeadScorer | None] | None = None,
) -> HoldoutResult:
    """Fit on everything before ``split_ms`` (default: the last day held out), evaluate after."""
    from homefeed.models.pipeline import data_before

    if k < 1:
        raise ValueError(f"k = {k}: must be at least 1")
    t = default_split_ms(data) if split_ms is None else int(split_ms)
    eng = data.engagements
    if not np.any(eng.time_ms < t) or not np.any(eng.time_ms >= t):
        raise ValueError(f"split_ms = {t}: no engagements on one side of the split")
    train = data_before(data, t)
    start = time.perf_counter()
    model = fit(train)
    seconds = time.perf_counter() - start
    after = eng.select(eng.time_ms >= t)
    result = _ranking(model, train, after, data, k, t)
    result.fit_seconds = seconds
    scorer = head_scorer(model) if head_scorer is not None else bundle_head_scorer(model)
    if scorer is not None:
        result.head_auc, result.impressions = _head_auc(scorer, after)
    return result


def _ranking(
    model: Recommender, train: TrainingData, after: Any, data: TrainingData, k: int, t: int
) -> HoldoutResult:
    # A pin created after T cannot be recommended before it exists: creates are not truth.
    positive = (action_weights()[after.action] > 0) & (after.action != Action.CREATE)
    users = np.unique(after.user_id[positive])
    before = train.positives()
    recs = model.recommend(users, k, group_items(before.user_id, before.pin_id))
    indptr, items = truth_from_pairs(users, after.user_id[positive], after.pin_id[positive])
    return HoldoutResult(
        split_ms=t,
        k=k,
        users=len(users),
        ranking=ranking_metrics(find_hits(recs.pins, indptr, items)),
        coverage=catalogue_coverage(recs.pins, max(len(data.pins), 1)),
        diversity=feed_diversity(recs.pins, data.pins.pin_id, data.pins.topic_matrix()),
    )


def impression_labels(
    after: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Held-out impressions (first per user and pin) and, per head, whether the action followed."""
    shown = after.action == Action.IMPRESSION
    width = int(max(after.pin_id.max(initial=0), 0)) + 1
    keys = after.user_id[shown] * width + after.pin_id[shown]
    keys, first = np.unique(keys, return_index=True)
    times = after.time_ms[shown][first]
    labels = {}
    for head, actions in HEAD_ACTIONS.items():
        did = np.isin(after.action, np.array(actions))
        acted = np.unique(after.user_id[did] * width + after.pin_id[did])
        labels[head] = np.isin(keys, acted)
    return keys // width, keys % width, times, labels


def _head_auc(scorer: HeadScorer, after: Any) -> tuple[dict[str, float], int]:
    users, pins, times, labels = impression_labels(after)
    if not len(users):
        return {}, 0
    scores = scorer(users, pins, times)
    return {head: auc(labels[head], scores[head]) for head in labels if head in scores}, len(users)


def bundle_head_scorer(model: Recommender) -> HeadScorer | None:
    """Pair scores per head of a ``ModelBundle`` (features as at each impression's time)."""
    from homefeed.models.bundle import ModelBundle
    from homefeed.models.features import CandidateSet, build_features

    if not isinstance(model, ModelBundle):
        return None

    def score(users: np.ndarray, pins: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        cs = CandidateSet.from_pairs(model.sources, model.ks, users, pins)
        x, _ = build_features(model.context, cs, times)
        return model.ranker.predict(x)

    return score
