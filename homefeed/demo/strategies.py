"""The five feeds of the home feed's history, as strategies the A/B runner can serve.

* ``chronological`` (2012): pins saved or created by whom you follow, newest first;
* ``picked_for_you`` (2013): collaborative filtering from saves (implicit ALS);
* ``smart_feed`` (2014): every source's candidates, ordered by relevance: reciprocal-rank
  fusion of the sources' rankings (no learned model);
* ``gbdt`` (2015): the trained bundle, LightGBM heads over the shared features;
* ``gbdt_realtime`` (2016): the same bundle plus what the user just did: hidden and already
  seen pins are filtered and fresh engagement feeds the online overlay before the next feed.

Every strategy excludes what the user engaged with or hid before the model's data ended. The
first four are frozen for the experiment, like a feed recomputed daily.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from homefeed.models.bundle import ModelBundle, top_k_per_row
from homefeed.models.data import Action, TrainingData
from homefeed.models.features import CandidateSet, build_features, pair_scorer
from homefeed.models.sources.base import NO_PIN, CandidateSource
from homefeed.simulator.columns import CLICK, HIDE, IMPRESSION, SAVE, EventColumns

RRF_K = 60.0  # reciprocal-rank fusion constant (Cormack et al. 2009)
RECENT = 50  # a user's latest engagements the online overlay sees
REALTIME_K = 100  # extra candidates seeded by what the user just did
_ACTION = {CLICK: Action.CLICK, SAVE: Action.SAVE, HIDE: Action.HIDE}


def known_pins(data: TrainingData) -> dict[int, np.ndarray]:
    """Per user, every pin they engaged with or hid in the training data."""
    eng = data.engagements
    keep = eng.action != 0  # impressions alone do not exclude
    users, pins = eng.user_id[keep], eng.pin_id[keep]
    order = np.argsort(users, kind="stable")
    users, pins = users[order], pins[order]
    cuts = np.flatnonzero(np.diff(users)) + 1
    return {int(u[0]): np.unique(p) for u, p in zip(np.split(users, cuts), np.split(pins, cuts),
                                                      strict=True) if len(u)}  # fmt: skip


def _subset(exclude: dict[int, np.ndarray], users: np.ndarray) -> dict[int, np.ndarray]:
    return {int(u): exclude[int(u)] for u in users.tolist() if int(u) in exclude}


class SourceStrategy:
    """One candidate source's own ranking (chronological following, picked for you)."""

    def __init__(self, name: str, source: CandidateSource, exclude: dict[int, np.ndarray],
                 fallback: CandidateSource | None = None) -> None:  # fmt: skip
        self.name, self.source, self.exclude, self.fallback = name, source, exclude, fallback

    def feeds(self, users: np.ndarray, now_ms: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        got = self.source.retrieve(users, k, _subset(self.exclude, users))
        pins = got.pins
        labels = np.where(pins != NO_PIN, self.source.name, "")
        if self.fallback is not None:  # a user with nothing from the source sees trending
            empty = (pins == NO_PIN).all(axis=1)
            if empty.any():
                more = self.fallback.retrieve(users[empty], k, _subset(self.exclude, users[empty]))
                pins = pins.copy()
                pins[empty] = more.pins
                labels[empty] = np.where(more.pins != NO_PIN, self.fallback.name, "")
        return pins, labels.astype(object)

    def observe(self, events: EventColumns) -> None:
        """Frozen for the experiment."""


class SmartFeedStrategy:
    """All sources' candidates ordered by reciprocal-rank fusion: relevance without a model."""

    name = "smart_feed"

    def __init__(self, bundle: ModelBundle, exclude: dict[int, np.ndarray]) -> None:
        self.bundle, self.exclude = bundle, exclude

    def feeds(self, users: np.ndarray, now_ms: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        cs = CandidateSet.gather(self.bundle.sources, self.bundle.ks, users,
                                 _subset(self.exclude, users))  # fmt: skip
        proposed = cs.ranks <= np.asarray(cs.ks, dtype=np.float32)[None, :]
        score = np.where(proposed, 1.0 / (RRF_K + cs.ranks), 0.0).sum(axis=1)
        pins, _ = top_k_per_row(cs.row, cs.pin, score, len(users), k)
        return pins, np.where(pins != NO_PIN, "smart_feed", "").astype(object)

    def observe(self, events: EventColumns) -> None:
        """Frozen for the experiment."""


class GbdtStrategy:
    """The trained bundle's ranking; with ``realtime`` it also reacts to what users just did."""

    def __init__(self, name: str, bundle: ModelBundle, exclude: dict[int, np.ndarray],
                 realtime: bool = False) -> None:  # fmt: skip
        self.name, self.bundle, self.realtime = name, bundle, realtime
        self.exclude = exclude
        self.fresh: dict[int, set[int]] = defaultdict(set)  # seen or hidden during the run
        self.recent: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # pin, kind, t

    def feeds(self, users: np.ndarray, now_ms: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        exclude = _subset(self.exclude, users)
        if self.realtime:
            for u in users.tolist():
                if self.fresh.get(u):
                    extra = np.fromiter(self.fresh[u], dtype=np.int64)
                    exclude[u] = np.union1d(exclude.get(u, extra[:0]), extra)
        if self.realtime and self.recent:
            got = self._recommend_online(users, k, exclude, now_ms)
        else:
            got = self.bundle.recommend(users, k, exclude, now_ms=now_ms).pins
        return got, np.where(got != NO_PIN, self.name, "").astype(object)

    def _recommend_online(
        self, users: np.ndarray, k: int, exclude: dict[int, np.ndarray], now_ms: int
    ) -> np.ndarray:
        """Users without fresh engagement: the batch path. The others, one by one, through
        the online overlay the feed service uses (``homefeed.models.online``)."""
        out = np.full((len(users), k), NO_PIN, dtype=np.int64)
        fresh = np.array([u in self.recent for u in users.tolist()], dtype=bool)
        if (~fresh).any():
            out[~fresh] = self.bundle.recommend(users[~fresh], k, exclude, now_ms=now_ms).pins
        for i in np.flatnonzero(fresh).tolist():
            user = int(users[i])
            out[i] = self._one(user, k, exclude.get(user, np.empty(0, np.int64)), now_ms)
        return out

    def _one(self, user: int, k: int, banned: np.ndarray, now_ms: int) -> np.ndarray:
        from homefeed.models.online import OnlineSignals, overlay_context, realtime_candidates

        events = self.recent[user][-RECENT:][::-1]  # newest first
        signals = OnlineSignals(
            user_id=user,
            recent_pins=np.array([p for p, _, _ in events], dtype=np.int64),
            recent_actions=np.array([_ACTION[kind] for _, kind, _ in events], dtype=np.int8),
            recent_times=np.array([t for _, _, t in events], dtype=np.int64),
        )
        b = self.bundle
        users = np.array([user], dtype=np.int64)
        cs = CandidateSet.gather(b.sources, b.ks, users, {user: banned})
        near = realtime_candidates(
            b.context, b.sources, signals, now_ms, REALTIME_K,
            exclude=np.concatenate([banned, cs.pin]),
        )  # fmt: skip
        cs = CandidateSet.concat([cs, _extra_rows(cs, near.pins, b.sources)])
        x, _ = build_features(overlay_context(b.context, signals, now_ms), cs, now_ms)
        top, _ = top_k_per_row(cs.row, cs.pin, b.ranker.score(x), 1, k)
        return top[0]

    def observe(self, events: EventColumns) -> None:
        if not self.realtime:
            return
        shown = np.isin(events.kind, (IMPRESSION, HIDE))
        for u, p in zip(events.user[shown].tolist(), events.ref[shown].tolist(), strict=True):
            self.fresh[u].add(p)
        acted = np.isin(events.kind, (CLICK, SAVE, HIDE))
        for u, p, kind, t in zip(events.user[acted].tolist(), events.ref[acted].tolist(),
                                 events.kind[acted].tolist(), events.time_ms[acted].tolist(),
                                 strict=True):  # fmt: skip
            self.recent[u].append((p, kind, t))


def _extra_rows(cs: CandidateSet, pins: np.ndarray, sources: dict[str, CandidateSource]
                ) -> CandidateSet:  # fmt: skip
    """Rows for pins no source proposed, as ``CandidateSet.gather`` would give them: rank
    k + 1 and NaN score, except each pair-scoring source's exact score."""
    pins = np.asarray(pins, dtype=np.int64)
    extra = CandidateSet(
        user_ids=cs.user_ids,
        row=np.zeros(len(pins), dtype=np.int64),
        pin=pins,
        scores=np.full((len(pins), len(cs.sources)), np.nan, dtype=np.float32),
        ranks=np.tile(np.asarray(cs.ks, dtype=np.float32) + 1, (len(pins), 1)),
        sources=cs.sources,
        ks=cs.ks,
    )
    users = np.full(len(pins), cs.user_ids[0], dtype=np.int64)
    for j, name in enumerate(cs.sources):
        scorer = pair_scorer(sources[name])
        if scorer is not None and len(pins):
            extra.scores[:, j] = np.asarray(scorer(users, pins), dtype=np.float32)
    return extra
