"""Offline metrics: exact small cases by hand, properties, and a per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.models.evaluation.metrics import (
    auc,
    catalogue_coverage,
    feed_diversity,
    find_hits,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    truth_from_pairs,
)
from homefeed.models.sources.base import NO_PIN


def _hits(recs: list[list[int]], truth: list[list[int]]):
    users = np.arange(len(truth))
    pu = np.array([u for u, items in enumerate(truth) for _ in items], dtype=np.int64)
    pi = np.array([i for items in truth for i in items], dtype=np.int64)
    indptr, items = truth_from_pairs(users, pu, pi)
    return find_hits(np.array(recs, dtype=np.int64), indptr, items)


def test_hand_computed_example():
    # user 0: hits at ranks 1 and 3 of 2 relevant; user 1: no hit of 1 relevant.
    h = _hits([[1, 2, 3], [4, 5, NO_PIN]], [[1, 3], [9]])
    assert precision_at_k(h) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(h) == pytest.approx((1.0 + 0) / 2)
    assert map_at_k(h) == pytest.approx(((1 / 1 + 2 / 3) / 2 + 0) / 2)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(h) == pytest.approx((dcg / ideal + 0) / 2)


def test_map_divides_by_relevant_unless_capped():
    # 5 relevant items, k = 2, both slots hit: AP = (1 + 1) / 5 uncapped, 2 / 2 capped.
    h = _hits([[1, 2]], [[1, 2, 3, 4, 5]])
    assert map_at_k(h) == pytest.approx(2 / 5)
    assert map_at_k(h, cap=True) == pytest.approx(1.0)
    assert ndcg_at_k(h) == pytest.approx(1.0)  # ideal DCG over min(k, relevant) = 2 items
    assert recall_at_k(h) == pytest.approx(2 / 5)


def test_users_without_truth_do_not_count_and_padding_never_hits():
    h = _hits([[1, NO_PIN], [7, 8]], [[1], []])
    assert ranking_metrics(h) == {"map": 1.0, "ndcg": 1.0, "precision": 0.5, "recall": 1.0}
    empty = _hits([[NO_PIN, NO_PIN]], [[NO_PIN]])
    assert not empty.hits.any()


def test_truth_duplicates_count_once():
    assert _hits([[1, 2]], [[1, 1, 2]]).n_relevant.tolist() == [2]


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="truth_indptr"):
        find_hits(np.zeros((2, 3), dtype=np.int64), np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match="recommended"):
        find_hits(np.zeros(3, dtype=np.int64), np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match="labels shape"):
        auc(np.array([1, 0]), np.array([0.1]))


def _reference(recs: list[list[int]], truth: list[list[int]], k: int) -> dict[str, float]:
    """Recommenders' formulas user by user, written as plainly as possible."""
    per: dict[str, list[float]] = {"map": [], "ndcg": [], "precision": [], "recall": []}
    for rec, rel in zip(recs, truth, strict=True):
        rel_set = set(rel)
        if not rel_set:
            continue
        hit_ranks = [r + 1 for r, item in enumerate(rec[:k]) if item in rel_set]
        per["precision"].append(len(hit_ranks) / k)
        per["recall"].append(len(hit_ranks) / len(rel_set))
        per["map"].append(sum((j + 1) / r for j, r in enumerate(hit_ranks)) / len(rel_set))
        dcg = sum(1 / math.log(1 + r) for r in hit_ranks)
        ideal = sum(1 / math.log(1 + r) for r in range(1, min(k, len(rel_set)) + 1))
        per["ndcg"].append(dcg / ideal)
    return {name: (sum(v) / len(v) if v else 0.0) for name, v in per.items()}


@st.composite
def ranking_cases(draw):
    n_users = draw(st.integers(1, 6))
    k = draw(st.integers(1, 6))
    recs, truth = [], []
    for _ in range(n_users):
        rec = draw(st.lists(st.integers(0, 15), min_size=0, max_size=k, unique=True))
        recs.append(rec + [NO_PIN] * (k - len(rec)))
        truth.append(draw(st.lists(st.integers(0, 15), max_size=8)))
    return recs, truth, k


