"""Ranker features: ONE code path for training and serving, so the two cannot drift.

* ``CandidateSet``: (user, pin) rows with every source's score and rank; built by ``gather``
  (serving and ratings-mode training: the union of the sources' candidates) or by
  ``from_pairs`` (lake-mode training: impressed pins, sampled negatives). Both fill the exact
  pair score of sources that offer one (``score`` / ``similarity``) the same way.
* ``FeatureContext``: what features need besides candidates, computed from ``TrainingData`` as
  of its ``as_of_ms`` (user-topic affinity, pin and user counts, co-engagement neighbours).
  Plain arrays, saved as one ``.npz`` plus JSON.
* ``build_features(context, candidates, now_ms)``: the matrix the ranker reads, and its spec.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from homefeed.models.data import USER, Action, IdIndex, TrainingData, action_weights
from homefeed.models.sources.base import NO_PIN, CandidateSource

FEATURE_VERSION = 1
DAY_MS = 86_400_000
AFFINITY_HALF_LIFE_DAYS = 7.0  # older engagement says less about today's interests
RECENT_PINS = 10  # a user's latest positive pins used for co-engagement
FEW_USERS = 8  # batches of at most this many users take the per-user co-engagement path
COENGAGEMENT_NEIGHBOURS = 50  # kept per pin, bounds the neighbour matrix to pins x 50
COENGAGEMENT_HISTORY = 50  # latest positives per user counted in co-engagement
PRIOR_STRENGTH = 20.0  # pseudo-impressions of Bayesian smoothing of pin rates
PAIR_CHUNK = 200_000  # rows per call of a source's exact pair scorer
ACTIONS = tuple(Action)


def pair_scorer(source: CandidateSource) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The source's exact (user, pin) scorer if it offers one (ALS, item-item, content)."""
    for attr in ("score", "similarity"):
        fn = getattr(source, attr, None)
        if callable(fn):
            return fn
    return None


