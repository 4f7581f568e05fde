"""The online overlay: a user's last minutes applied to one request's model inputs, no refit.

The bundle's sources and ``FeatureContext`` know everything up to the last training run; the
online store (``homefeed.serving.online``) knows what the user did since. For one request this
module turns that online state (``OnlineSignals``) into three adjustments, all pure functions
that never mutate the shared bundle:

* ``realtime_candidates``: an extra query seeded by the just-engaged pins: their co-engagement
  neighbours (the context's item-item CSR) and, when the bundle has a Pixie source, Pixie walks
  from them. Served under the source name ``REALTIME``.
* ``overlay_context``: a per-request ``FeatureContext`` holding only this user, whose topic
  affinity is the offline row plus the online deltas and whose recent pins start with the
  online positives, so ``topic_affinity`` and ``coengagement`` move with the session.
* ``online_exclusions``: hidden pins (forever) and pins seen since a time.

The online affinity deltas are taken to postdate the context (the store only holds what the
reaction consumer applied, and its keys expire); an event both in the training data and in the
store counts twice until the store forgets it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from homefeed.models.bundle import ModelBundle, top_k_per_row
from homefeed.models.data import Action, IdIndex, action_weights
from homefeed.models.features import (
    DAY_MS,
    RECENT_PINS,
    CandidateSet,
    FeatureContext,
    build_features,
    pair_scorer,
)
from homefeed.models.sources.base import CandidateSource

log = logging.getLogger(__name__)

REALTIME = "realtime"
HOUR_MS = 3_600_000
EMPTY_I64 = np.empty(0, dtype=np.int64)
U64 = (1 << 64) - 1


@dataclass(frozen=True)
class OnlineSignals:
    """One user's online state, as plain arrays (what the overlay needs from the store)."""

    user_id: int
    recent_pins: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # newest first
    recent_actions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    recent_times: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # epoch ms
    hidden: np.ndarray = field(default_factory=lambda: EMPTY_I64)
    seen_pins: np.ndarray = field(default_factory=lambda: EMPTY_I64)
    seen_times: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # latest time seen, ms
    topic_affinity: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.recent_pins)
        for name in ("recent_actions", "recent_times"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"OnlineSignals.{name}: {len(getattr(self, name))} values for "
                                 f"{n} recent_pins")  # fmt: skip
        if len(self.seen_times) != len(self.seen_pins):
            raise ValueError(f"OnlineSignals.seen_times: {len(self.seen_times)} values for "
                             f"{len(self.seen_pins)} seen_pins")  # fmt: skip

    @property
    def empty(self) -> bool:
        return not (len(self.recent_pins) or len(self.hidden) or len(self.seen_pins)
                    or self.topic_affinity)  # fmt: skip


# -- exclusions ----------------------------------------------------------------------------


