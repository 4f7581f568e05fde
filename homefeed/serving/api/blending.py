"""Blending: from a scored candidate pool to a feed order. Pure functions over NumPy arrays.

The steps, in the order ``blend`` applies them:

1. ``best_per_pin``: a pin several sources proposed appears once, with its best score (and the
   source that gave it), and rows are ordered by score, best first (ties by pool order).
2. ``drop_pins``: hidden, recently seen and blocked pins go.
3. ``apply_quotas``: no source fills more than its share of the feed, unless nothing else is
   left (a new user's feed is all trending rather than empty).
4. ``limit_topic_runs``: no more than ``max_run`` pins of one topic in a row, by pulling the
   best pin of another topic forward; the order is otherwise untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

NO_TOPIC = -1  # pins without a topic never form a run


def best_per_pin(pins: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row indices, one per distinct pin (its best-scored row), best score first."""
    if not len(pins):
        return np.empty(0, dtype=np.int64)
    safe = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((np.arange(len(pins)), -safe))  # by score desc, then pool order
    _, first = np.unique(pins[order], return_index=True)
    return order[np.sort(first)].astype(np.int64)


def drop_pins(rows: np.ndarray, pins: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """``rows`` without those whose pin is in ``excluded``; order kept."""
    if not len(excluded):
        return rows
    return rows[~np.isin(pins[rows], excluded)]


def source_caps(source_names: Sequence[str], quotas: Mapping[str, float], n: int) -> np.ndarray:
    """Most pins each source (by code) may place among ``n``; uncapped sources get ``n``."""
    caps = np.full(len(source_names), n, dtype=np.int64)
    for code, name in enumerate(source_names):
        if name in quotas:
            caps[code] = max(1, math.floor(quotas[name] * n))
    return caps


def apply_quotas(sources: np.ndarray, caps: np.ndarray, n: int) -> np.ndarray:
    """Positions (into ``sources``, increasing) of the first ``n`` items the caps allow.

    Items over their source's cap are skipped; if that leaves fewer than ``n``, the skipped
    ones fill the rest in order, since a full feed beats an empty one.
    """
    used = np.zeros(len(caps), dtype=np.int64)
    taken: list[int] = []
    skipped: list[int] = []
    for pos, code in enumerate(sources.tolist()):
        if len(taken) == n:
            break
        if used[code] < caps[code]:
            used[code] += 1
            taken.append(pos)
        else:
            skipped.append(pos)
    if len(taken) < n:
        # Skipped items come before any unvisited one in order, so they fill first.
        taken += skipped[: n - len(taken)]
    return np.sort(np.asarray(taken, dtype=np.int64))


def limit_topic_runs(topics: np.ndarray, max_run: int) -> np.ndarray:
    """A permutation of ``range(len(topics))`` with no run of one topic longer than ``max_run``.

    Greedy: at each position take the earliest remaining item unless it would extend a run past
    ``max_run``; then take the earliest item of another topic. A longer run remains only when
    every remaining item has that topic. An order that already complies is returned unchanged.
    """
    remaining = topics.tolist()
    pending = list(range(len(remaining)))
    out: list[int] = []
    run_topic, run = NO_TOPIC, 0
    while pending:
        pick = 0
        if run >= max_run and run_topic != NO_TOPIC:
            pick = next((i for i, p in enumerate(pending) if remaining[p] != run_topic), 0)
        item = pending.pop(pick)
        topic = remaining[item]
        run = run + 1 if topic == run_topic and topic != NO_TOPIC else 1
        run_topic = topic
        out.append(item)
    return np.asarray(out, dtype=np.int64)


def blend(
    *,
    pins: np.ndarray,
    scores: np.ndarray,
    sources: np.ndarray,
    topics: np.ndarray,
    source_names: Sequence[str],
    excluded: np.ndarray,
    n: int,
    quotas: Mapping[str, float],
    max_run: int,
) -> np.ndarray:
    """Pool row indices of the feed, in feed order: at most ``n``, no pin twice."""
    rows = drop_pins(best_per_pin(pins, scores), pins, excluded)
    rows = rows[apply_quotas(sources[rows], source_caps(source_names, quotas, n), n)]
    return rows[limit_topic_runs(topics[rows], max_run)]
