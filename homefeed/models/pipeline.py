"""Training orchestration: fit the sources, train the ranker on what they propose, bundle.

Two ways to get ranker examples:

* **lake mode** (``examples`` given: impressions with labels from the lake's
  ``training_examples`` table): sources and features are fitted on the engagements strictly
  before the earliest example, so no example is explained by its own future. The ranker
  trains on a sample of the examples (``sample_examples``: unlabelled impressions downsampled
  and weighted, then at most ``max_rows`` rows of whole users), which bounds feature building
  and LightGBM at any lake size;
* **ratings mode** (no impressions, e.g. imported ratings): each user's engagements are split
  into a fit part (80%) and a label part (20%); sources fit on the fit part, and their
  candidates are labelled by the label part, plus sampled unengaged catalogue pins.

Either way the bundle's sources and feature context are then refitted on all of ``data``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from homefeed.config import ModelsConfig, RankerConfig
from homefeed.models.bundle import ModelBundle
from homefeed.models.data import Action, IdIndex, TrainingData, action_weights
from homefeed.models.features import CandidateSet, FeatureContext, build_features
from homefeed.models.ranker import Ranker
from homefeed.models.sources import CandidateSource, make_source

log = logging.getLogger(__name__)

LABEL_SHARE = 0.2  # ratings mode: share of each user's engaged pins held out as labels
GATHER_CHUNK = 1024  # users per candidate gathering pass
MAX_RANKER_USERS = 20_000  # ratings mode: users whose candidates train the ranker
MAX_RANKER_ROWS = 2_000_000  # ratings mode: bound on the sampled candidate rows

Progress = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class RankerExamples:
    """Impression-level examples: what the lake's ``training_examples`` table gives."""

    user_id: np.ndarray  # int64
    pin_id: np.ndarray  # int64
    time_ms: np.ndarray  # int64, the impression time
    label_click: np.ndarray  # 0/1
    label_save: np.ndarray  # 0/1
    label_hide: np.ndarray  # 0/1

    def __post_init__(self) -> None:
        n = len(self.user_id)
        for name in ("pin_id", "time_ms", "label_click", "label_save", "label_hide"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RankerExamples.{name} has {len(getattr(self, name))} rows, "
                                 f"user_id has {n}")  # fmt: skip
        if n == 0:
            raise ValueError("RankerExamples has no rows")

    def __len__(self) -> int:
        return len(self.user_id)

    def labels(self) -> dict[str, np.ndarray]:
        return {"click": self.label_click, "save": self.label_save, "hide": self.label_hide}

    def labelled(self) -> np.ndarray:
        """True for rows with any label (clicked, saved or hidden)."""
        return np.asarray((self.label_click > 0) | (self.label_save > 0) | (self.label_hide > 0))

    def take(self, index: np.ndarray) -> RankerExamples:
        return RankerExamples(*(getattr(self, f.name)[index] for f in fields(self)))


@dataclass(frozen=True)
class SampledExamples:
    """The ranker's rows after sampling, and the weight each stands for."""

    examples: RankerExamples
    index: np.ndarray  # int64: the positions of ``examples`` in the unsampled examples
    weights: np.ndarray  # float64: 1 for labelled rows, 1 / negative_rate for the others
    users_kept: int
    users_total: int


def sample_examples(examples: RankerExamples, config: RankerConfig) -> SampledExamples:
    """Negative downsampling, then at most ``config.max_rows`` rows by whole users.

    Every labelled impression is kept; an unlabelled one with probability ``negative_rate``
    and weight ``1 / negative_rate`` (inverse inclusion probability, so a weighted model and
    its calibration estimate the unsampled probabilities). The row cap then keeps a random set
    of whole users, which changes no row's inclusion odds relative to another's, so it needs
    no weight; it bounds feature cost, which follows the users whose candidates are gathered.
    """
    rng = np.random.default_rng([config.seed, 17])
    labelled = examples.labelled()
    keep = labelled | (rng.random(len(examples)) < config.negative_rate)
    users, inverse = np.unique(examples.user_id[keep], return_inverse=True)
    chosen = _users_within(np.bincount(inverse, minlength=len(users)), config.max_rows, rng)
    index = np.flatnonzero(keep)[chosen[inverse]]
    weights = np.where(labelled[index], 1.0, 1.0 / config.negative_rate)
    all_users = len(np.unique(examples.user_id))
    return SampledExamples(examples.take(index), index, weights, int(chosen.sum()), all_users)