@settings(max_examples=150, deadline=None)
@given(ranking_cases())
def test_matches_reference_and_stays_in_unit_range(case):
    recs, truth, k = case
    got = ranking_metrics(_hits(recs, truth))
    want = _reference(recs, truth, k)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-9), name
        assert 0.0 <= got[name] <= 1.0


@settings(max_examples=60, deadline=None)
@given(ranking_cases(), st.randoms(use_true_random=False))
def test_user_order_and_truth_order_do_not_matter(case, rnd):
    recs, truth, _ = case
    order = list(range(len(recs)))
    rnd.shuffle(order)
    shuffled_truth = [rnd.sample(truth[i], len(truth[i])) for i in order]
    a = ranking_metrics(_hits(recs, truth))
    b = ranking_metrics(_hits([recs[i] for i in order], shuffled_truth))
    assert a == pytest.approx(b)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=10, unique=True), min_size=1,
                max_size=5))  # fmt: skip
def test_perfect_ranking_scores_one(truth):
    k = max(len(t) for t in truth)
    recs = [t + [NO_PIN] * (k - len(t)) for t in truth]
    got = ranking_metrics(_hits(recs, truth))
    assert got["ndcg"] == pytest.approx(1.0)
    assert got["map"] == pytest.approx(1.0)
    assert got["recall"] == pytest.approx(1.0)


def test_auc_by_hand_with_ties():
    # positives 0.9, 0.5; negatives 0.1, 0.5: pairs 1 + 1 + 1 + 0.5 of 4.
    assert auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.5, 0.5])) == pytest.approx(0.875)
    assert auc(np.array([1, 0, 1]), np.array([0.3, 0.3, 0.3])) == pytest.approx(0.5)
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=2, max_size=40))
def test_auc_equals_pairwise_count(pairs):
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs], dtype=np.float64)
    got = auc(labels, scores)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        assert math.isnan(got)
        return
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert got == pytest.approx(wins / (len(pos) * len(neg)))
    assert auc(labels, np.exp(scores)) == pytest.approx(got)  # rank-based: monotone invariant
    assert 0.0 <= got <= 1.0


def test_catalogue_coverage():
    recs = np.array([[1, 2, NO_PIN], [2, 3, 4]])
    assert catalogue_coverage(recs, 8) == pytest.approx(4 / 8)
    with pytest.raises(ValueError, match="catalogue_size"):
        catalogue_coverage(recs, 0)


def test_feed_diversity_by_hand():
    pins = np.array([10, 11, 12, 13])
    topics = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    same = np.array([[10, 11]])
    disjoint = np.array([[10, 12]])
    assert feed_diversity(same, pins, topics) == pytest.approx(0.0)
    assert feed_diversity(disjoint, pins, topics) == pytest.approx(1.0)
    # pairs: (10,12) cos 0, (10,13) cos 1/sqrt2, (12,13) cos 1/sqrt2 -> 1 - mean
    mixed = np.array([[10, 12, 13, NO_PIN]])
    assert feed_diversity(mixed, pins, topics) == pytest.approx(1 - (2 / math.sqrt(2)) / 3)
    # mean over feeds, one-pin feeds left out, unknown pins ignored
    both = np.array([[10, 11, NO_PIN], [10, 12, 99], [13, NO_PIN, NO_PIN]])
    assert feed_diversity(both, pins, topics, chunk=1) == pytest.approx(0.5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=6, unique=True), min_size=1,
                max_size=6), st.randoms(use_true_random=False))  # fmt: skip
def test_feed_diversity_in_unit_range_and_order_free(feeds, rnd):
    rng = np.random.default_rng(0)
    topics = (rng.random((10, 4)) < 0.5).astype(np.float32)
    pins = np.arange(10)
    k = 6
    recs = np.array([f + [NO_PIN] * (k - len(f)) for f in feeds])
    got = feed_diversity(recs, pins, topics)
    assert -1e-9 <= got <= 1.0 + 1e-9
    shuffled = np.array([rnd.sample(list(r), len(r)) for r in recs])
    assert feed_diversity(shuffled, pins, topics) == pytest.approx(got)
