"""Blending properties (hypothesis): dedupe, exclusions, quotas, topic runs, the composition."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.serving.api.blending import (
    NO_TOPIC,
    apply_quotas,
    best_per_pin,
    blend,
    drop_pins,
    limit_topic_runs,
    source_caps,
)

FAST = settings(max_examples=50, deadline=None)  # the whole file stays within a few seconds

pins_st = st.lists(st.integers(0, 40), max_size=80)
topics_st = st.lists(st.integers(-1, 4), max_size=80)


@st.composite
def pools(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 80))
    pins = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    scores = draw(st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=n, max_size=n))
    sources = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    topics = draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n))
    return {
        "pins": np.array(pins, dtype=np.int64),
        "scores": np.array(scores, dtype=np.float32),
        "sources": np.array(sources, dtype=np.int16),
        "topics": np.array(topics, dtype=np.int32),
    }


def _longest_run_violations(topics: list[int], max_run: int) -> list[int]:
    """Positions where a run of one (real) topic grows past max_run."""
    bad, run = [], 0
    for i, t in enumerate(topics):
        run = run + 1 if i and t == topics[i - 1] and t != NO_TOPIC else 1
        if run > max_run:
            bad.append(i)
    return bad


@FAST
@given(pools())
def test_best_per_pin_keeps_each_pin_once_with_its_best_score(pool):
    rows = best_per_pin(pool["pins"], pool["scores"])
    pins, scores = pool["pins"][rows], pool["scores"][rows]
    assert len(set(pins.tolist())) == len(pins) == len(set(pool["pins"].tolist()))
    assert np.all(np.diff(scores) <= 0), "best first"
    for pin, score in zip(pins, scores, strict=True):
        assert score == pool["scores"][pool["pins"] == pin].max()


@FAST
@given(pools(), st.lists(st.integers(0, 60), max_size=30))
def test_excluded_pins_go_and_order_stays(pool, excluded):
    rows = best_per_pin(pool["pins"], pool["scores"])
    kept = drop_pins(rows, pool["pins"], np.array(excluded, dtype=np.int64))
    assert not set(pool["pins"][kept].tolist()) & set(excluded)
    assert kept.tolist() == [r for r in rows.tolist() if pool["pins"][r] not in set(excluded)]


@FAST
@given(
    st.lists(st.integers(0, 2), max_size=80),
    st.integers(1, 40),
    st.lists(st.integers(1, 40), min_size=3, max_size=3),
)
def test_quotas_hold_unless_nothing_else_is_left(sources, n, caps):
    src = np.array(sources, dtype=np.int16)
    cap = np.array(caps, dtype=np.int64)
    taken = apply_quotas(src, cap, n)
    assert len(taken) == min(n, len(src))
    assert np.all(np.diff(taken) > 0), "positions increase: score order is kept"
    counts = np.bincount(src[taken], minlength=3)
    over = [s for s in range(3) if counts[s] > cap[s]]
    if over:
        # Over a cap only when every item that was within its caps already got in.
        others_all_in = all(
            counts[s] == np.count_nonzero(src == s) or counts[s] >= cap[s] for s in range(3)
        )
        assert others_all_in and len(taken) == min(n, len(src))


def test_quotas_cap_a_source_when_others_have_enough():
    src = np.array([0] * 10 + [1] * 10, dtype=np.int16)  # source 0 scores best
    taken = apply_quotas(src, source_caps(("trending", "als"), {"trending": 0.3}, 10), 10)
    assert np.bincount(src[taken], minlength=2).tolist() == [3, 7]


def test_new_user_feed_is_all_trending_rather_than_empty():
    src = np.zeros(30, dtype=np.int16)
    taken = apply_quotas(src, source_caps(("trending",), {"trending": 0.3}, 10), 10)
    assert len(taken) == 10


@FAST
@given(topics_st, st.integers(1, 4))
def test_topic_runs_are_bounded_unless_unavoidable(topics, max_run):
    order = limit_topic_runs(np.array(topics, dtype=np.int32), max_run)
    assert sorted(order.tolist()) == list(range(len(topics))), "a permutation"
    out = [topics[i] for i in order]
    for pos in _longest_run_violations(out, max_run):
        # The run could only go on because nothing of another topic was left.
        assert set(out[pos:]) == {out[pos]}


@FAST
@given(topics_st, st.integers(1, 4))
def test_topic_order_that_complies_is_unchanged(topics, max_run):
    if _longest_run_violations(topics, max_run):
        return
    assert limit_topic_runs(np.array(topics, dtype=np.int32), max_run).tolist() == list(
        range(len(topics))
    )


def test_topic_reorder_pulls_the_best_other_topic_forward():
    order = limit_topic_runs(np.array([1, 1, 1, 2, 1, 3], dtype=np.int32), 2)
    assert order.tolist() == [0, 1, 3, 2, 4, 5]


@FAST
@given(pools(), st.lists(st.integers(0, 60), max_size=20), st.integers(1, 30), st.integers(1, 3))
def test_blend_serves_distinct_allowed_pins_within_runs(pool, excluded, n, max_run):
    rows = blend(
        pins=pool["pins"],
        scores=pool["scores"],
        sources=pool["sources"],
        topics=pool["topics"],
        source_names=("a", "b", "trending"),
        excluded=np.array(excluded, dtype=np.int64),
        n=n,
        quotas={"trending": 0.3},
        max_run=max_run,
    )
    pins = pool["pins"][rows].tolist()
    assert len(pins) == len(set(pins)) <= n
    assert not set(pins) & set(excluded)
    allowed = set(pool["pins"].tolist()) - set(excluded)
    assert len(pins) == min(n, len(allowed)), "a feed is as full as the pool allows"
    out = pool["topics"][rows].tolist()
    for pos in _longest_run_violations(out, max_run):
        assert set(out[pos:]) == {out[pos]}