def _users_within(rows_per_user: np.ndarray, max_rows: int | None, rng: np.random.Generator
                  ) -> np.ndarray:  # fmt: skip
    """A random set of users (bool mask) whose rows add up to at most ``max_rows``.

    At least one user is kept, so a cap below one user's rows still trains on something.
    """
    if max_rows is None or rows_per_user.sum() <= max_rows:
        return np.ones(len(rows_per_user), dtype=bool)
    order = rng.permutation(len(rows_per_user))
    fits = np.cumsum(rows_per_user[order]) <= max_rows
    fits[0] = True
    chosen = np.zeros(len(rows_per_user), dtype=bool)
    chosen[order[fits]] = True
    return chosen


def data_before(data: TrainingData, ms: int) -> TrainingData:
    """``data`` as it was just before ``ms``: engagements and pins strictly earlier, the
    pin-board edges, board owners and follows that existed by then.

    Edges and follows whose times the loader did not know are kept (edges of pins created
    later still go). An edge's weight is the whole window's count; only its existence is
    point in time.
    """
    eng = data.engagements.select(data.engagements.time_ms < ms)
    pins = data.pins
    keep = pins.created_ms < ms
    lengths = np.diff(pins.topic_indptr)[keep]
    kept_codes = np.repeat(keep, np.diff(pins.topic_indptr))
    new_pins = replace(
        pins, pin_id=pins.pin_id[keep], creator_id=pins.creator_id[keep],
        created_ms=pins.created_ms[keep],
        topic_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        topic_codes=pins.topic_codes[kept_codes],
        text=tuple(t for t, k in zip(pins.text, keep, strict=True) if k) if pins.text else None,
    )  # fmt: skip
    edges = data.pin_boards.existing_before(ms)
    edges = edges.select(~np.isin(edges.src, pins.pin_id[~keep]))
    meta = {**data.meta, "before_ms": int(ms)}
    return replace(
        data, engagements=eng, pins=new_pins, pin_boards=edges,
        board_owner=data.board_owner.existing_before(ms), follows=data.follows.existing_before(ms),
        as_of_ms=min(int(ms), data.as_of_ms), meta=meta,
    )  # fmt: skip


def enabled_sources(config: ModelsConfig) -> dict[str, CandidateSource]:
    """New, unfitted sources of every enabled entry of the config."""
    return {
        name: make_source(name, **sc.params)
        for name, sc in sorted(config.sources.items())
        if sc.enabled
    }


def fit_sources(
    sources: dict[str, CandidateSource], data: TrainingData, progress: Progress
) -> dict[str, float]:
    """Fit every source on ``data``; seconds each took."""
    seconds = {}
    for name, source in sources.items():
        start = time.perf_counter()
        source.fit(data)
        seconds[name] = time.perf_counter() - start
        progress("source_fitted", {"source": name, "seconds": seconds[name]})
    return seconds