@dataclass(frozen=True)
class CandidateSet:
    """Flat (user, pin) rows; ``scores``/``ranks`` are (rows x sources).

    A source that did not propose a pin has rank ``k + 1`` and NaN score, unless it offers an
    exact pair scorer, in which case every row carries its exact score.
    """

    user_ids: np.ndarray  # int64 (n,): the batch
    row: np.ndarray  # int64 (rows,): index into user_ids
    pin: np.ndarray  # int64 (rows,)
    scores: np.ndarray  # float32 (rows, sources)
    ranks: np.ndarray  # float32 (rows, sources), 1 = the source's best
    sources: tuple[str, ...]
    ks: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.pin)

    @property
    def row_user(self) -> np.ndarray:
        return self.user_ids[self.row]

    @classmethod
    def gather(
        cls,
        sources: Mapping[str, CandidateSource],
        ks: Mapping[str, int],
        user_ids: np.ndarray,
        exclude: dict[int, np.ndarray] | None = None,
    ) -> CandidateSet:
        """The deduplicated union of every source's top-k for each user, grouped by user."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        names = tuple(sorted(sources))
        parts = []
        for j, name in enumerate(names):
            got = sources[name].retrieve(user_ids, _k(ks, name), exclude)
            if got.pins.shape[0] != len(user_ids):
                raise ValueError(f"source {name!r} answered {got.pins.shape[0]} users of "
                                 f"{len(user_ids)}")  # fmt: skip
            rows, cols = np.nonzero(got.pins != NO_PIN)
            parts.append((rows, got.pins[rows, cols], j, got.scores[rows, cols], cols + 1))
        out = _assemble(user_ids, names, tuple(_k(ks, n) for n in names), parts)
        return _with_exact_scores(out, sources)

    @classmethod
    def from_pairs(
        cls,
        sources: Mapping[str, CandidateSource],
        ks: Mapping[str, int],
        user_ids: np.ndarray,
        pin_ids: np.ndarray,
        exclude: dict[int, np.ndarray] | None = None,
        chunk: int = 2048,
    ) -> CandidateSet:
        """Rows exactly as the given pairs (order and duplicates kept), scored by lookup."""
        pairs_user = np.asarray(user_ids, dtype=np.int64)
        pairs_pin = np.asarray(pin_ids, dtype=np.int64)
        if pairs_user.shape != pairs_pin.shape:
            raise ValueError(f"user_ids {pairs_user.shape} and pin_ids {pairs_pin.shape} differ")
        users, row = np.unique(pairs_user, return_inverse=True)
        names = tuple(sorted(sources))
        kk = tuple(_k(ks, n) for n in names)
        scores = np.full((len(row), len(names)), np.nan, dtype=np.float32)
        ranks = np.tile(np.asarray(kk, dtype=np.float32) + 1, (len(row), 1))
        pin_index = IdIndex.of(pairs_pin)
        query = row.astype(np.int64) * len(pin_index) + pin_index.index(pairs_pin)
        for j, name in enumerate(names):
            for start in range(0, len(users), chunk):
                batch = users[start : start + chunk]
                got = sources[name].retrieve(batch, kk[j], exclude)
                _look_up(got.pins, got.scores, start, pin_index, query, scores[:, j], ranks[:, j])
        out = cls(users, row.astype(np.int64), pairs_pin, scores, ranks, names, kk)
        return _with_exact_scores(out, sources)

    def take(self, index: np.ndarray) -> CandidateSet:
        """The rows ``index`` (positions or a boolean mask); the batch stays the same."""
        return replace(self, row=self.row[index], pin=self.pin[index],
                       scores=self.scores[index], ranks=self.ranks[index])  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[CandidateSet]) -> CandidateSet:
        """Rows of every part (same sources), in order; the batch is the union of batches."""
        if not parts:
            raise ValueError("concat needs at least one CandidateSet")
        first = parts[0]
        for part in parts[1:]:
            if part.sources != first.sources or part.ks != first.ks:
                raise ValueError(f"sources differ: {first.sources} vs {part.sources}")
        users = np.unique(np.concatenate([p.user_ids for p in parts]))
        rows = np.searchsorted(users, np.concatenate([p.row_user for p in parts]))
        return cls(
            users, rows.astype(np.int64), np.concatenate([p.pin for p in parts]),
            np.concatenate([p.scores for p in parts]), np.concatenate([p.ranks for p in parts]),
            first.sources, first.ks,
        )  # fmt: skip


def _k(ks: Mapping[str, int], name: str) -> int:
    if name not in ks:
        raise ValueError(f"no k given for source {name!r}")
    return int(ks[name])


def _assemble(
    user_ids: np.ndarray,
    names: tuple[str, ...],
    ks: tuple[int, ...],
    parts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]],
) -> CandidateSet:
    row = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    pin = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    src = np.concatenate([np.full(len(p[0]), p[2]) for p in parts]) if parts else row
    score = np.concatenate([p[3] for p in parts]) if parts else np.empty(0, np.float32)
    rank = np.concatenate([p[4] for p in parts]) if parts else row
    order = np.lexsort((pin, row))
    row, pin, src, score, rank = row[order], pin[order], src[order], score[order], rank[order]
    new = np.ones(len(row), dtype=bool)
    new[1:] = (row[1:] != row[:-1]) | (pin[1:] != pin[:-1])
    inverse = np.cumsum(new) - 1
    n = int(new.sum())
    scores = np.full((n, len(names)), np.nan, dtype=np.float32)
    ranks = np.tile(np.asarray(ks, dtype=np.float32) + 1, (n, 1))
    scores[inverse, src] = score
    ranks[inverse, src] = rank
    return CandidateSet(
        user_ids, row[new].astype(np.int64), pin[new].astype(np.int64), scores, ranks, names, ks
    )


def _look_up(
    pins: np.ndarray,
    scores: np.ndarray,
    row_offset: int,
    pin_index: IdIndex,
    query: np.ndarray,
    out_score: np.ndarray,
    out_rank: np.ndarray,
) -> None:
    """Copy the retrieved score and rank of every queried (row, pin) key that was retrieved."""
    rows, cols = np.nonzero(pins != NO_PIN)
    idx = pin_index.index(pins[rows, cols])
    keep = idx >= 0
    keys = (rows[keep] + row_offset) * len(pin_index) + idx[keep]
    order = np.argsort(keys)
    keys, found_score = keys[order], scores[rows[keep], cols[keep]][order]
    found_rank = (cols[keep] + 1)[order]
    if not len(keys):
        return
    pos = np.searchsorted(keys, query).clip(0, len(keys) - 1)
    hit = keys[pos] == query
    out_score[hit] = found_score[pos[hit]]
    out_rank[hit] = found_rank[pos[hit]]


def _with_exact_scores(cs: CandidateSet, sources: Mapping[str, CandidateSource]) -> CandidateSet:
    """Overwrite the score column of each source with a pair scorer, for every row.

    Done for both constructors, so a pin another source proposed carries the same kind of
    value in training and in serving.
    """
    users = cs.row_user
    for j, name in enumerate(cs.sources):
        scorer = pair_scorer(sources[name])
        if scorer is None:
            continue
        for start in range(0, len(cs), PAIR_CHUNK):
            end = start + PAIR_CHUNK
            got = np.asarray(scorer(users[start:end], cs.pin[start:end]), dtype=np.float32)
            cs.scores[start:end, j] = got
    return cs


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered feature names the ranker was trained on, and the feature code version."""

    names: tuple[str, ...]
    version: int = FEATURE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "version": self.version}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FeatureSpec:
        return cls(tuple(value["names"]), int(value["version"]))


