"""Offline metrics, vectorised over users.

Ranking metrics follow Microsoft Recommenders' ``python_evaluation`` for the protocol "top k
among the user's unseen items, ground truth = all the user's test items":

* only users with at least one test item count (their ``common_users``), each with weight 1;
* precision@k = hits / k, even when fewer than k items were recommended;
* recall@k = hits / n_relevant;
* MAP@k = sum over hits of (hits so far / rank), divided by n_relevant (their ``map``, and
  ``map_at_k`` before 1.2); ``cap=True`` divides by min(k, n_relevant) (their later
  ``map_at_k``);
* NDCG@k: binary relevance, discount 1 / log2(1 + rank); ideal DCG over min(k, n_relevant)
  items (their natural-log discount cancels in the ratio).

A recommendation matrix is (users x k) pin ids best first, ``NO_PIN`` padded; ground truth is
CSR-like: ``truth_indptr`` (users + 1) over ``truth_items``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from homefeed.models.sources.base import NO_PIN


@dataclass(frozen=True)
class Hits:
    """Which recommended slots are relevant, and how many relevant items each user has."""

    hits: np.ndarray  # bool (users, k)
    n_relevant: np.ndarray  # int64 (users,)

    @property
    def k(self) -> int:
        return int(self.hits.shape[1])

    def scored(self) -> Hits:
        """Only the users Recommenders averages over: those with at least one relevant item."""
        keep = self.n_relevant > 0
        return Hits(self.hits[keep], self.n_relevant[keep])


def truth_from_pairs(
    user_ids: np.ndarray, pair_users: np.ndarray, pair_items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, items) of each of ``user_ids``'s relevant items from (user, item) pairs."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    order = np.argsort(user_ids, kind="stable")
    pos = np.searchsorted(user_ids[order], pair_users).clip(0, max(len(user_ids) - 1, 0))
    known = (user_ids[order][pos] == pair_users) if len(user_ids) else np.zeros(0, bool)
    rows = order[pos[known]]
    items = np.asarray(pair_items, dtype=np.int64)[known]
    sort = np.lexsort((items, rows))
    rows, items = rows[sort], items[sort]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
    rows, items = rows[first], items[first]
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    return np.cumsum(indptr), items


def find_hits(recommended: np.ndarray, truth_indptr: np.ndarray, truth_items: np.ndarray) -> Hits:
    """Mark each recommended pin found in its user's ground truth (duplicates count once)."""
    recommended = np.asarray(recommended, dtype=np.int64)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-D (users x k), got shape {recommended.shape}")
    n, k = recommended.shape
    if len(truth_indptr) != n + 1:
        raise ValueError(
            f"truth_indptr has {len(truth_indptr)} entries, expected users + 1 = {n + 1}"
        )
    truth_rows = np.repeat(np.arange(n), np.diff(truth_indptr))
    codes = np.unique(np.concatenate([truth_items, recommended.ravel()]))
    width = len(codes) + 1
    truth_keys = np.unique(truth_rows * width + np.searchsorted(codes, truth_items))
    rec_keys = np.arange(n)[:, None] * width + np.searchsorted(codes, recommended)
    pos = np.searchsorted(truth_keys, rec_keys).clip(0, max(len(truth_keys) - 1, 0))
    hits = (truth_keys[pos] == rec_keys) if len(truth_keys) else np.zeros((n, k), dtype=bool)
    hits &= recommended != NO_PIN
    n_relevant = np.bincount(truth_rows[_first_of_runs(truth_rows, truth_items)], minlength=n)
    return Hits(hits, n_relevant.astype(np.int64))


def _first_of_runs(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    order = np.lexsort((items, rows))
    dup = np.zeros(len(rows), dtype=bool)
    same = (rows[order][1:] == rows[order][:-1]) & (items[order][1:] == items[order][:-1])
    dup[order[1:][same]] = True
    return ~dup


def _mean(per_user: np.ndarray) -> float:
    return float(per_user.mean()) if len(per_user) else 0.0


def precision_at_k(h: Hits) -> float:
    h = h.scored()
    return _mean(h.hits.sum(axis=1) / h.k)


def recall_at_k(h: Hits) -> float:
    h = h.scored()
    return _mean(h.hits.sum(axis=1) / h.n_relevant)


def map_at_k(h: Hits, cap: bool = False) -> float:
    """Mean average precision; divided by n_relevant, or by min(k, n_relevant) with ``cap``."""
    h = h.scored()
    ranks = np.arange(1, h.k + 1)
    precision_at_hits = np.where(h.hits, np.cumsum(h.hits, axis=1) / ranks, 0.0)
    denominator = np.minimum(h.n_relevant, h.k) if cap else h.n_relevant
    return _mean(precision_at_hits.sum(axis=1) / denominator)


def ndcg_at_k(h: Hits) -> float:
    h = h.scored()
    discount = 1.0 / np.log2(np.arange(2, h.k + 2))
    dcg = (h.hits * discount).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(h.n_relevant, h.k)]
    return _mean(dcg / ideal)


def ranking_metrics(h: Hits) -> dict[str, float]:
    """The four Recommenders ranking metrics at ``h.k``, keyed map, ndcg, precision, recall."""
    return {
        "map": map_at_k(h),
        "ndcg": ndcg_at_k(h),
        "precision": precision_at_k(h),
        "recall": recall_at_k(h),
    }


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by ranks (Mann-Whitney U), ties counted half; NaN when one class is missing."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape:
        raise ValueError(f"labels shape {labels.shape} != scores shape {scores.shape}")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1..ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def catalogue_coverage(recommended: np.ndarray, catalogue_size: int) -> float:
    """Share of the catalogue recommended to at least one user."""
    if catalogue_size <= 0:
        raise ValueError(f"catalogue_size must be positive, got {catalogue_size}")
    shown = np.unique(np.asarray(recommended)[np.asarray(recommended) != NO_PIN])
    return min(1.0, len(shown) / catalogue_size)


def feed_diversity(
    recommended: np.ndarray, pin_ids: np.ndarray, topic_matrix: np.ndarray, chunk: int = 4096
) -> float:
    """Mean intra-list diversity: 1 - mean pairwise cosine of topic vectors within each feed.

    Pins without topics (or unknown) are left out of their feed; feeds with fewer than two
    pins with topics are left out of the mean. Identical-topic feeds score 0; feeds whose
    pins share no topic score 1.
    """
    unit = _unit_rows(np.asarray(topic_matrix, dtype=np.float64))
    pin_ids = np.asarray(pin_ids, dtype=np.int64)
    recommended = np.asarray(recommended, dtype=np.int64)
    totals, count = 0.0, 0
    for start in range(0, len(recommended), chunk):
        per_feed = _chunk_diversity(recommended[start : start + chunk], pin_ids, unit)
        totals += float(per_feed.sum())
        count += len(per_feed)
    return totals / count if count else 0.0


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def _chunk_diversity(recs: np.ndarray, pin_ids: np.ndarray, unit: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(pin_ids, recs).clip(0, max(len(pin_ids) - 1, 0))
    known = (pin_ids[pos] == recs) & (recs != NO_PIN) if len(pin_ids) else recs < NO_PIN
    vectors = np.where(known[..., None], unit[pos], 0.0)
    has_topic = known & (np.abs(vectors).sum(axis=2) > 0)
    gram = np.einsum("nit,njt->nij", vectors, vectors)
    m = has_topic.sum(axis=1)
    pairs = m * (m - 1)
    off_diagonal = gram.sum(axis=(1, 2)) - np.einsum("nii->n", gram)
    valid = pairs > 0
    return 1.0 - off_diagonal[valid] / pairs[valid]
