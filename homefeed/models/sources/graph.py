"""Pixie (Eksombatchai et al., WWW 2018): random walks with restart on the pin-board graph.

The graph is bipartite: pins on one side, boards on the other (``data.pin_boards``; with
``user_boards`` every user is also a board holding the pins they engaged positively, which is
all the graph there is for ratings data). A user's query is their top ``query_pins`` pins by
action weight and recency. Each query pin q gets a share of the step budget proportional to
``weight(q) * deg(q) * (C - log deg(q))`` (Pixie's degree factor, C = 1 + log of the largest
pin degree): well-connected pins need more steps to say anything specific. Walkers step
pin -> board -> pin, choosing neighbours in proportion to edge weight (``weighted=True``) or
uniformly, and go back to their query pin with probability ``alpha`` after each step (mean
walk length 1/alpha). Visit counts per query pin combine as ``(sum_q sqrt(V_q[p]))^2``, which
boosts pins that several query pins reach (``boost=False``: plain sum). A query pin stops
early once ``n_p`` pins have been visited ``n_v`` times from it.

All walkers of one user step in lockstep as NumPy arrays. Each user's walks draw from a
generator seeded by (seed, user id), so a user's candidates do not depend on the batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from homefeed.models.data import IdIndex, TrainingData
from homefeed.models.sources.base import Candidates, CandidateSource
from homefeed.models.sources.collaborative import check_k, engaged_matrix, interaction_matrix

# Lockstep rounds a query pin's budget is spread over (walkers = budget / ROUNDS). Each round
# is ~15 NumPy calls whatever its width, so fewer, wider rounds cost less per user: 8 rounds
# take 1.9 ms per user where 32 took 3.4 ms (20,000 steps). With alpha = 0.8 a walk outlives
# 8 rounds with probability 0.2 ** 8, and the top-200 overlap with 32 rounds (0.69) is the
# overlap between two seeds at 32 rounds (0.68): the same walks statistically.
ROUNDS = 8
U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Adjacency:
    """CSR rows with cumulative edge weights (``cum[indptr[r]]`` = 0 before row r's edges)."""

    indptr: np.ndarray  # int64 (rows + 1)
    indices: np.ndarray  # int64 column of each edge
    cum: np.ndarray  # float64 (edges + 1): running weight total, cum[0] = 0

    @classmethod
    def of(cls, rows: np.ndarray, cols: np.ndarray, weight: np.ndarray, shape: tuple[int, int]):
        m = sp.csr_matrix((weight.astype(np.float64), (rows, cols)), shape=shape)
        m.sum_duplicates()
        m.sort_indices()
        cum = np.concatenate([[0.0], np.cumsum(m.data)])
        return cls(m.indptr.astype(np.int64), m.indices.astype(np.int64), cum)

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def sample(self, nodes: np.ndarray, rng: np.random.Generator, weighted: bool) -> np.ndarray:
        """One neighbour per node (every node must have one), by edge weight or uniformly.

        Weighted draws invert the row's cumulative weights with one binary search over all
        edges. (Rejection sampling against the row's largest weight was slower on both the
        simulated world and MovieLens: skewed rows need many rounds of NumPy calls.)
        """
        lo, hi = self.indptr[nodes], self.indptr[nodes + 1]
        if not weighted:
            offsets = (rng.random(len(nodes)) * (hi - lo)).astype(np.int64)
            return self.indices[lo + np.minimum(offsets, hi - lo - 1)]  # r * d can round to d
        base = self.cum[lo]
        target = base + rng.random(len(nodes)) * (self.cum[hi] - base)
        # Sorted keys search ~30% faster (the branches of the binary search become predictable).
        order = np.argsort(target)
        edge = np.empty(len(target), dtype=np.int64)
        edge[order] = np.searchsorted(self.cum, target[order], side="right") - 1
        return self.indices[np.clip(edge, lo, hi - 1)]  # float ties at row boundaries


@dataclass
class WalkStats:
    """What the last ``retrieve`` did: total pin->board->pin steps, early-stopped query pins."""

    steps: int = 0
    early_stopped: int = 0
    queries: int = 0


class PixieSource(CandidateSource):
    """Candidates by Pixie random walks from the user's recent pins (see the module doc)."""

    name = "pixie"

    def __init__(
        self,
        *,
        steps: int = 20_000,
        alpha: float = 0.8,
        query_pins: int = 50,
        n_p: int = 200,
        n_v: int = 4,
        half_life_days: float | None = 30.0,
        user_boards: bool = True,
        min_board_pins: int = 2,
        weighted: bool = True,
        boost: bool = True,
        exclude_seen: bool = True,
        seed: int = 0,
    ) -> None:
        for field, value in (
            ("steps", steps),
            ("query_pins", query_pins),
            ("n_p", n_p),
            ("n_v", n_v),
            ("min_board_pins", min_board_pins),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if not (isinstance(alpha, int | float) and 0 < alpha <= 1):
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if half_life_days is not None and not half_life_days > 0:
            raise ValueError(f"half_life_days must be positive or None, got {half_life_days!r}")
        self.steps, self.alpha, self.query_pins = steps, alpha, query_pins
        self.n_p, self.n_v, self.half_life_days = n_p, n_v, half_life_days
        self.user_boards, self.min_board_pins = user_boards, min_board_pins
        self.weighted, self.boost = weighted, boost
        self.exclude_seen, self.seed = exclude_seen, seed
        self.stats = WalkStats()
        self._pins = IdIndex.of()
        self._users = IdIndex.of()
        empty = Adjacency(np.zeros(1, np.int64), np.empty(0, np.int64), np.zeros(1))
        self._pin_boards, self._board_pins = empty, empty
        self._queries = sp.csr_matrix((0, 0), dtype=np.float32)  # users x pins query weights
        self._seen = sp.csr_matrix((0, 0), dtype=np.float32)
        self._log_c = 1.0

    def params(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "alpha": self.alpha,
            "query_pins": self.query_pins,
            "n_p": self.n_p,
            "n_v": self.n_v,
            "half_life_days": self.half_life_days,
            "user_boards": self.user_boards,
            "min_board_pins": self.min_board_pins,
            "weighted": self.weighted,
            "boost": self.boost,
            "exclude_seen": self.exclude_seen,
            "seed": self.seed,
        }

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> None:
        liked = interaction_matrix(data)
        board_pins = data.pin_boards.src
        if len(data.pins):
            board_pins = board_pins[np.isin(board_pins, data.pins.pin_id)]
        self._pins = IdIndex.of(liked.pins.ids, board_pins)
        self._build_graph(data, liked.matrix.tocoo(), liked.pins)
        recent = interaction_matrix(data, half_life_days=self.half_life_days)
        self._users = recent.users
        self._queries = self._top_queries(recent.matrix, recent.pins)
        self._seen = engaged_matrix(data, self._users, self._pins)

    def _build_graph(self, data: TrainingData, liked: sp.coo_matrix, liked_pins: IdIndex) -> None:
        edges = data.pin_boards
        pins = self._pins.index(edges.src)
        boards_index = IdIndex.of(edges.dst)
        boards, weight = boards_index.index(edges.dst), edges.weight.astype(np.float64)
        if self.user_boards:  # user u is board len(boards_index) + u
            pins = np.concatenate([pins, self._pins.index(liked_pins.ids[liked.col])])
            boards = np.concatenate([boards, len(boards_index) + liked.row.astype(np.int64)])
            weight = np.concatenate([weight, liked.data.astype(np.float64)])
        keep = (pins >= 0) & (weight > 0)
        pins, boards, weight = pins[keep], boards[keep], weight[keep]
        n_boards = len(boards_index) + (liked.shape[0] if self.user_boards else 0)
        # A board with one pin only leads back to that pin: it cannot recommend anything.
        sizes = np.bincount(boards, minlength=n_boards)
        keep = sizes[boards] >= max(2, self.min_board_pins)
        pins, boards, weight = pins[keep], boards[keep], weight[keep]
        n_pins = len(self._pins)
        self._pin_boards = Adjacency.of(pins, boards, weight, (n_pins, n_boards))
        self._board_pins = Adjacency.of(boards, pins, weight, (n_boards, n_pins))
        self._log_c = 1.0 + math.log(max(1, int(self._pin_boards.degree().max(initial=1))))

    def _top_queries(self, recent: sp.csr_matrix, recent_pins: IdIndex) -> sp.csr_matrix:
        """Users x pins: each user's top ``query_pins`` pins that are in the graph."""
        coo = recent.tocoo()
        cols = self._pins.index(recent_pins.ids[coo.col])
        on_graph = self._pin_boards.degree()[cols] > 0
        rows, cols, vals = coo.row[on_graph], cols[on_graph], coo.data[on_graph]
        # best first within each user; ties broken by pin index so the choice is deterministic
        order = np.lexsort((cols, -vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        starts = np.searchsorted(rows, np.arange(recent.shape[0]))
        rank = np.arange(len(rows)) - starts[rows]
        keep = rank < self.query_pins
        return sp.csr_matrix(
            (vals[keep], (rows[keep], cols[keep])), shape=(recent.shape[0], len(self._pins))
        )

    # -- retrieval -------------------------------------------------------------------------

    def retrieve(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None = None
    ) -> Candidates:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = Candidates.empty(user_ids, check_k(k))
        self.stats = WalkStats()
        rows = self._users.index(user_ids)
        for i in np.flatnonzero(rows >= 0) if k > 0 else []:
            user = int(user_ids[i])
            pins, scores = self._user_candidates(int(rows[i]), user, (exclude or {}).get(user), k)
            out.pins[i, : len(pins)], out.scores[i, : len(pins)] = pins, scores
        return out

    def _user_candidates(
        self, row: int, user: int, exclude: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._queries.indptr[row], self._queries.indptr[row + 1]
        queries = self._queries.indices[lo:hi].astype(np.int64)
        if not len(queries):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rng = np.random.default_rng([self.seed & U64, user & U64])
        pins, scores = self.walk(queries, self._queries.data[lo:hi].astype(np.float64), rng)
        banned = [queries]
        if self.exclude_seen:
            banned.append(self._seen.indices[self._seen.indptr[row] : self._seen.indptr[row + 1]])
        if exclude is not None:
            cols = self._pins.index(np.asarray(exclude))
            banned.append(cols[cols >= 0])
        keep = ~np.isin(pins, np.concatenate(banned))
        pins, scores = pins[keep], scores[keep]
        top = np.lexsort((pins, -scores))[:k]  # ties by pin index: deterministic
        return self._pins.ids[pins[top]], scores[top].astype(np.float32)

    @property
    def pin_ids(self) -> np.ndarray:
        """The pins of the graph (int64, sorted); ``walk`` speaks in indices into this."""
        return self._pins.ids

    def walk_pins(
        self, pin_ids: np.ndarray, weights: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Walks from any query pins given by id (e.g. a session's fresh engagements).

        Returns visited pin ids (query pins included) and their combined visit counts; query
        pins not on the graph are ignored, and none on it gives empty arrays.
        """
        pin_ids, weights = np.asarray(pin_ids, np.int64), np.asarray(weights, np.float64)
        if pin_ids.shape != weights.shape:
            raise ValueError(f"pin_ids {pin_ids.shape} and weights {weights.shape} differ")
        queries = self._pins.index(pin_ids)
        on_graph = queries >= 0
        on_graph[on_graph] = self._pin_boards.degree()[queries[on_graph]] > 0
        on_graph &= weights > 0
        if not on_graph.any():
            return np.empty(0, np.int64), np.empty(0, np.float64)
        visited, counts = self.walk(queries[on_graph], weights[on_graph], rng)
        return self._pins.ids[visited], counts

    def walk(
        self, queries: np.ndarray, weights: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Visited pin indices and their combined visit counts for one user's query pins.

        ``queries`` are indices into ``pin_ids`` of pins on the graph, ``weights`` positive.
        """
        budget = self._budgets(queries, weights)
        walkers = np.maximum(1, np.ceil(budget / ROUNDS)).astype(np.int64)
        qid = np.repeat(np.arange(len(queries)), walkers)
        slot = np.arange(len(qid)) - np.repeat(np.cumsum(walkers) - walkers, walkers)
        pos = queries[qid]
        visits = VisitTable(len(self._pins), len(queries), self.n_v)
        taken = np.zeros(len(queries), np.int64)
        active = budget > 0
        while active.any():
            # the last round of a query moves only the walkers its budget has left
            moving = np.flatnonzero(active[qid] & (slot < (budget - taken)[qid]))
            boards = self._pin_boards.sample(pos[moving], rng, self.weighted)
            landed = self._board_pins.sample(boards, rng, self.weighted)
            visits.add(qid[moving], landed)
            restart = rng.random(len(moving)) < self.alpha
            pos[moving] = np.where(restart, queries[qid[moving]], landed)
            taken += np.bincount(qid[moving], minlength=len(queries))
            stopped_early = active & (visits.high >= self.n_p) & (taken < budget)
            self.stats.early_stopped += int(stopped_early.sum())
            active &= (taken < budget) & (visits.high < self.n_p)
        self.stats.steps += int(taken.sum())
        self.stats.queries += len(queries)
        return visits.combined(self.boost)

    def _budgets(self, queries: np.ndarray, weights: np.ndarray) -> np.ndarray:
        degree = self._pin_boards.degree()[queries].astype(np.float64)
        share = weights * degree * (self._log_c - np.log(degree))
        return np.floor(self.steps * share / share.sum()).astype(np.int64)

    # -- persistence -----------------------------------------------------------------------

    def save_state(self, path: Path) -> None:
        arrays: dict[str, Any] = {"pins": self._pins.ids, "users": self._users.ids}
        for name, adj in (("pb", self._pin_boards), ("bp", self._board_pins)):
            arrays |= {f"{name}_indptr": adj.indptr, f"{name}_indices": adj.indices}
            arrays[f"{name}_cum"] = adj.cum
        np.savez(path / "pixie.npz", **arrays)
        sp.save_npz(path / "queries.npz", self._queries)
        sp.save_npz(path / "seen.npz", self._seen)
        (path / "pixie.json").write_text(json.dumps({"log_c": self._log_c}))

    def load_state(self, path: Path) -> None:
        with np.load(path / "pixie.npz", allow_pickle=False) as f:
            self._pins, self._users = IdIndex(f["pins"]), IdIndex(f["users"])
            self._pin_boards = Adjacency(f["pb_indptr"], f["pb_indices"], f["pb_cum"])
            self._board_pins = Adjacency(f["bp_indptr"], f["bp_indices"], f["bp_cum"])
        self._queries = sp.load_npz(path / "queries.npz").tocsr()
        self._seen = sp.load_npz(path / "seen.npz").tocsr()
        self._log_c = float(json.loads((path / "pixie.json").read_text())["log_c"])


class VisitTable:
    """Visit counts per (visited pin, query pin), for one user's walks.

    Pins get a dense slot on first visit, so memory is the pins actually visited times the
    query pins, never the catalogue times the query pins. ``high[q]`` counts the pins query
    pin q has visited at least ``n_v`` times (Pixie's early-stopping test).
    """

    def __init__(self, n_pins: int, n_queries: int, n_v: int) -> None:
        self.slot_of = np.full(n_pins, -1, dtype=np.int64)
        self.pins = np.empty(0, dtype=np.int64)  # pin index of each slot
        self.counts = np.zeros((64, n_queries), dtype=np.int64)  # slots x query pins
        self.high = np.zeros(n_queries, dtype=np.int64)
        self.n_v = n_v

    def add(self, queries: np.ndarray, pins: np.ndarray) -> None:
        """Count one visit of ``pins[i]`` from query pin ``queries[i]`` for every i."""
        slots = self._slots(pins)
        n_queries = self.counts.shape[1]
        keys, added = np.unique(slots * n_queries + queries, return_counts=True)
        flat = self.counts.reshape(-1)
        flat[keys] += added
        after = flat[keys]
        crossed = keys[(after >= self.n_v) & (after - added < self.n_v)]
        self.high += np.bincount(crossed % n_queries, minlength=n_queries)

    def _slots(self, pins: np.ndarray) -> np.ndarray:
        slots = self.slot_of[pins]
        if np.all(slots >= 0):
            return slots
        fresh = np.unique(pins[slots < 0])
        self.slot_of[fresh] = np.arange(len(self.pins), len(self.pins) + len(fresh))
        self.pins = np.concatenate([self.pins, fresh])
        if len(self.pins) > len(self.counts):
            grown = np.zeros((2 * len(self.pins), self.counts.shape[1]), dtype=np.int64)
            grown[: len(self.counts)] = self.counts
            self.counts = grown
        return self.slot_of[pins]

    def combined(self, boost: bool) -> tuple[np.ndarray, np.ndarray]:
        """Visited pins and their score: Pixie's boosting, V[p] = (sum_q sqrt(V_q[p]))^2, or
        the plain sum of visits."""
        counts = self.counts[: len(self.pins)]
        if not boost:
            return self.pins, counts.sum(axis=1).astype(np.float64)
        return self.pins, np.sqrt(counts).sum(axis=1) ** 2


__all__ = ["Adjacency", "PixieSource", "VisitTable", "WalkStats"]