def train_bundle(
    data: TrainingData,
    config: ModelsConfig,
    examples: RankerExamples | None = None,
    on_progress: Progress | None = None,
) -> ModelBundle:
    """Fit sources and ranker (lake mode with ``examples``, else ratings mode); bundle them."""
    progress = on_progress or _no_progress
    ks = {name: sc.k for name, sc in config.sources.items() if sc.enabled}
    if not ks:
        raise ValueError("models.sources: no source is enabled")
    timings: dict[str, Any] = {}
    if examples is not None:
        fit_data, ranker, spec = _train_lake(data, config, ks, examples, timings, progress)
    else:
        fit_data, ranker, spec = _train_ratings(data, config, ks, timings, progress)
    sources = enabled_sources(config)
    timings["final_sources"] = fit_sources(sources, data, progress)
    start = time.perf_counter()
    context = FeatureContext.build(data)
    timings["final_context"] = time.perf_counter() - start
    metadata = {
        "mode": "lake" if examples is not None else "ratings",
        "data": _range(data), "ranker_fit_data": _range(fit_data), "timings": timings,
        "heads": list(ranker.heads), "skipped_heads": ranker.skipped,
        "ranker_report": ranker.report, "metrics": {},
    }  # fmt: skip
    progress("bundle_ready", {"mode": metadata["mode"]})
    return ModelBundle(sources, ranker, context, spec, config, metadata)


def _train_lake(
    data: TrainingData,
    config: ModelsConfig,
    ks: dict[str, int],
    examples: RankerExamples,
    timings: dict[str, Any],
    progress: Progress,
) -> tuple[TrainingData, Ranker, Any]:
    fit_data = data_before(data, int(np.min(examples.time_ms)))
    sources = enabled_sources(config)
    timings["ranker_sources"] = fit_sources(sources, fit_data, progress)
    sampled = sample_examples(examples, config.ranker)
    rows = sampled.examples
    timings["ranker_sampling"] = {
        "examples": len(examples), "rows": len(rows), "negative_rate": config.ranker.negative_rate,
        "users": sampled.users_total, "users_kept": sampled.users_kept,
    }  # fmt: skip
    start = time.perf_counter()
    context = FeatureContext.build(fit_data)
    cs = CandidateSet.from_pairs(sources, ks, rows.user_id, rows.pin_id)
    x, spec = build_features(context, cs, np.asarray(rows.time_ms))
    timings["ranker_features"] = time.perf_counter() - start
    timings["ranker_rows"] = len(x)
    ranker = _fit_ranker(config, x, rows.labels(), rows.user_id, spec, timings, progress,
                         sampled.weights)  # fmt: skip
    return fit_data, ranker, spec


def _train_ratings(
    data: TrainingData,
    config: ModelsConfig,
    ks: dict[str, int],
    timings: dict[str, Any],
    progress: Progress,
) -> tuple[TrainingData, Ranker, Any]:
    split = RatingsSplit.of(data, config.ranker.seed)
    fit_data = replace(data, engagements=data.engagements.select(~split.label_rows))
    sources = enabled_sources(config)
    timings["ranker_sources"] = fit_sources(sources, fit_data, progress)
    start = time.perf_counter()
    context = FeatureContext.build(fit_data)
    rows = _ratings_rows(sources, ks, data, fit_data, split, config.ranker)
    x, spec = build_features(context, rows.candidates, fit_data.as_of_ms)
    timings["ranker_features"] = time.perf_counter() - start
    timings["ranker_rows"] = len(x)
    timings["ranker_users"] = len(rows.candidates.user_ids)
    ranker = _fit_ranker(config, x, rows.labels, rows.candidates.row_user, spec, timings,
                         progress, rows.weights)  # fmt: skip
    return fit_data, ranker, spec


def _fit_ranker(
    config: ModelsConfig,
    x: np.ndarray,
    labels: dict[str, np.ndarray],
    users: np.ndarray,
    spec: Any,
    timings: dict[str, Any],
    progress: Progress,
    weights: np.ndarray | None = None,
) -> Ranker:
    start = time.perf_counter()
    ranker = Ranker(config.ranker, spec.names).fit(x, labels, users, weights=weights)
    timings["ranker"] = time.perf_counter() - start
    timings["ranker_positives"] = {h: int(np.sum(y)) for h, y in labels.items()}
    progress("ranker_trained", {"seconds": timings["ranker"], "rows": len(x)})
    return ranker


