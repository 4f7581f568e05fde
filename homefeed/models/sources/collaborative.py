"""Collaborative candidate sources: implicit ALS and item-item (EASE or a cosine neighbourhood).

Both learn from the user x pin confidence matrix that ``interaction_matrix`` builds from
engagements, and both answer a batch of users by scoring every pin for a chunk of users at a
time, so memory is ``chunk x pins`` floats whatever the batch size.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from homefeed.models.data import Action, IdIndex, TrainingData, action_weights
from homefeed.models.sources.base import Candidates, CandidateSource

DAY_MS = 86_400_000
SCORE_CELLS = 1 << 24  # floats per scoring chunk (64 MB of float32)
_PAIR_CHUNK = 65_536  # pairs per gather of B entries in item-item pair scoring
SMALL_BATCH = 64  # users: below this a BLAS thread pool costs more than it saves


@cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, built once (it scans them)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def single_threaded_blas(rows: int) -> Iterator[None]:
    """BLAS on one thread while scoring ``rows`` users, when that batch is small.

    A 1 x 64 by 64 x 20,000 product takes ~0.3 ms on one thread but ~10 ms when OpenBLAS
    wakes its pool on a busy 2-core machine; serving asks for one user at a time. The
    result is the same either way (the kernel does not split a single row across threads).
    """
    if rows > SMALL_BATCH:
        yield
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True)
class Interactions:
    """``matrix[u, p]``: how much user ``users.ids[u]`` likes pin ``pins.ids[p]`` (all > 0)."""

    matrix: sp.csr_matrix  # float32 (users x pins)
    users: IdIndex
    pins: IdIndex


def interaction_matrix(
    data: TrainingData,
    *,
    half_life_days: float | None = None,
    log_scale: bool = False,
    binarize: bool = False,
) -> Interactions:
    """The user x pin confidence matrix: summed action weights, positives only.

    Each engagement counts ``ACTION_WEIGHT[action]``, times ``0.5 ** (age / half_life)`` when
    ``half_life_days`` is set (age measured back from ``data.as_of_ms``). A pair whose sum is
    <= 0 (only impressions, or hidden) is no positive and is dropped. ``log_scale`` maps a sum
    w to ``log1p(w)`` so heavy repeat engagement does not drown everything else; ``binarize``
    maps it to 1. Pins are the engaged pins that are in the catalogue (all engaged pins when
    the catalogue is empty), so every column is a pin a source may serve.
    """
    _check_positive("half_life_days", half_life_days)
    eng = data.engagements
    weight = action_weights()[eng.action].astype(np.float64)
    if half_life_days is not None:
        age_days = (data.as_of_ms - eng.time_ms) / DAY_MS
        weight *= np.exp2(-np.maximum(age_days, 0.0) / half_life_days)
    users, pins, values = _sum_positive_pairs(eng.user_id, eng.pin_id, weight)
    if len(data.pins):
        keep = np.isin(pins, data.pins.pin_id)
        users, pins, values = users[keep], pins[keep], values[keep]
    if log_scale:
        values = np.log1p(values)
    if binarize:
        values = np.ones_like(values)
    user_index, pin_index = IdIndex.of(users), IdIndex.of(pins)
    matrix = sp.csr_matrix(
        (values.astype(np.float32), (user_index.index(users), pin_index.index(pins))),
        shape=(len(user_index), len(pin_index)),
    )
    return Interactions(matrix, user_index, pin_index)


def _sum_positive_pairs(
    users: np.ndarray, pins: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = weight != 0  # impressions (most rows) weigh 0 and cannot change a sum
    users, pins, weight = users[counts], pins[counts], weight[counts]
    if not len(users):
        return users[:0], pins[:0], weight[:0]
    # One int64 key per pair over dense indices: np.unique on rows (axis=0) sorts a
    # structured view and is several times slower. Keys sort like (user, pin).
    user_index, pin_index = IdIndex.of(users), IdIndex.of(pins)
    key = user_index.index(users) * len(pin_index) + pin_index.index(pins)
    pairs, inverse = np.unique(key, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=weight, minlength=len(pairs))
    keep = sums > 1e-9  # decayed positives stay positive; a hide can cancel a click
    pairs = pairs[keep]
    return (
        user_index.ids[pairs // len(pin_index)],
        pin_index.ids[pairs % len(pin_index)],
        sums[keep],
    )


def engaged_matrix(data: TrainingData, users: IdIndex, pins: IdIndex) -> sp.csr_matrix:
    """Boolean users x pins: the user did anything but look at the pin (hides included)."""
    eng = data.engagements.select(data.engagements.action != Action.IMPRESSION)
    rows, cols = users.index(eng.user_id), pins.index(eng.pin_id)
    keep = (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
        shape=(len(users), len(pins)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def check_k(k: int) -> int:
    """``k`` if it is a usable candidate count, else a ValueError naming it."""
    if not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    return int(k)


def _check_positive(field: str, value: float | None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{field} must be a positive number, got {value!r}")


class MatrixSource(CandidateSource):
    """Shared retrieval for sources that can score every pin for a user row of a matrix.

    Subclasses fit ``_users``, ``_pins``, ``_seen`` and implement ``_score_rows``; this class
    masks seen and excluded pins, answers unknown users with nothing, and chunks the batch.
    """

    exclude_seen: bool

    def __init__(self) -> None:
        self._users = IdIndex.of()
        self._pins = IdIndex.of()
        self._seen = sp.csr_matrix((0, 0), dtype=np.float32)

    @abstractmethod
    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Dense float32 (len(rows) x pins) scores for known user rows."""

    def _drop_scores(self, scores: np.ndarray) -> np.ndarray:
        """Which scores carry no evidence (never served); none by default."""
        return np.zeros(scores.shape, dtype=bool)

    def retrieve(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None = None
    ) -> Candidates:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = Candidates.empty(user_ids, check_k(k))
        rows = self._users.index(user_ids)
        known = np.flatnonzero(rows >= 0) if k > 0 else np.empty(0, np.int64)
        chunk = max(1, SCORE_CELLS // max(1, len(self._pins)))
        for start in range(0, len(known), chunk):
            at = known[start : start + chunk]
            with single_threaded_blas(len(at)):
                scores = self._masked_scores(user_ids[at], rows[at], exclude or {})
            got = Candidates.from_scores(user_ids[at], self._pins.ids, scores, k)
            out.pins[at], out.scores[at] = got.pins, got.scores
        return out

    def _masked_scores(
        self, user_ids: np.ndarray, rows: np.ndarray, exclude: dict[int, np.ndarray]
    ) -> np.ndarray:
        scores = self._score_rows(rows)
        scores[self._drop_scores(scores)] = -np.inf
        if self.exclude_seen:
            seen = self._seen[rows].tocoo()
            scores[seen.row, seen.col] = -np.inf
        for i, user in enumerate(user_ids.tolist()):
            if user in exclude:
                cols = self._pins.index(np.asarray(exclude[user]))
                scores[i, cols[cols >= 0]] = -np.inf
        return scores

    def _pair_index(
        self, user_ids: np.ndarray, pin_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        user_ids, pin_ids = np.asarray(user_ids), np.asarray(pin_ids)
        if user_ids.shape != pin_ids.shape:
            raise ValueError(
                f"user_ids and pin_ids must have one shape, got {user_ids.shape} and "
                f"{pin_ids.shape}"
            )
        rows, cols = self._users.index(user_ids), self._pins.index(pin_ids)
        return rows, cols, (rows >= 0) & (cols >= 0)

    def _save_index(self, path: Path) -> None:
        np.save(path / "users.npy", self._users.ids)
        np.save(path / "pins.npy", self._pins.ids)
        sp.save_npz(path / "seen.npz", self._seen)

    def _load_index(self, path: Path) -> None:
        self._users = IdIndex(np.load(path / "users.npy"))
        self._pins = IdIndex(np.load(path / "pins.npy"))
        self._seen = sp.load_npz(path / "seen.npz").tocsr()


class AlsSource(MatrixSource):
    """Implicit-feedback matrix factorisation (Hu, Koren, Volinsky 2008) via ``implicit``.

    Confidence is ``alpha * interaction_matrix``; a user's candidates are the pins with the
    largest ``user_factor . pin_factor``. Fitting runs on one thread with a fixed seed, which is
    what makes ``implicit``'s ALS deterministic.
    """

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 50.0,
        iterations: int = 15,
        alpha: float = 3.0,
        half_life_days: float | None = None,
        log_scale: bool = False,
        exclude_seen: bool = True,
        seed: int = 42,
    ) -> None:
        super().__init__()
        for field, value in (("factors", factors), ("iterations", iterations)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        _check_positive("alpha", alpha, allow_none=False)
        _check_positive("half_life_days", half_life_days)
        if not regularization >= 0:
            raise ValueError(f"regularization must be >= 0, got {regularization!r}")
        self.factors, self.regularization, self.iterations = factors, regularization, iterations
        self.alpha, self.half_life_days, self.log_scale = alpha, half_life_days, log_scale
        self.exclude_seen, self.seed = exclude_seen, seed
        self.user_factors = np.zeros((0, factors), dtype=np.float32)
        self.item_factors = np.zeros((0, factors), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "alpha": self.alpha,
            "half_life_days": self.half_life_days,
            "log_scale": self.log_scale,
            "exclude_seen": self.exclude_seen,
            "seed": self.seed,
        }

    def fit(self, data: TrainingData) -> None:
        inter = interaction_matrix(
            data, half_life_days=self.half_life_days, log_scale=self.log_scale
        )
        self._users, self._pins = inter.users, inter.pins
        self._seen = engaged_matrix(data, inter.users, inter.pins)
        if inter.matrix.nnz == 0:
            self.user_factors = np.zeros((len(inter.users), self.factors), dtype=np.float32)
            self.item_factors = np.zeros((len(inter.pins), self.factors), dtype=np.float32)
            return
        self.user_factors, self.item_factors = self._factorise(inter.matrix)

    def _factorise(self, matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        # implicit warns (an error under pytest) unless BLAS runs single-threaded; ALS does
        # its own threading, so a BLAS pool only adds contention.
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                num_threads=1,
                random_state=self.seed,
            )
            model.fit(matrix, show_progress=False)
        return (
            np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32),
        )

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors[rows] @ self.item_factors.T

    def score(self, user_ids: np.ndarray, pin_ids: np.ndarray) -> np.ndarray:
        """``user . pin`` factor products for pairs (float32); 0 where either is unknown."""
        rows, cols, ok = self._pair_index(user_ids, pin_ids)
        out = np.zeros(rows.shape, dtype=np.float32)
        out[ok] = np.einsum("ij,ij->i", self.user_factors[rows[ok]], self.item_factors[cols[ok]])
        return out

    def save_state(self, path: Path) -> None:
        self._save_index(path)
        np.save(path / "user_factors.npy", self.user_factors)
        np.save(path / "item_factors.npy", self.item_factors)

    def load_state(self, path: Path) -> None:
        self._load_index(path)
        self.user_factors = np.ascontiguousarray(np.load(path / "user_factors.npy"))
        self.item_factors = np.ascontiguousarray(np.load(path / "item_factors.npy"))


class ItemItemSource(MatrixSource):
    """Item-item co-engagement: ``score(user) = X[user] @ B`` for a pin x pin matrix B.

    Up to ``dense_max_items`` pins (10k: a dense inverse takes ~10 s and 0.4 GB there, ~100 s
    and 1.6 GB at 20k on 2 cores), B is EASE (Steck 2019): the closed form
    ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1``, i.e. B[:, j] is the ridge regression
    of pin j's column on all other pins with a zero diagonal. Past that a dense pins x pins
    inverse stops fitting in memory, and B is the top ``neighbours`` cosine similarities of
    each pin, computed a block of pins at a time.

    The sparse B is fitted on each user's latest ``max_user_pins`` engaged pins only: a user
    with d pins adds d^2 pairs to ``X^T X``, so the 0.15% of users with over 500 pins (bulk
    creators) made 99% of its cost at 10M events (9e9 pairs; 7.5e7 with the cap). EASE keeps
    every pin (its cost is bounded by pins^2 anyway). Scoring always reads all of a user's pins.
    """

    name = "item_item"

    def __init__(
        self,
        *,
        l2: float = 500.0,
        binarize: bool = True,
        dense_max_items: int = 10_000,
        neighbours: int = 100,
        power: float = 0.5,
        half_life_days: float | None = None,
        exclude_seen: bool = True,
        max_user_pins: int | None = 500,
    ) -> None:
        super().__init__()
        _check_positive("l2", l2, allow_none=False)
        if max_user_pins is not None and (not isinstance(max_user_pins, int) or max_user_pins < 1):
            raise ValueError(f"max_user_pins must be a positive integer or None, got "
                             f"{max_user_pins!r}")  # fmt: skip
        self.max_user_pins = max_user_pins
        _check_positive("half_life_days", half_life_days)
        for field, value in (("dense_max_items", dense_max_items), ("neighbours", neighbours)):
            if not isinstance(value, int) or value < (1 if field == "neighbours" else 0):
                raise ValueError(f"{field} must be a non-negative integer, got {value!r}")
        self.l2, self.binarize, self.dense_max_items = l2, binarize, dense_max_items
        if not (isinstance(power, int | float) and 0 <= power <= 1):
            raise ValueError(f"power must be in [0, 1], got {power!r}")
        self.power = power
        self.neighbours, self.half_life_days, self.exclude_seen = (
            neighbours,
            half_life_days,
            exclude_seen,
        )
        self._x = sp.csr_matrix((0, 0), dtype=np.float32)
        self.weights: np.ndarray | sp.csr_matrix = np.zeros((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {
            "l2": self.l2,
            "binarize": self.binarize,
            "dense_max_items": self.dense_max_items,
            "neighbours": self.neighbours,
            "power": self.power,
            "half_life_days": self.half_life_days,
            "exclude_seen": self.exclude_seen,
            "max_user_pins": self.max_user_pins,
        }

    @property
    def dense(self) -> bool:
        return isinstance(self.weights, np.ndarray)

    def fit(self, data: TrainingData) -> None:
        inter = interaction_matrix(data, half_life_days=self.half_life_days, binarize=self.binarize)
        self._users, self._pins, self._x = inter.users, inter.pins, inter.matrix
        self._seen = engaged_matrix(data, inter.users, inter.pins)
        if len(inter.pins) <= self.dense_max_items:
            self.weights = ease_weights(inter.matrix, self.l2)
        else:
            fit_x = latest_pins_per_user(inter, data, self.max_user_pins)
            self.weights = cosine_neighbours(fit_x, self.neighbours, self.power)

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        scores = self._x[rows] @ self.weights
        dense = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
        return dense.astype(np.float32, copy=False)

    def _drop_scores(self, scores: np.ndarray) -> np.ndarray:
        # Exactly 0: no co-engagement path from the user's pins; serving those is noise.
        return scores == 0

    def score(self, user_ids: np.ndarray, pin_ids: np.ndarray) -> np.ndarray:
        """``X[user] @ B[:, pin]`` for pairs (float32); 0 where either is unknown."""
        rows, cols, ok = self._pair_index(user_ids, pin_ids)
        out = np.zeros(rows.shape, dtype=np.float32)
        at = np.flatnonzero(ok)
        weights = self.weights
        if isinstance(weights, np.ndarray):
            out[at] = _dense_pair_scores(self._x, weights, rows[at], cols[at])
            return out
        out[at] = _sparse_pair_scores(self._x, weights, rows[at], cols[at])
        return out

    def save_state(self, path: Path) -> None:
        self._save_index(path)
        sp.save_npz(path / "x.npz", self._x)
        if isinstance(self.weights, np.ndarray):
            np.save(path / "weights.npy", self.weights)
        else:
            sp.save_npz(path / "weights.npz", self.weights)
        (path / "item_item.json").write_text(json.dumps({"dense": self.dense}))

    def load_state(self, path: Path) -> None:
        self._load_index(path)
        self._x = sp.load_npz(path / "x.npz").tocsr()
        dense = json.loads((path / "item_item.json").read_text())["dense"]
        if dense:
            # C order: a user's scores read whole rows of B (bundles saved by older code
            # hold B in Fortran order, and scipy would copy all of B on every product).
            self.weights = np.ascontiguousarray(np.load(path / "weights.npy"))
        else:
            self.weights = sp.load_npz(path / "weights.npz").tocsr()


def latest_pins_per_user(inter: Interactions, data: TrainingData, n: int | None) -> sp.csr_matrix:
    """``inter.matrix`` with each row cut to the user's ``n`` latest engaged pins.

    Latest by the pair's last positive engagement in ``data`` (ties: lower pin index).
    Rows with at most ``n`` pins, and every row when ``n`` is None, are unchanged.
    """
    x = inter.matrix.tocoo()
    lengths = np.diff(inter.matrix.indptr)
    if n is None or not len(lengths) or lengths.max() <= n:
        return inter.matrix
    eng = data.positives()
    rows, cols = inter.users.index(eng.user_id), inter.pins.index(eng.pin_id)
    query = np.where((rows >= 0) & (cols >= 0), rows * x.shape[1] + cols, -1)
    key = x.row.astype(np.int64) * x.shape[1] + x.col
    order = np.argsort(key)
    pos = np.searchsorted(key[order], query).clip(0, len(key) - 1)
    hit = key[order][pos] == query
    last = np.full(x.nnz, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, order[pos[hit]], eng.time_ms[hit])
    rank_order = np.lexsort((x.col, -last, x.row))
    sorted_rows = x.row[rank_order]
    rank = np.arange(x.nnz) - np.searchsorted(sorted_rows, sorted_rows)
    keep = rank_order[rank < n]
    return sp.csr_matrix((x.data[keep], (x.row[keep], x.col[keep])), shape=x.shape)


def ease_weights(x: sp.spmatrix, l2: float) -> np.ndarray:
    """EASE's B (pins x pins, float32, zero diagonal) for the user x pin matrix ``x``.

    Inverts the Gram matrix in place through its Cholesky factor (LAPACK potrf/potri), so
    peak memory is one pins x pins matrix. Float64 while that costs under 512 MB, else float32.
    """
    from scipy.linalg import lapack

    n = x.shape[1]
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    dtype = np.float64 if n * n * 8 <= 512 << 20 else np.float32
    gram = _dense_gram(x, dtype)
    gram[np.diag_indices(n)] += l2
    double = dtype == np.float64
    potrf = lapack.dpotrf if double else lapack.spotrf
    potri = lapack.dpotri if double else lapack.spotri
    factor, info = potrf(gram, lower=0, overwrite_a=1, clean=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix is not positive definite (info={info})")
    inverse, info = potri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix inversion failed (info={info})")
    _mirror_upper(inverse)
    # P is symmetric, so its transpose (a view) is P in C order: scoring reads rows of B.
    inverse = inverse.T
    inverse /= -np.diag(inverse).copy()[None, :]
    inverse[np.diag_indices(n)] = 0.0
    return inverse.astype(np.float32, copy=False)


def _dense_pair_scores(
    x: sp.csr_matrix, weights: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """``X[rows[i]] . B[:, cols[i]]`` per pair, reading only B at the rows' non-zero pins.

    A pair costs its user's engaged pins, not a column of B (gathering whole columns of a
    pins x pins matrix is a strided read of all of it).
    """
    out = np.zeros(len(rows), dtype=np.float32)
    indptr = x.indptr
    for start in range(0, len(rows), _PAIR_CHUNK):
        r, c = rows[start : start + _PAIR_CHUNK], cols[start : start + _PAIR_CHUNK]
        lengths = indptr[r + 1] - indptr[r]
        pair = np.repeat(np.arange(len(r)), lengths)
        nz = np.repeat(indptr[r] - np.cumsum(lengths) + lengths, lengths) + np.arange(len(pair))
        values = x.data[nz].astype(np.float64) * weights[x.indices[nz], c[pair]]
        out[start : start + len(r)] = np.bincount(pair, values, minlength=len(r))
    return out


def _sparse_pair_scores(
    x: sp.csr_matrix, weights: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """``(X @ B)[rows[i], cols[i]]`` per pair, one sparse product per block of distinct users.

    A user's row of ``X @ B`` touches only the neighbour lists of the user's pins, so it is
    cheap; slicing columns of a sparse B per pair (the obvious way) re-reads all of B.
    """
    out = np.zeros(len(rows), dtype=np.float32)
    if not len(rows):
        return out
    users, inverse = np.unique(rows, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    by_user = inverse[order]
    block = max(1, SCORE_CELLS // max(1, weights.shape[1]))
    for start in range(0, len(users), block):
        lo, hi = np.searchsorted(by_user, [start, start + block])
        sel = order[lo:hi]
        scores = (x[users[start : start + block]] @ weights).toarray()
        out[sel] = scores[inverse[sel] - start, cols[sel]]
    return out


def _dense_gram(x: sp.spmatrix, dtype: type, block: int = 2048) -> np.ndarray:
    """``x^T x`` as a dense F-order array (what LAPACK wants), a block of columns at a time.

    Co-engagement fills most of the Gram matrix, so the sparse product of the whole would
    cost twice the dense array; a block's sparse product stays small.
    """
    n = x.shape[1]
    columns, rows = sp.csc_matrix(x), sp.csr_matrix(x.T)
    gram = np.empty((n, n), dtype=dtype, order="F")
    for start in range(0, n, block):
        stop = min(n, start + block)
        gram[:, start:stop] = (rows @ columns[:, start:stop]).toarray()
    return gram


def _mirror_upper(a: np.ndarray, block: int = 1024) -> None:
    """Copy the upper triangle onto the lower one in place, a block of rows at a time."""
    n = a.shape[0]
    for start in range(0, n, block):
        stop = min(n, start + block)
        a[start:stop, :start] = a[:start, start:stop].T
        diagonal = a[start:stop, start:stop]
        a[start:stop, start:stop] = np.triu(diagonal) + np.triu(diagonal, 1).T


def cosine_neighbours(
    x: sp.spmatrix, neighbours: int, power: float = 0.5, block: int = 1024
) -> sp.csr_matrix:
    """Pins x pins sparse: each pin's top ``neighbours`` similarities (no self-loops).

    ``sim(i, j) = (x_i . x_j) / (|x_i| |x_j|) ** (2 * power)`` over pin columns: cosine at
    ``power`` 0.5, the raw co-engagement count at 0 (which is what EASE tends to under strong
    l2, so it tracks the dense path more closely). Computed with sparse products one block of
    pins at a time, and the top of each row is chosen among its non-zeros only (a dense
    ``block x pins`` selection would make the fit quadratic in pins), so time and memory
    follow the co-engagement pairs. Ties keep the lower pin index.
    """
    x = sp.csc_matrix(x, dtype=np.float32)
    n = x.shape[1]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel()) ** (2 * power)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    # Both operands CSR: a CSR @ CSC product converts the CSC operand on every block.
    xn = (x @ sp.diags(scale)).tocsr()
    xt = xn.T.tocsr()
    rows, cols, vals = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float32)]
    for start in range(0, n, block):
        product = xt[start : start + block] @ xn
        product.sort_indices()  # (row, col) order: what _top_per_row breaks ties by
        sims = product.tocoo()
        r, c, v = _top_per_row(sims.row.astype(np.int64) + start, sims.col, sims.data, neighbours)
        rows.append(r)
        cols.append(c)
        vals.append(v)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )


def _top_per_row(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest positive off-diagonal entries of each row, given in (row, col) order
    (ties: the lower column)."""
    keep = (vals > 0) & (rows != cols)
    rows, cols, vals = rows[keep], cols[keep].astype(np.int64), vals[keep]
    # One int64 sort key instead of a three-key lexsort: the row (relative, so it fits in the
    # high 32 bits), then the value's float32 bits inverted (positive floats' bits order like
    # the values); a stable sort keeps the (row, col) order among equal values.
    bits = vals.astype(np.float32).view(np.uint32).astype(np.int64)
    base = rows[0] if len(rows) else 0
    order = np.argsort(((rows - base) << 32) | (0xFFFFFFFF - bits), kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    top = rank < k
    return rows[top], cols[top], vals[top]


__all__ = [
    "AlsSource",
    "Interactions",
    "ItemItemSource",
    "check_k",
    "cosine_neighbours",
    "ease_weights",
    "engaged_matrix",
    "interaction_matrix",
    "latest_pins_per_user",
]