@dataclass(frozen=True)
class FeatureContext:
    """Everything features read besides candidates, as of ``as_of_ms``; arrays only."""

    as_of_ms: int
    topics: tuple[str, ...]
    priors: tuple[float, float, float]  # click, save, hide rate per impression, all pins
    users: np.ndarray  # int64 sorted (U,)
    user_topic: np.ndarray  # float32 (U, T): decayed, action-weighted topic engagement
    user_counts: np.ndarray  # float32 (U, actions)
    user_recent: np.ndarray  # float32 (U,): positives in the last day
    user_recent_pins: np.ndarray  # int64 (U, RECENT_PINS): latest positive pins, -1 padded
    pins: np.ndarray  # int64 sorted (P,)
    pin_topic_indptr: np.ndarray  # int64 (P+1,) CSR over topic codes
    pin_topic_codes: np.ndarray  # int32
    pin_created_ms: np.ndarray  # int64 (P,), -1 unknown
    pin_creator: np.ndarray  # int64 (P,), -1 unknown
    pin_counts: np.ndarray  # float32 (P, actions)
    pin_recent: np.ndarray  # float32 (P,): positives in the last day
    neighbour_indptr: np.ndarray  # int64 (P+1,) CSR: pin -> co-engaged pins (dense indices)
    neighbour_indices: np.ndarray  # int32
    neighbour_weights: np.ndarray  # float32, cosine of co-engagement counts
    follow_user: np.ndarray  # int64: user follows user follow_target
    follow_target: np.ndarray  # int64

    @classmethod
    def build(cls, data: TrainingData) -> FeatureContext:
        return _build_context(data)

    # Lookups derived from the arrays, built on first use and kept while the array lives
    # (``_derived``): a serving request then costs its own rows, not a pass over every pin,
    # user or follow edge. Keyed on the arrays, not on this object, because serving derives
    # a per-request context with ``replace`` that shares the pin and follow arrays.
    @property
    def user_index(self) -> IdIndex:
        return _derived("user_index", self.users, lambda: IdIndex(self.users))

    @property
    def pin_index(self) -> IdIndex:
        return _derived("pin_index", self.pins, lambda: IdIndex(self.pins))

    @property
    def user_topic_total(self) -> np.ndarray:
        """Sum of |affinity| over topics per user: the normaliser of ``topic_affinity``."""
        return _derived("topic_total", self.user_topic, lambda: np.abs(self.user_topic).sum(1))

    @property
    def neighbour_keys(self) -> np.ndarray:
        """Sorted ``pin * n_pins + neighbour`` of every co-engagement edge (CSR order)."""

        def build() -> np.ndarray:
            n = len(self.pins)
            keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.neighbour_indptr)) * n
            return keys + self.neighbour_indices

        return _derived("neighbour_keys", self.neighbour_indices, build)

    @property
    def follow_index(self) -> tuple[IdIndex, IdIndex, np.ndarray]:
        """(followers, followees, sorted ``follower * n_followees + followee`` keys)."""

        def build() -> tuple[IdIndex, IdIndex, np.ndarray]:
            a, b = IdIndex.of(self.follow_user), IdIndex.of(self.follow_target)
            keys = np.sort(a.index(self.follow_user) * len(b) + b.index(self.follow_target))
            return a, b, keys

        return _derived("follow_index", self.follow_user, build)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if _is_array_field(f.name)}
        np.savez(path / "context.npz", **arrays)
        meta = {"as_of_ms": self.as_of_ms, "topics": list(self.topics), "priors": self.priors}
        (path / "context.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: Path) -> FeatureContext:
        meta = json.loads((path / "context.json").read_text())
        with np.load(path / "context.npz", allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return cls(
            as_of_ms=int(meta["as_of_ms"]), topics=tuple(meta["topics"]),
            priors=tuple(meta["priors"]), **arrays,
        )  # fmt: skip


_DERIVED: dict[tuple[str, int], tuple[weakref.ref[np.ndarray], Any]] = {}


def _derived(name: str, array: np.ndarray, build: Callable[[], Any]) -> Any:
    """``build()``, computed once per live ``array`` (dropped when the array is collected).

    The entry holds a weak reference checked by identity, so a new array that reuses a dead
    one's ``id`` never gets its value. Two threads may both build on a miss; both are right.
    """
    key = (name, id(array))
    hit = _DERIVED.get(key)
    if hit is not None and hit[0]() is array:
        return hit[1]
    value = build()
    table = _DERIVED  # held by the closure: module globals are gone at interpreter exit

    def forget(_: weakref.ref[np.ndarray]) -> None:
        table.pop(key, None)

    _DERIVED[key] = (weakref.ref(array, forget), value)
    return value


def _is_array_field(name: str) -> bool:
    return name not in ("as_of_ms", "topics", "priors")


def _build_context(data: TrainingData) -> FeatureContext:
    eng = data.engagements
    users = IdIndex.of(eng.user_id, data.follows.user_id)
    pins = IdIndex.of(data.pins.pin_id, eng.pin_id)
    u, p = users.index(eng.user_id), pins.index(eng.pin_id)
    indptr, codes = _pin_topics(data, pins)
    counts_u = _counts(u, eng.action, len(users))
    counts_p = _counts(p, eng.action, len(pins))
    positive = action_weights()[eng.action] > 0
    recent = positive & (eng.time_ms >= data.as_of_ms - DAY_MS)
    created, creator = _pin_origin(data, pins)
    n_indptr, n_idx, n_w = _neighbours(u[positive], p[positive], eng.time_ms[positive], len(pins))
    follow = data.follows.target_type == USER
    return FeatureContext(
        as_of_ms=int(data.as_of_ms), topics=tuple(data.pins.topics),
        priors=_priors(counts_p), users=users.ids,
        user_topic=_user_topic(data, u, p, len(users), indptr, codes),
        user_counts=counts_u, user_recent=np.bincount(u[recent], minlength=len(users)).astype(
            np.float32),
        user_recent_pins=_recent_pins(u[positive], p[positive], eng.time_ms[positive], pins,
                                      len(users)),
        pins=pins.ids, pin_topic_indptr=indptr, pin_topic_codes=codes, pin_created_ms=created,
        pin_creator=creator, pin_counts=counts_p,
        pin_recent=np.bincount(p[recent], minlength=len(pins)).astype(np.float32),
        neighbour_indptr=n_indptr, neighbour_indices=n_idx, neighbour_weights=n_w,
        follow_user=data.follows.user_id[follow].astype(np.int64),
        follow_target=data.follows.target_id[follow].astype(np.int64),
    )  # fmt: skip


def _counts(index: np.ndarray, action: np.ndarray, n: int) -> np.ndarray:
    flat = index.astype(np.int64) * len(ACTIONS) + action.astype(np.int64)
    out = np.bincount(flat, minlength=n * len(ACTIONS)).astype(np.float32)
    return out.reshape(n, len(ACTIONS))


def _priors(pin_counts: np.ndarray) -> tuple[float, float, float]:
    imps = max(float(pin_counts[:, Action.IMPRESSION].sum()), 1.0)
    return tuple(  # type: ignore[return-value]
        min(float(pin_counts[:, a].sum()) / imps, 1.0)
        for a in (Action.CLICK, Action.SAVE, Action.HIDE)
    )


def _pin_topics(data: TrainingData, pins: IdIndex) -> tuple[np.ndarray, np.ndarray]:
    """Topic CSR re-indexed onto the context's pins (pins outside the catalogue: none)."""
    cat = data.pins
    lengths = np.zeros(len(pins), dtype=np.int64)
    where = pins.index(cat.pin_id)
    lengths[where] = np.diff(cat.topic_indptr)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    codes = np.empty(int(indptr[-1]), dtype=np.int32)
    starts = np.repeat(indptr[where] - cat.topic_indptr[:-1], np.diff(cat.topic_indptr))
    codes[np.arange(len(cat.topic_codes)) + starts] = cat.topic_codes
    return indptr, codes


def _pin_origin(data: TrainingData, pins: IdIndex) -> tuple[np.ndarray, np.ndarray]:
    created = np.full(len(pins), -1, dtype=np.int64)
    creator = np.full(len(pins), -1, dtype=np.int64)
    where = pins.index(data.pins.pin_id)
    created[where] = data.pins.created_ms
    creator[where] = data.pins.creator_id
    return created, creator


def _user_topic(
    data: TrainingData, u: np.ndarray, p: np.ndarray, n_users: int, indptr: np.ndarray,
    codes: np.ndarray,
) -> np.ndarray:  # fmt: skip
    eng = data.engagements
    age_days = (data.as_of_ms - eng.time_ms) / DAY_MS
    weight = action_weights()[eng.action] * np.power(0.5, age_days / AFFINITY_HALF_LIFE_DAYS)
    n_topics = np.diff(indptr)[p]
    keep = (weight != 0) & (n_topics > 0)
    u, p, weight, n_topics = u[keep], p[keep], weight[keep], n_topics[keep]
    rep = np.repeat(np.arange(len(p)), n_topics)
    offsets = np.arange(len(rep)) - np.repeat(np.cumsum(n_topics) - n_topics, n_topics)
    topic = codes[indptr[p][rep] + offsets]
    out = np.zeros(n_users * len(data.pins.topics), dtype=np.float64)
    np.add.at(out, u[rep] * len(data.pins.topics) + topic, (weight / n_topics)[rep])
    return out.reshape(n_users, len(data.pins.topics)).astype(np.float32)


def _recent_pins(
    u: np.ndarray, p: np.ndarray, t: np.ndarray, pins: IdIndex, n_users: int
) -> np.ndarray:
    """Each user's latest RECENT_PINS distinct positive pins (ids), latest first."""
    order = np.lexsort((-t, u))
    u, p = u[order], p[order]
    _, first_idx = np.unique(u * len(pins) + p, return_index=True)
    first = np.zeros(len(u), dtype=bool)
    first[first_idx] = True  # unique keeps the first (latest) row of each pair
    u, p = u[first], p[first]
    starts = np.searchsorted(u, np.arange(n_users))
    pos = np.arange(len(u)) - starts[u]
    keep = pos < RECENT_PINS
    out = np.full((n_users, RECENT_PINS), -1, dtype=np.int64)
    out[u[keep], pos[keep]] = pins.ids[p[keep]]
    return out


def _neighbours(
    u: np.ndarray, p: np.ndarray, t: np.ndarray, n_pins: int, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top co-engaged pins of every pin (cosine of co-counts), as a CSR of dense indices.

    Only each user's latest COENGAGEMENT_HISTORY pins count, and rows are built ``chunk`` pins
    at a time, so memory stays bounded by the history and the kept neighbours.
    """
    order = np.lexsort((-t, u))
    u, p = u[order], p[order]
    starts = np.searchsorted(u, u)
    keep = (np.arange(len(u)) - starts) < COENGAGEMENT_HISTORY
    n_users = int(u.max()) + 1 if len(u) else 0
    b = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (u[keep], p[keep])),
                      shape=(n_users, n_pins))  # fmt: skip
    b.data[:] = 1.0  # duplicates summed by the constructor; co-engagement counts people
    degree = np.asarray(b.sum(axis=0)).ravel()
    bt = b.T.tocsr()
    parts_rows, parts_cols, parts_w = [], [], []
    for start in range(0, n_pins, chunk):
        co = (bt[start : start + chunk] @ b).tocoo()
        rows, cols, w = co.row + start, co.col, co.data
        keep_pair = rows != cols
        rows, cols, w = rows[keep_pair], cols[keep_pair], w[keep_pair]
        w = w / np.sqrt(degree[rows] * degree[cols])
        order = np.lexsort((cols, -w, rows))
        rows, cols, w = rows[order], cols[order], w[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
        top = rank < COENGAGEMENT_NEIGHBOURS
        parts_rows.append(rows[top])
        parts_cols.append(cols[top])
        parts_w.append(w[top])
    rows = np.concatenate(parts_rows) if parts_rows else np.empty(0, np.int64)
    cols = np.concatenate(parts_cols) if parts_cols else np.empty(0, np.int64)
    weights = np.concatenate(parts_w) if parts_w else np.empty(0, np.float32)
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_pins))])
    return indptr.astype(np.int64), cols[order].astype(np.int32), weights[order].astype(np.float32)


def build_features(
    context: FeatureContext, candidates: CandidateSet, now_ms: int | np.ndarray
) -> tuple[np.ndarray, FeatureSpec]:
    """The (rows x features) float32 matrix of ``candidates``; NaN where a value is unknown.

    ``now_ms`` is the request time (serving) or each example's time (training).
    """
    users = candidates.row_user
    u = context.user_index.index(users)
    p = context.pin_index.index(candidates.pin)
    columns: dict[str, np.ndarray] = {}
    columns.update(_source_columns(candidates))
    columns.update(_topic_columns(context, u, p))
    columns.update(_pin_columns(context, p, now_ms))
    columns.update(_user_columns(context, u))
    columns["coengagement"] = _coengagement(context, u, p)
    columns["follows_creator"] = _follows_creator(context, users, p)
    names = tuple(columns)
    x = np.empty((len(candidates), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        x[:, j] = columns[name]
    return x, FeatureSpec(names)


def _source_columns(cs: CandidateSet) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(cs.sources):
        out[f"src_{name}_score"] = cs.scores[:, j]
        out[f"src_{name}_rank"] = cs.ranks[:, j]
    ks = np.asarray(cs.ks, dtype=np.float32)
    proposed = cs.ranks <= ks
    out["n_sources"] = proposed.sum(axis=1).astype(np.float32)
    best = (cs.ranks / ks).min(axis=1) if cs.sources else np.ones(len(cs), np.float32)
    out["best_rank_share"] = best
    return out


def _take(values: np.ndarray, index: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """values[index] with ``fill`` where index is -1 (unknown user or pin)."""
    if not len(values):
        return np.full(index.shape, fill, dtype=np.float32)
    got = values[np.maximum(index, 0)].astype(np.float32)
    got[index < 0] = fill
    return got


def _topic_columns(ctx: FeatureContext, u: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Dot of the user's topic vector with the pin's topics (each pin topic weighted 1/n)."""
    if not len(ctx.users):
        nan = np.full(len(p), np.nan)
        return {"topic_affinity": nan, "topic_affinity_raw": nan}
    n_topics = np.diff(ctx.pin_topic_indptr)[np.maximum(p, 0)] * (p >= 0)
    rep = np.repeat(np.arange(len(p)), n_topics)
    offsets = np.arange(len(rep)) - np.repeat(np.cumsum(n_topics) - n_topics, n_topics)
    topic = ctx.pin_topic_codes[ctx.pin_topic_indptr[p[rep]] + offsets]
    known = u[rep] >= 0
    raw = np.zeros(len(p), dtype=np.float64)
    vals = ctx.user_topic[np.maximum(u[rep], 0), topic] / n_topics[rep]
    np.add.at(raw, rep[known], vals[known])
    norm = _take(ctx.user_topic_total, u, fill=0.0)
    share = np.divide(raw * len(ctx.topics), norm, out=np.zeros_like(raw), where=norm > 0)
    unknown = (u < 0) | (n_topics == 0)
    raw[unknown], share[unknown] = np.nan, np.nan
    return {"topic_affinity": share, "topic_affinity_raw": raw}


def _pin_columns(
    ctx: FeatureContext, p: np.ndarray, now_ms: int | np.ndarray
) -> dict[str, np.ndarray]:
    counts = {a: _take(ctx.pin_counts[:, a], p, fill=0.0) for a in ACTIONS}
    imps = counts[Action.IMPRESSION]
    out = {f"pin_{a.name.lower()}s": counts[a] for a in ACTIONS}
    for prior, action in zip(ctx.priors, (Action.CLICK, Action.SAVE, Action.HIDE), strict=True):
        rate = (counts[action] + PRIOR_STRENGTH * prior) / (imps + PRIOR_STRENGTH)
        out[f"pin_{action.name.lower()}_rate"] = rate
    out["pin_recent_positives"] = _take(ctx.pin_recent, p, fill=0.0)
    created = _take(ctx.pin_created_ms.astype(np.float64), p)
    created[created < 0] = np.nan
    out["pin_age_hours"] = (np.asarray(now_ms, dtype=np.float64) - created) / 3_600_000
    return out


def _user_columns(ctx: FeatureContext, u: np.ndarray) -> dict[str, np.ndarray]:
    out = {f"user_{a.name.lower()}s": _take(ctx.user_counts[:, a], u, fill=0.0) for a in ACTIONS}
    out["user_recent_positives"] = _take(ctx.user_recent, u, fill=0.0)
    return out


def _coengagement(ctx: FeatureContext, u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Sum of the pin's neighbour weights over the user's recent pins (0 when none)."""
    users = np.unique(u)
    if len(users) <= FEW_USERS:
        return _coengagement_by_user(ctx, users, u, p)
    recent = ctx.user_recent_pins[np.maximum(u, 0)] if len(ctx.users) else np.full(
        (len(u), RECENT_PINS), -1)  # fmt: skip
    r = ctx.pin_index.index(recent)
    r[(u < 0)[:, None] | (recent < 0)] = -1
    rows, cols = np.nonzero((r >= 0) & (p >= 0)[:, None])
    src, dst = r[rows, cols], p[rows]
    keys = ctx.neighbour_keys
    query = src * len(ctx.pins) + dst
    out = np.zeros(len(u), dtype=np.float64)
    if len(keys) and len(query):
        pos = np.searchsorted(keys, query).clip(0, len(keys) - 1)
        hit = keys[pos] == query
        np.add.at(out, rows[hit], ctx.neighbour_weights[pos[hit]])
    return out


def _coengagement_by_user(
    ctx: FeatureContext, users: np.ndarray, u: np.ndarray, p: np.ndarray
) -> np.ndarray:
    """``_coengagement`` for few users (a serving request has one): each user's recent pins'
    neighbour lists summed once, then the candidates looked up in that short list, instead
    of one lookup per (candidate, recent pin) in every edge of the graph."""
    out = np.zeros(len(u), dtype=np.float64)
    indptr = ctx.neighbour_indptr
    for user in users[users >= 0].tolist():
        recent = ctx.user_recent_pins[user]
        r = ctx.pin_index.index(recent[recent >= 0])
        r = r[r >= 0]
        lengths = indptr[r + 1] - indptr[r]
        if not lengths.sum():
            continue
        edge = np.repeat(indptr[r] - np.cumsum(lengths) + lengths, lengths) + np.arange(
            lengths.sum()
        )
        dst, inverse = np.unique(ctx.neighbour_indices[edge], return_inverse=True)
        weight = np.bincount(inverse, ctx.neighbour_weights[edge].astype(np.float64))
        rows = np.flatnonzero((u == user) & (p >= 0))
        pos = np.searchsorted(dst, p[rows]).clip(0, len(dst) - 1)
        hit = dst[pos] == p[rows]
        out[rows[hit]] = weight[pos[hit]]
    return out


def _follows_creator(ctx: FeatureContext, users: np.ndarray, p: np.ndarray) -> np.ndarray:
    creator = np.where(p >= 0, ctx.pin_creator[np.maximum(p, 0)], -1) if len(ctx.pins) else (
        np.full(len(p), -1))  # fmt: skip
    if not len(ctx.follow_user):
        return np.zeros(len(p), dtype=np.float32)
    a, b, follow_keys = ctx.follow_index
    ua, tb = a.index(users), b.index(creator)
    query = np.where((ua >= 0) & (tb >= 0), ua * len(b) + tb, -1)  # -1 is never a key
    pos = np.searchsorted(follow_keys, query).clip(0, len(follow_keys) - 1)
    return ((follow_keys[pos] == query) & (creator >= 0)).astype(np.float32)


__all__ = ["CandidateSet", "FeatureContext", "FeatureSpec", "build_features", "pair_scorer"]
