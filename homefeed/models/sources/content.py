"""Content: pins whose topics and title words resemble what the user engaged with.

A pin's embedding is its topic vector (L2-normalised) next to a hashed bag of its title words
(``text_dims`` buckets, zlib.crc32 so it is the same in every process), each part scaled by its
weight and the whole L2-normalised. A user's interest vector is the action-weighted,
recency-decayed sum of the embeddings of the pins they engaged with (hides count against),
normalised, so the inner product with a pin embedding is their cosine. A faiss index answers a
batch of users at once: exact (``IndexFlatIP``) below ``exact_below`` pins, HNSW above.

The ranker reads ``pin_embeddings`` (aligned with ``pin_ids``), ``user_vectors`` (aligned with
``user_ids``) and ``similarity(user_ids, pin_ids)`` as features.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from scipy import sparse

from homefeed.models.data import IdIndex, Pins, TrainingData, action_weights
from homefeed.models.sources.base import Candidates, CandidateSource, excluded_keys

DAY_MS = 86_400_000
INDEX_FILE = "content.faiss"
_WORD = re.compile(r"[^\W\d_]{2,}")  # words of letters: "#12" in a title is no topic
_BATCH_USERS = 4096
_BATCH_PAIRS = 65_536


class ContentSource(CandidateSource):
    """Nearest pins to each user's interest vector in topic + title space."""

    name = "content"

    def __init__(
        self,
        *,
        topic_weight: float = 1.0,
        text_weight: float = 0.5,
        text_dims: int = 64,
        half_life_days: float = 14.0,
        exact_below: int = 50_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
    ) -> None:
        _require("topic_weight", topic_weight, 0)
        _require("text_weight", text_weight, 0)
        _require("half_life_days", half_life_days, 0, strict=True)
        for field, value in [
            ("text_dims", text_dims),
            ("exact_below", exact_below),
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
        ]:
            _require(field, value, 1, integer=True)
        self.topic_weight, self.text_weight = float(topic_weight), float(text_weight)
        self.text_dims, self.half_life_days = text_dims, float(half_life_days)
        self.exact_below, self.hnsw_m = exact_below, hnsw_m
        self.ef_construction, self.ef_search = ef_construction, ef_search
        self.pin_ids = np.empty(0, dtype=np.int64)
        self.pin_embeddings = np.empty((0, 0), dtype=np.float32)
        self.user_ids = np.empty(0, dtype=np.int64)
        self.user_vectors = np.empty((0, 0), dtype=np.float32)
        # faiss row r is one distinct embedding shared by pins _point_pins[indptr[r]:indptr[r+1]]
        self._point_indptr = np.zeros(1, dtype=np.int64)
        self._point_pins = np.empty(0, dtype=np.int64)
        self._index: faiss.Index | None = None

    def params(self) -> dict[str, Any]:
        return {
            "topic_weight": self.topic_weight,
            "text_weight": self.text_weight,
            "text_dims": self.text_dims,
            "half_life_days": self.half_life_days,
            "exact_below": self.exact_below,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
        }

    @property
    def index_kind(self) -> str:
        """Which search answers retrieve: "exact", "hnsw", or "none" before fit or without pins."""
        if self._index is None:
            return "none"
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "exact"

    def embed_pins(self, pins: Pins) -> np.ndarray:
        """(pins x d) float32 unit rows (zero rows for pins with neither topics nor words)."""
        parts = [self.topic_weight * _unit_rows(pins.topic_matrix())]
        if pins.text and any(pins.text):
            parts.append(self.text_weight * _unit_rows(hashed_words(pins.text, self.text_dims)))
        return _unit_rows(np.hstack(parts).astype(np.float32))

    def fit(self, data: TrainingData) -> None:
        self.pin_ids = data.pins.pin_id.copy()
        self.pin_embeddings = self.embed_pins(data.pins)
        self.user_ids, self.user_vectors = self._user_vectors(data)
        points, self._point_indptr, self._point_pins = _distinct_rows(self.pin_embeddings)
        self._index = self._build_index(points)

    def similarity(self, user_ids: np.ndarray, pin_ids: np.ndarray) -> np.ndarray:
        """Cosine of user_ids[i]'s interest and pin_ids[i]'s embedding, 0 where one is unknown."""
        user_ids, pin_ids = np.asarray(user_ids, np.int64), np.asarray(pin_ids, np.int64)
        if user_ids.shape != pin_ids.shape:
            raise ValueError(
                "user_ids and pin_ids must pair up, got shapes "
                f"{user_ids.shape} and {pin_ids.shape}"
            )
        u = IdIndex(self.user_ids).index(user_ids)
        p = IdIndex(self.pin_ids).index(pin_ids)
        out = np.zeros(user_ids.shape, dtype=np.float32)
        both = np.flatnonzero((u >= 0) & (p >= 0))
        for start in range(0, len(both), _BATCH_PAIRS):
            at = both[start : start + _BATCH_PAIRS]
            out[at] = np.einsum("ij,ij->i", self.user_vectors[u[at]], self.pin_embeddings[p[at]])
        return out

    def retrieve(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None = None
    ) -> Candidates:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = Candidates.empty(user_ids, k)
        rows = IdIndex(self.user_ids).index(user_ids)
        known = np.flatnonzero(rows >= 0)
        if self._index is None or k <= 0:
            return out
        for start in range(0, len(known), _BATCH_USERS):
            chunk = known[start : start + _BATCH_USERS]
            banned = excluded_keys(user_ids[chunk], exclude, self.pin_ids)
            self._search_into(out, chunk, self.user_vectors[rows[chunk]], banned, k)
        return out

    def _search_into(
        self, out: Candidates, out_rows: np.ndarray, queries: np.ndarray, banned: np.ndarray, k: int
    ) -> None:
        """Search with enough extra neighbours to absorb each row's excluded pins."""
        assert self._index is not None
        size = len(self.pin_ids)
        need = k + int(np.bincount(banned // size, minlength=len(out_rows)).max(initial=0))
        fetch = min(self._index.ntotal, need)  # every point holds at least one pin
        scores, found = self._index.search(np.ascontiguousarray(queries), fetch)
        row, pin, score = self._expand(found, scores, need)
        keep = ~np.isin(row * size + pin, banned)
        row, pin, score = row[keep], pin[keep], score[keep]
        order = np.lexsort((pin, -score, row))  # ties by pin id, whatever the index returned
        row, pin, score = row[order], pin[order], score[order]
        rank = _rank_within(row)
        top = rank < k
        out.pins[out_rows[row[top]], rank[top]] = self.pin_ids[pin[top]]
        out.scores[out_rows[row[top]], rank[top]] = score[top]

    def _expand(
        self, found: np.ndarray, scores: np.ndarray, need: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, pin index, score): the pins of each row's points in order, ``need`` at most."""
        found = found.ravel()
        sizes = np.where(found >= 0, np.diff(self._point_indptr)[found.clip(0)], 0)
        sizes = sizes.reshape(scores.shape)
        before = np.cumsum(sizes, axis=1) - sizes
        take = np.clip(need - before, 0, sizes).ravel()
        row = np.repeat(np.repeat(np.arange(scores.shape[0]), scores.shape[1]), take)
        first = np.repeat(self._point_indptr[found.clip(0)], take)
        offset = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
        return row, self._point_pins[first + offset], np.repeat(scores.ravel(), take)

    def _user_vectors(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        eng = data.engagements
        pin = data.pins.index.index(eng.pin_id)
        age_days = (data.as_of_ms - eng.time_ms) / DAY_MS
        weight = action_weights()[eng.action] * np.power(0.5, age_days / self.half_life_days)
        keep = (pin >= 0) & (weight != 0)
        users = IdIndex.of(eng.user_id[keep])
        interest = sparse.csr_matrix(
            (weight[keep].astype(np.float32), (users.index(eng.user_id[keep]), pin[keep])),
            shape=(len(users), len(data.pins)),
        )
        vectors = _unit_rows(np.asarray(interest @ self.pin_embeddings, dtype=np.float32))
        has_interest = np.any(vectors != 0, axis=1)  # hides cancelling saves leave nothing
        return users.ids[has_interest], vectors[has_interest]

    def _build_index(self, vectors: np.ndarray) -> faiss.Index | None:
        if not len(vectors):
            return None
        vectors = np.ascontiguousarray(vectors)
        dim = vectors.shape[1]
        if len(vectors) < self.exact_below:
            flat = faiss.IndexFlatIP(dim)
            flat.add(vectors)
            return flat
        graph = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        graph.hnsw.efSearch = self.ef_search
        _add_single_threaded(graph, vectors)
        return graph

    def save_state(self, path: Path) -> None:
        np.save(path / "pin_ids.npy", self.pin_ids)
        np.save(path / "pin_embeddings.npy", self.pin_embeddings)
        np.save(path / "user_ids.npy", self.user_ids)
        np.save(path / "user_vectors.npy", self.user_vectors)
        np.save(path / "point_indptr.npy", self._point_indptr)
        np.save(path / "point_pins.npy", self._point_pins)
        if self._index is not None:
            faiss.write_index(self._index, str(path / INDEX_FILE))

    def load_state(self, path: Path) -> None:
        def load(name: str) -> np.ndarray:
            return np.load(path / f"{name}.npy", allow_pickle=False)

        self.pin_ids, self.pin_embeddings = load("pin_ids"), load("pin_embeddings")
        self.user_ids, self.user_vectors = load("user_ids"), load("user_vectors")
        self._point_indptr, self._point_pins = load("point_indptr"), load("point_pins")
        index_file = path / INDEX_FILE
        self._index = faiss.read_index(str(index_file)) if index_file.exists() else None
        if isinstance(self._index, faiss.IndexHNSWFlat):
            self._index.hnsw.efSearch = self.ef_search


def hashed_words(texts: tuple[str, ...], dims: int) -> np.ndarray:
    """(texts x dims) float32 signed counts of words hashed with crc32 (stable across runs)."""
    rows: list[int] = []
    buckets: list[int] = []
    signs: list[float] = []
    seen: dict[str, tuple[int, float]] = {}
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            if word not in seen:
                h = zlib.crc32(word.encode())
                # The top bit picks the sign so colliding words tend to cancel, not add up.
                seen[word] = (h % dims, 1.0 if h >> 31 else -1.0)
            bucket, sign = seen[word]
            rows.append(row)
            buckets.append(bucket)
            signs.append(sign)
    out = np.zeros((len(texts), dims), dtype=np.float32)
    np.add.at(out, (np.array(rows, dtype=np.int64), np.array(buckets, dtype=np.int64)), signs)
    return out


def _distinct_rows(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct non-zero rows and, as CSR, the pins (ascending) that share each of them.

    Many pins share an embedding (same topics, same title words). Indexing each distinct
    vector once keeps the index small, and HNSW in particular loses recall on duplicates: a
    clique of identical points leaves the graph poorly connected.
    """
    nonzero = np.flatnonzero(np.any(embeddings != 0, axis=1))
    if not len(nonzero):
        empty = np.empty(0, dtype=np.int64)
        return embeddings[:0], np.zeros(1, dtype=np.int64), empty
    # Rows as opaque byte strings: np.unique(axis=0) compares them field by field through a
    # structured view, several times slower (15 s of a 10M-event fit).
    rows = np.ascontiguousarray(embeddings[nonzero])
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    points = rows[first]
    order = np.argsort(inverse.ravel(), kind="stable")  # stable: pins ascending per point
    counts = np.bincount(inverse.ravel(), minlength=len(points))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return points, indptr, nonzero[order].astype(np.int64)


def _add_single_threaded(index: faiss.Index, vectors: np.ndarray) -> None:
    """HNSW insertion is order-dependent; one thread makes the graph the same on every fit."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(vectors)
    finally:
        faiss.omp_set_num_threads(threads)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Position of each row inside its run of equal ``groups`` values (groups sorted)."""
    if not len(groups):
        return np.empty(0, dtype=np.int64)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    return np.arange(len(groups)) - np.maximum.accumulate(
        np.where(starts, np.arange(len(groups)), 0)
    )


def _require(
    field: str, value: object, low: float, *, strict: bool = False, integer: bool = False
) -> None:
    kinds = int if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok:
        ok = float(value) > low if strict else float(value) >= low  # type: ignore[arg-type]
    if not ok:
        kind = "an int" if integer else "a number"
        raise ValueError(f"{field} must be {kind} {'>' if strict else '>='} {low}, got {value!r}")


__all__ = ["ContentSource", "hashed_words"]