def online_exclusions(signals: OnlineSignals, since_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(hidden, seen): every hidden pin, and the pins seen at ``since_ms`` or later."""
    hidden = np.unique(np.asarray(signals.hidden, dtype=np.int64))
    recent = np.asarray(signals.seen_times) >= since_ms
    return hidden, np.unique(np.asarray(signals.seen_pins, dtype=np.int64)[recent])


# -- realtime candidates -------------------------------------------------------------------


def engagement_seeds(
    signals: OnlineSignals, now_ms: int, *, half_life_ms: float, max_seeds: int
) -> tuple[np.ndarray, np.ndarray]:
    """The user's positively engaged online pins and their weights, heaviest first.

    A pin's weight is the sum over its engagements of the action weight halved every
    ``half_life_ms`` of age: a save a minute ago says more than a click this morning.
    """
    if half_life_ms <= 0 or max_seeds < 1:
        raise ValueError(f"half_life_ms = {half_life_ms}, max_seeds = {max_seeds}: both must be "
                         "positive")  # fmt: skip
    weight = action_weights()[np.asarray(signals.recent_actions, dtype=np.int64)]
    age = np.maximum(now_ms - np.asarray(signals.recent_times, dtype=np.float64), 0.0)
    weight = weight * np.exp2(-age / half_life_ms)
    positive = weight > 0
    pins, inverse = np.unique(signals.recent_pins[positive], return_inverse=True)
    total = np.bincount(inverse, weight[positive], minlength=len(pins))
    order = np.lexsort((pins, -total))[:max_seeds]
    return pins[order].astype(np.int64), total[order]


def coengaged_pins(
    context: FeatureContext, seeds: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pins co-engaged with the seeds: sum over seeds of seed weight x neighbour cosine."""
    p = IdIndex(context.pins).index(seeds)
    known = p >= 0
    p, w = p[known], np.asarray(weights, dtype=np.float64)[known]
    starts, ends = context.neighbour_indptr[p], context.neighbour_indptr[p + 1]
    lengths = ends - starts
    if not lengths.sum():
        return EMPTY_I64, np.empty(0)
    owner = np.repeat(np.arange(len(p)), lengths)
    edge = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    edge += np.repeat(starts, lengths)
    neighbours = context.neighbour_indices[edge]
    score = w[owner] * context.neighbour_weights[edge]
    dense, inverse = np.unique(neighbours, return_inverse=True)
    return context.pins[dense], np.bincount(inverse, score, minlength=len(dense))


def pixie_pins(
    source: CandidateSource, seeds: np.ndarray, weights: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pins Pixie walks from the seeds visit, with their combined visit counts.

    ``PixieSource.walk`` takes its own dense pin indices and needs query pins on the graph;
    the source exposes neither its pin ids nor its degrees publicly, so both are read here
    from its fitted state. A source without them (not Pixie, or a changed Pixie) yields none.
    """
    pin_index = getattr(source, "_pins", None)
    graph = getattr(source, "_pin_boards", None)
    walk = getattr(source, "walk", None)
    if not (isinstance(pin_index, IdIndex) and graph is not None and callable(walk)):
        log.debug("source %r offers no pin walks; realtime skips it", source)
        return EMPTY_I64, np.empty(0)
    q = pin_index.index(seeds)
    on_graph = q >= 0
    on_graph[on_graph] = graph.degree()[q[on_graph]] > 0
    if not on_graph.any():
        return EMPTY_I64, np.empty(0)
    rng = np.random.default_rng([seed & U64, *(int(s) & U64 for s in seeds[on_graph])])
    visited, counts = walk(q[on_graph], np.asarray(weights, np.float64)[on_graph], rng)
    return pin_index.ids[visited], np.asarray(counts, dtype=np.float64)


def similar_content(
    source: CandidateSource, seeds: np.ndarray, weights: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` pins whose content embedding is nearest a seed's, by weight x cosine.

    Uses the content source's public ``pin_ids`` / ``pin_embeddings`` by brute force (its
    faiss index is private): pins x seeds inner products, ~1 GFLOP per million pins at 10
    seeds and 100 dimensions.
    """
    pin_ids = getattr(source, "pin_ids", None)
    embeddings = getattr(source, "pin_embeddings", None)
    if not isinstance(pin_ids, np.ndarray) or not isinstance(embeddings, np.ndarray):
        return EMPTY_I64, np.empty(0)
    rows = IdIndex(pin_ids).index(seeds)
    known = rows >= 0
    if not known.any() or not len(pin_ids) or k < 1:
        return EMPTY_I64, np.empty(0)
    # Each seed's own neighbours (weighted, best seed counts), not the neighbours of the
    # seeds' mean: two saves of different topics should bring both, not their blurred middle.
    cosine = embeddings @ embeddings[rows[known]].T
    scores = (cosine * np.asarray(weights, np.float32)[known]).max(axis=1)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return pin_ids[top].astype(np.int64), scores[top].astype(np.float64)


@dataclass(frozen=True)
class RealtimeCandidates:
    """The realtime query's pins (best first, combined scores) and what each source found.

    ``proposals[name]`` is what the query through bundle source ``name`` found (best first),
    for that source's rank and score columns: a Pixie walk from the new pins is what Pixie
    would propose had its query pins included them.
    """

    pins: np.ndarray
    scores: np.ndarray
    proposals: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pins)


def realtime_candidates(
    context: FeatureContext,
    sources: Mapping[str, CandidateSource],
    signals: OnlineSignals,
    now_ms: int,
    k: int,
    *,
    exclude: np.ndarray = EMPTY_I64,
    half_life_ms: float = 6 * HOUR_MS,
    max_seeds: int = 10,
) -> RealtimeCandidates:
    """Up to ``k`` pins near the user's just-engaged pins, best first, and their scores.

    Three queries seeded by the online positives: co-engagement neighbours (the context),
    Pixie walks and content similarity (when the bundle has those sources). Their scores are
    each scaled to a best of 1 and added, so a pin several reach ranks first. The seeds
    themselves and ``exclude`` are never returned.
    """
    if k < 0:
        raise ValueError(f"k = {k}: must be >= 0")
    seeds, weights = engagement_seeds(signals, now_ms, half_life_ms=half_life_ms,
                                      max_seeds=max_seeds)  # fmt: skip
    if not len(seeds) or k == 0:
        return RealtimeCandidates(EMPTY_I64, np.empty(0, np.float32))
    banned = np.concatenate([seeds, np.asarray(exclude, np.int64)])
    found = {"coengagement": coengaged_pins(context, seeds, weights)}
    if "pixie" in sources:
        found["pixie"] = pixie_pins(sources["pixie"], seeds, weights, signals.user_id)
    if "content" in sources:
        found["content"] = similar_content(sources["content"], seeds, weights, k + len(banned))
    found = {name: _best_first(*got, banned) for name, got in found.items()}
    pins, scores = _combine(list(found.values()), k)
    proposals = {name: got for name, got in found.items() if name in sources}
    return RealtimeCandidates(pins, scores, proposals)


def _best_first(
    pins: np.ndarray, scores: np.ndarray, banned: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isin(pins, banned) & (scores > 0)
    pins, scores = pins[keep], scores[keep]
    order = np.lexsort((pins, -scores))  # ties by pin id: deterministic
    return pins[order], scores[order]


def _combine(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    pins = np.concatenate([p for p, _ in parts])
    scores = np.concatenate([s / s.max() if len(s) else s for _, s in parts])
    pins, inverse = np.unique(pins, return_inverse=True)
    total = np.bincount(inverse, scores, minlength=len(pins))
    order = np.lexsort((pins, -total))[:k]
    return pins[order], total[order].astype(np.float32)


def with_pins(
    cs: CandidateSet,
    user_id: int,
    pins: np.ndarray,
    sources: Mapping[str, CandidateSource],
    proposals: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> CandidateSet:
    """``cs`` (one user's) plus a row per pin in ``pins`` (none of them already in it).

    A new row carries, per source, what ``CandidateSet.gather`` would give it: the rank and
    score of the pin in ``proposals[source]`` if it is among that source's first k there,
    else rank ``k + 1`` and NaN; a source with a pair scorer gives its exact score always.
    """
    if not len(pins):
        return cs
    pins = np.asarray(pins, dtype=np.int64)
    users = np.full(len(pins), user_id, dtype=np.int64)
    scores = np.full((len(pins), len(cs.sources)), np.nan, dtype=np.float32)
    ranks = np.tile(np.asarray(cs.ks, dtype=np.float32) + 1, (len(pins), 1))
    for j, name in enumerate(cs.sources):
        if proposals and name in proposals:
            _fill_proposed(pins, *proposals[name], cs.ks[j], scores[:, j], ranks[:, j])
        scorer = pair_scorer(sources[name])
        if scorer is not None:
            scores[:, j] = np.asarray(scorer(users, pins), dtype=np.float32)
    extra = CandidateSet(users[:1], np.zeros(len(pins), np.int64), pins, scores, ranks,
                         cs.sources, cs.ks)  # fmt: skip
    return CandidateSet.concat([cs, extra])


def _fill_proposed(
    pins: np.ndarray,
    proposed: np.ndarray,
    proposed_scores: np.ndarray,
    k: int,
    out_score: np.ndarray,
    out_rank: np.ndarray,
) -> None:
    top = proposed[:k]
    index = IdIndex.of(top)
    rank = index.index(pins)  # position in the sorted ids, not yet the rank
    hit = rank >= 0
    position = np.empty(len(top), dtype=np.int64)
    position[index.index(top)] = np.arange(len(top))
    where = position[rank[hit]]
    out_rank[hit] = where + 1
    out_score[hit] = proposed_scores[where]


def recommend_with_recent(
    bundle: ModelBundle,
    user_ids: np.ndarray,
    k: int,
    exclude: dict[int, np.ndarray] | None,
    now_ms: int,
    recent: Mapping[int, Sequence[tuple[int, int, int]]],
    *,
    realtime_k: int = 100,
) -> np.ndarray:
    """(users x k) pins: ``bundle.recommend`` with each user's ``recent`` engagements overlaid.

    ``recent[user]`` lists ``(pin, Action code, time_ms)`` in event order (Action codes, not
    simulator event kinds). A user with recent positives also gets realtime candidates and a
    feature row with the recent pins and the topic affinity they add; hides there are excluded.
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    out = bundle.recommend(user_ids, k, exclude, now_ms=now_ms).pins
    for i, user in enumerate(user_ids.tolist()):
        if recent.get(user):
            signals = signals_from_recent(user, recent[user], bundle.context, now_ms)
            banned = (exclude or {}).get(user, EMPTY_I64)
            out[i] = _recommend_one(bundle, signals, k, banned, now_ms, realtime_k)
    return out


def signals_from_recent(
    user_id: int, recent: Sequence[tuple[int, int, int]], context: FeatureContext, now_ms: int
) -> OnlineSignals:
    """Signals of a list of (pin, action, time) in event order, affinity as the store keeps it."""
    rows = np.asarray(recent, dtype=np.int64).reshape(-1, 3)[::-1]  # newest first
    pins, actions, times = rows[:, 0].copy(), rows[:, 1].astype(np.int8), rows[:, 2].copy()
    return OnlineSignals(
        user_id, recent_pins=pins, recent_actions=actions, recent_times=times,
        hidden=np.unique(pins[actions == Action.HIDE]),
        topic_affinity=_affinity(context, pins, actions, times, now_ms),
    )  # fmt: skip


def _affinity(
    ctx: FeatureContext, pins: np.ndarray, actions: np.ndarray, times: np.ndarray, now_ms: int
) -> dict[str, float]:
    """Action weight shared over each pin's topics, halved every 12 hours (the store's rule)."""
    weight = action_weights()[actions.astype(np.int64)] * np.exp2(
        -np.maximum(now_ms - times, 0) / (12 * HOUR_MS))  # fmt: skip
    p = IdIndex(ctx.pins).index(pins)
    out: dict[str, float] = {}
    for row, w in zip(p.tolist(), weight.tolist(), strict=True):
        codes = ctx.pin_topic_codes[ctx.pin_topic_indptr[row] : ctx.pin_topic_indptr[row + 1]]
        for code in codes.tolist() if row >= 0 and w else []:
            out[ctx.topics[code]] = out.get(ctx.topics[code], 0.0) + w / len(codes)
    return out


def _recommend_one(
    bundle: ModelBundle,
    signals: OnlineSignals,
    k: int,
    exclude: np.ndarray,
    now_ms: int,
    realtime_k: int,
) -> np.ndarray:
    user = signals.user_id
    banned = np.union1d(np.asarray(exclude, np.int64), signals.hidden)
    cs = CandidateSet.gather(bundle.sources, bundle.ks, np.array([user]), {user: banned})
    rt = realtime_candidates(bundle.context, bundle.sources, signals, now_ms, realtime_k,
                             exclude=np.concatenate([banned, cs.pin]))  # fmt: skip
    cs = with_pins(cs, user, rt.pins, bundle.sources, rt.proposals)
    context = overlay_context(bundle.context, signals, now_ms)
    x, _ = build_features(context, cs, min(now_ms, context.as_of_ms))
    score = bundle.ranker.score(x) if len(cs) else np.empty(0)
    return top_k_per_row(cs.row, cs.pin, score, 1, k)[0][0]


# -- feature context -----------------------------------------------------------------------


def overlay_context(context: FeatureContext, signals: OnlineSignals, now_ms: int) -> FeatureContext:
    """A context for this request only: the user's row updated with the online signals.

    It holds a single user (the pin arrays are the shared ones, never written), so building it
    costs one row, not a copy of every user. Without online engagement or affinity the shared
    context is returned as it is.
    """
    if not len(signals.recent_pins) and not signals.topic_affinity:
        return context
    u = int(IdIndex(context.users).index(np.array([signals.user_id]))[0])
    row = _user_row(context, u)
    return replace(
        context,
        users=np.array([signals.user_id], dtype=np.int64),
        user_topic=(row["topic"] + topic_delta(context.topics, signals.topic_affinity))[None],
        user_counts=(row["counts"] + _online_counts(signals, row["counts"].shape[0]))[None],
        user_recent=row["recent"] + _online_recent_positives(signals, now_ms),
        user_recent_pins=merged_recent_pins(signals, row["recent_pins"])[None],
    )


def _user_row(context: FeatureContext, u: int) -> dict[str, np.ndarray]:
    """The user's offline row of every per-user array (zeros for a user the context lacks)."""
    if u >= 0:
        return {
            "topic": context.user_topic[u].astype(np.float32),
            "counts": context.user_counts[u].astype(np.float32),
            "recent": context.user_recent[u : u + 1].astype(np.float32),
            "recent_pins": context.user_recent_pins[u],
        }
    return {
        "topic": np.zeros(len(context.topics), np.float32),
        "counts": np.zeros(context.user_counts.shape[1], np.float32),
        "recent": np.zeros(1, np.float32),
        "recent_pins": np.full(RECENT_PINS, -1, dtype=np.int64),
    }


def topic_delta(topics: tuple[str, ...], affinity: Mapping[str, float]) -> np.ndarray:
    """The affinity deltas as a vector over ``topics`` (topics the context lacks are dropped)."""
    out = np.zeros(len(topics), dtype=np.float32)
    code = {t: i for i, t in enumerate(topics)}
    for topic, value in affinity.items():
        if topic in code:
            out[code[topic]] += float(value)
    return out


def merged_recent_pins(signals: OnlineSignals, offline: np.ndarray) -> np.ndarray:
    """The latest ``RECENT_PINS`` distinct positive pins: online ones (newest first), then the
    offline row; -1 padded like the context's."""
    positive = action_weights()[np.asarray(signals.recent_actions, dtype=np.int64)] > 0
    pins = np.concatenate([signals.recent_pins[positive], offline[offline >= 0]])
    _, first = np.unique(pins, return_index=True)
    distinct = pins[np.sort(first)][:RECENT_PINS]
    out = np.full(RECENT_PINS, -1, dtype=np.int64)
    out[: len(distinct)] = distinct
    return out


def _online_counts(signals: OnlineSignals, n_actions: int) -> np.ndarray:
    actions = np.asarray(signals.recent_actions, dtype=np.int64)
    return np.bincount(actions, minlength=n_actions)[:n_actions].astype(np.float32)


def _online_recent_positives(signals: OnlineSignals, now_ms: int) -> np.ndarray:
    positive = action_weights()[np.asarray(signals.recent_actions, dtype=np.int64)] > 0
    today = np.asarray(signals.recent_times) >= now_ms - DAY_MS
    return np.array([np.count_nonzero(positive & today)], dtype=np.float32)


__all__ = [
    "REALTIME",
    "OnlineSignals",
    "RealtimeCandidates",
    "coengaged_pins",
    "engagement_seeds",
    "merged_recent_pins",
    "online_exclusions",
    "overlay_context",
    "pixie_pins",
    "realtime_candidates",
    "recommend_with_recent",
    "signals_from_recent",
    "similar_content",
    "topic_delta",
    "with_pins",
]