@dataclass(frozen=True)
class RatingsSplit:
    """Ratings mode: which (user, pin) pairs are held out as labels, and their label kinds.

    A pair (all its events together) goes to the label part with probability LABEL_SHARE if
    the user engaged with it (any action but impressions and creating it); creates and
    impression-only pairs always stay in the fit part.
    """

    label_rows: np.ndarray  # bool per engagement row of data
    pairs: np.ndarray  # int64 sorted keys of label pairs (dense user * pins + dense pin)
    positive: np.ndarray  # bool per label pair: clicked, closed up or saved
    saved: np.ndarray  # bool per label pair
    hidden: np.ndarray  # bool per label pair
    users: IdIndex
    pin_index: IdIndex

    @classmethod
    def of(cls, data: TrainingData, seed: int) -> RatingsSplit:
        eng = data.engagements
        users, pin_index = IdIndex.of(eng.user_id), IdIndex.of(eng.pin_id, data.pins.pin_id)
        key = users.index(eng.user_id) * len(pin_index) + pin_index.index(eng.pin_id)
        uniq, inverse = np.unique(key, return_inverse=True)
        engaged = np.zeros(len(uniq), dtype=bool)
        created = np.zeros(len(uniq), dtype=bool)
        engaged[inverse[eng.action != Action.IMPRESSION]] = True
        created[inverse[eng.action == Action.CREATE]] = True
        draw = np.random.default_rng([seed, 7]).random(len(uniq)) < LABEL_SHARE
        held = draw & engaged & ~created
        rows = held[inverse]

        def flag(*acts: Action) -> np.ndarray:
            return _any_of(inverse, rows, eng.action, acts, len(uniq))[held]

        positive = flag(Action.CLOSEUP, Action.CLICK, Action.SAVE)
        return cls(rows, uniq[held], positive, flag(Action.SAVE), flag(Action.HIDE), users,
                   pin_index)  # fmt: skip

    def label_users(self) -> np.ndarray:
        return np.asarray(self.users.ids[np.unique(self.pairs // len(self.pin_index))])

    def labels_of(self, user_ids: np.ndarray, pin_ids: np.ndarray) -> dict[str, np.ndarray]:
        u, p = self.users.index(user_ids), self.pin_index.index(pin_ids)
        key = np.where((u >= 0) & (p >= 0), u * len(self.pin_index) + p, -1)
        if not len(self.pairs):
            zero = np.zeros(len(key), dtype=np.int8)
            return {"click": zero, "save": zero, "hide": zero}
        pos = np.searchsorted(self.pairs, key).clip(0, len(self.pairs) - 1)
        hit = self.pairs[pos] == key
        return {
            "click": (hit & self.positive[pos]).astype(np.int8),
            "save": (hit & self.saved[pos]).astype(np.int8),
            "hide": (hit & self.hidden[pos]).astype(np.int8),
        }


def _any_of(
    inverse: np.ndarray, rows: np.ndarray, action: np.ndarray, acts: tuple[Action, ...], n: int
) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[inverse[rows & np.isin(action, acts)]] = True
    return out


@dataclass(frozen=True)
class RatingsRows:
    """Ratings-mode ranker rows: candidates, their labels and sampling weights."""

    candidates: CandidateSet
    labels: dict[str, np.ndarray]
    weights: np.ndarray  # float64: 1, or the inverse keep rate of sampled unlabelled candidates


def _ratings_rows(
    sources: dict[str, CandidateSource],
    ks: dict[str, int],
    data: TrainingData,
    fit_data: TrainingData,
    split: RatingsSplit,
    config: RankerConfig,
) -> RatingsRows:
    """Candidates of the label users (fit-part pins excluded) plus sampled unengaged pins.

    Memory is bounded: at most MAX_RANKER_USERS users, and unlabelled candidates are sampled
    at the rate that keeps at most MAX_RANKER_ROWS of them if every source filled its k
    (weighted up to stand for the rest); labelled candidates are all kept.
    """
    rng = np.random.default_rng([config.seed, 13])
    users = split.label_users()
    if not len(users):
        raise ValueError("ratings mode: no user has an engagement to hold out as a label")
    if len(users) > MAX_RANKER_USERS:
        users = np.sort(rng.choice(users, MAX_RANKER_USERS, replace=False))
    exclude = _engaged_pins(fit_data, users)
    rate = min(1.0, MAX_RANKER_ROWS / (len(users) * sum(ks.values())))
    parts, weights = [], []
    for s in range(0, len(users), GATHER_CHUNK):
        cs = CandidateSet.gather(sources, ks, users[s : s + GATHER_CHUNK], exclude)
        keep, weight = _sample_unlabelled(cs, split, rng, rate)
        parts.append(cs.take(keep))
        weights.append(weight)
    neg_users, neg_pins = _sample_negatives(data, split, users, config.negatives_per_positive,
                                            config.seed)  # fmt: skip
    parts.append(CandidateSet.from_pairs(sources, ks, neg_users, neg_pins, exclude))
    weights.append(np.ones(len(neg_users)))
    candidates = CandidateSet.concat(parts)
    labels = split.labels_of(candidates.row_user, candidates.pin)
    return RatingsRows(candidates, labels, np.concatenate(weights))


def _sample_unlabelled(
    cs: CandidateSet, split: RatingsSplit, rng: np.random.Generator, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows to keep (every labelled one, unlabelled ones at ``rate``) and their weights."""
    labels = split.labels_of(cs.row_user, cs.pin)
    labelled = np.any([y > 0 for y in labels.values()], axis=0)
    keep = np.flatnonzero(labelled | (rng.random(len(cs)) < rate))
    return keep, np.where(labelled[keep], 1.0, 1.0 / rate)


def _engaged_pins(data: TrainingData, users: np.ndarray) -> dict[int, np.ndarray]:
    """Each user's positively engaged pins in ``data`` (what serving would exclude)."""
    pos = data.positives()
    keep = np.isin(pos.user_id, users)
    u, p = pos.user_id[keep], pos.pin_id[keep]
    order = np.lexsort((p, u))
    u, p = u[order], p[order]
    bounds = np.flatnonzero(np.diff(u)) + 1
    return {int(g[0]): np.unique(q) for g, q in zip(np.split(u, bounds), np.split(p, bounds),
                                                     strict=True) if len(g)}  # fmt: skip


def _sample_negatives(
    data: TrainingData, split: RatingsSplit, users: np.ndarray, per_positive: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``per_positive`` catalogue pins per labelled positive of ``users``, never engaged by
    the user (the ranker must also see pins no source proposed)."""
    catalogue = data.pins.pin_id
    if not len(catalogue):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    label_user = split.users.ids[split.pairs // len(split.pin_index)]
    chosen = split.positive & np.isin(label_user, users)
    users = np.repeat(label_user[chosen], per_positive)
    rng = np.random.default_rng([seed, 11])
    pins = catalogue[rng.integers(0, len(catalogue), len(users))]
    eng = data.engagements
    seen = np.unique(split.users.index(eng.user_id) * len(split.pin_index)
                     + split.pin_index.index(eng.pin_id))  # fmt: skip
    key = split.users.index(users) * len(split.pin_index) + split.pin_index.index(pins)
    fresh = ~np.isin(key, seen)
    _, first = np.unique(key[fresh], return_index=True)
    keep = np.flatnonzero(fresh)[np.sort(first)]
    return users[keep], pins[keep]


def _range(data: TrainingData) -> dict[str, Any]:
    t = data.engagements.time_ms
    return {
        "as_of_ms": int(data.as_of_ms),
        "engagements": len(data.engagements),
        "engagement_min_ms": int(t.min()) if len(t) else None,
        "engagement_max_ms": int(t.max()) if len(t) else None,
        "users": len(data.users()),
        "pins": len(data.pins),
        "positives": int((action_weights()[data.engagements.action] > 0).sum()),
    }


def _no_progress(stage: str, info: dict[str, Any]) -> None:
    log.debug("train_bundle %s %s", stage, info)


__all__ = [
    "RankerExamples",
    "RatingsSplit",
    "SampledExamples",
    "data_before",
    "enabled_sources",
    "sample_examples",
    "train_bundle",
]
