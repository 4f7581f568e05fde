"""Training pipeline and bundle: both modes, point in time, round trips, ranking quality.

Two small sources defined here (registered for this module only) keep the tests independent
of the real sources: candidates come from popularity and recency, which know nothing about a
user's interests, so interest-matching top pins can only come from the ranker's features.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from homefeed.config import ModelsConfig, RankerConfig, SimulatorConfig, SourceConfig
from homefeed.models.bundle import ModelBundle, top_k_per_row
from homefeed.models.data import Action, Edges, Follows, TrainingData, action_weights
from homefeed.models.features import CandidateSet, FeatureContext, build_features
from homefeed.models.from_events import TrainingDataBuilder
from homefeed.models.pipeline import RankerExamples, data_before, train_bundle
from homefeed.models.sources import SOURCES
from homefeed.models.sources.base import NO_PIN, Candidates, CandidateSource
from homefeed.simulator import World
from homefeed.simulator.run import iter_events
from homefeed.testing.models import SMALL_WORLD, simulated_training_data

HOUR_MS = 3_600_000
FITTED_ON: list[dict[str, int]] = []  # every toy fit records the data range it saw


class _ToySource(CandidateSource):
    """Ranks every known pin by a fitted per-pin value; the same list for every user."""

    def __init__(self) -> None:
        self.pins = np.empty(0, np.int64)
        self.values = np.empty(0, np.float32)

    def params(self) -> dict[str, Any]:
        return {}

    def fit(self, data: TrainingData) -> None:
        t = data.engagements.time_ms
        FITTED_ON.append({"max_ms": int(t.max()) if len(t) else -1, "as_of": data.as_of_ms})
        self.pins, self.values = self._values(data)

    def _values(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def retrieve(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None = None
    ) -> Candidates:
        scores = np.tile(self.values, (len(user_ids), 1))
        for row, user in enumerate(np.asarray(user_ids).tolist()):
            if exclude and user in exclude:
                scores[row, np.isin(self.pins, exclude[user])] = -np.inf
        return Candidates.from_scores(np.asarray(user_ids), self.pins, scores, k)

    def save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", pins=self.pins, values=self.values)

    def load_state(self, path: Path) -> None:
        with np.load(path / "state.npz") as z:
            self.pins, self.values = z["pins"], z["values"]


class PopularSource(_ToySource):
    name = "toy_popular"

    def _values(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        pos = data.positives()
        pins, counts = np.unique(pos.pin_id, return_counts=True)
        return pins, counts.astype(np.float32)

    def score(self, user_ids: np.ndarray, pin_ids: np.ndarray) -> np.ndarray:
        """Exact pair score: the pin's popularity (0 when unknown), for any pin."""
        pos = np.searchsorted(self.pins, pin_ids).clip(0, max(len(self.pins) - 1, 0))
        hit = self.pins[pos] == pin_ids if len(self.pins) else np.zeros(len(pin_ids), bool)
        return np.where(hit, self.values[pos] if len(self.pins) else 0, 0).astype(np.float32)


class RecentSource(_ToySource):
    name = "toy_recent"

    def _values(self, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
        return data.pins.pin_id, (data.pins.created_ms / HOUR_MS).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def toy_sources() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SOURCES, "toy_popular", f"{__name__}:PopularSource")
        mp.setitem(SOURCES, "toy_recent", f"{__name__}:RecentSource")
        yield


CONFIG = ModelsConfig(
    sources={"toy_popular": SourceConfig(k=300), "toy_recent": SourceConfig(k=150)},
    ranker=RankerConfig(rounds=60, min_data_in_leaf=20, learning_rate=0.1),
)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return simulated_training_data()


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(SMALL_WORLD)


@pytest.fixture(scope="module")
def ratings_bundle(data) -> ModelBundle:
    return train_bundle(data, CONFIG)


def lake_examples(data: TrainingData, hours: int = 12, window_ms: int = HOUR_MS) -> RankerExamples:
    """The last ``hours`` of impressions, labelled like training_examples.sql: the user's click,
    save or hide of the pin within ``window_ms`` after the impression."""
    eng = data.engagements
    imp = (eng.action == Action.IMPRESSION) & (eng.time_ms >= data.as_of_ms - hours * HOUR_MS)
    iu, ip, it = eng.user_id[imp], eng.pin_id[imp], eng.time_ms[imp]
    labels = {}
    for head, action in (("click", Action.CLICK), ("save", Action.SAVE), ("hide", Action.HIDE)):
        acted: dict[tuple[int, int], list[int]] = {}
        sel = eng.action == action
        for u, p, t in zip(eng.user_id[sel], eng.pin_id[sel], eng.time_ms[sel], strict=True):
            acted.setdefault((int(u), int(p)), []).append(int(t))
        labels[head] = np.array([
            any(t <= a < t + window_ms for a in acted.get((int(u), int(p)), ()))
            for u, p, t in zip(iu, ip, it, strict=True)
        ], dtype=np.int8)  # fmt: skip
    return RankerExamples(iu, ip, it, labels["click"], labels["save"], labels["hide"])


def active_users(data: TrainingData, n: int) -> np.ndarray:
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    return users[np.argsort(-counts, kind="stable")[:n]]


def test_ratings_mode_trains_heads_and_reports_timings(ratings_bundle):
    meta = ratings_bundle.metadata
    assert meta["mode"] == "ratings"
    assert "click" in ratings_bundle.ranker.heads and "save" in ratings_bundle.ranker.heads
    timings = meta["timings"]
    assert set(timings["ranker_sources"]) == set(timings["final_sources"]) == set(CONFIG.sources)
    assert timings["ranker"] > 0 and timings["ranker_rows"] > 0
    assert timings["ranker_positives"]["save"] > 0
    # the ranker learned from held-out engagements: it saw fewer than all of them
    assert meta["ranker_fit_data"]["engagements"] < meta["data"]["engagements"]
    assert ratings_bundle.spec.names == ratings_bundle.ranker.feature_names


def test_recommend_is_top_k_unique_and_respects_exclude(ratings_bundle, data):
    users = np.concatenate([active_users(data, 30), [-5]])
    got = ratings_bundle.recommend(users, 20)
    assert got.pins.shape == (len(users), 20)
    for row in range(len(users)):
        pins, scores = got.of(row)
        assert len(pins) == 20 and len(set(pins.tolist())) == 20
        assert np.all(np.diff(scores) <= 0)
    exclude = {int(u): got.of(i)[0][:5] for i, u in enumerate(users)}
    again = ratings_bundle.recommend(users, 20, exclude=exclude)
    for i, u in enumerate(users):
        assert not set(again.of(i)[0].tolist()) & set(exclude[int(u)].tolist())
    # chunking changes nothing
    small_chunks = ratings_bundle.recommend(users, 20, chunk=7)
    assert np.array_equal(small_chunks.pins, got.pins)


def test_recommend_puts_interest_matches_above_random_pins(ratings_bundle, data, world):
    users = active_users(data, 60)
    got = ratings_bundle.recommend(users, 20)
    rows = np.repeat(np.arange(len(users)), 20)
    valid = got.pins.ravel() != NO_PIN
    recommended = world.match(users[rows[valid]], got.pins.ravel()[valid]).mean()
    rng = np.random.default_rng(0)
    random_pins = rng.integers(0, world.pins, (len(users), 20))
    baseline = world.match(np.repeat(users, 20), random_pins.ravel()).mean()
    # candidates come from popularity and recency only: the lift is the ranker's
    candidates = ratings_bundle.sources["toy_popular"].retrieve(users, 20)
    popular = world.match(users[rows], candidates.pins.ravel()).mean()
    assert recommended > 1.5 * baseline, (recommended, baseline)
    assert recommended > 1.1 * popular, (recommended, popular)


def test_bundle_save_load_round_trip(ratings_bundle, data, tmp_path):
    ratings_bundle.save(tmp_path / "bundle")
    assert (tmp_path / "bundle" / "bundle.json").exists()
    assert not list((tmp_path / "bundle").rglob("*.pkl"))
    loaded = ModelBundle.load(tmp_path / "bundle")
    users = active_users(data, 40)
    a, b = ratings_bundle.recommend(users, 25), loaded.recommend(users, 25)
    assert np.array_equal(a.pins, b.pins)
    assert np.array_equal(a.scores, b.scores)
    assert loaded.spec == ratings_bundle.spec
    assert loaded.config == ratings_bundle.config
    assert loaded.metadata == json.loads(json.dumps(ratings_bundle.metadata))


def test_lake_mode_fits_only_on_engagements_before_the_examples(data):
    examples = lake_examples(data)
    first = int(examples.time_ms.min())
    assert examples.label_click.sum() > 0 and examples.label_save.sum() > 0
    FITTED_ON.clear()
    bundle = train_bundle(data, CONFIG, examples)
    meta = bundle.metadata
    assert meta["mode"] == "lake"
    assert meta["ranker_fit_data"]["engagement_max_ms"] < first
    assert meta["ranker_fit_data"]["as_of_ms"] == first
    assert meta["data"]["engagement_max_ms"] >= first  # the bundle itself sees everything
    # the ranker's sources saw nothing at or after the first example; the final ones did
    ranker_fits, final_fits = FITTED_ON[: len(CONFIG.sources)], FITTED_ON[len(CONFIG.sources) :]
    assert all(f["max_ms"] < first and f["as_of"] == first for f in ranker_fits)
    assert all(f["as_of"] == data.as_of_ms for f in final_fits)
    # every labelled example is kept, the unlabelled ones at the configured rate
    sampling = meta["timings"]["ranker_sampling"]
    assert meta["timings"]["ranker_rows"] == sampling["rows"] < len(examples)
    assert sampling["rows"] >= int(examples.labelled().sum())
    assert "click" in bundle.ranker.heads
    got = bundle.recommend(active_users(data, 10), 10)
    assert np.all(got.pins[:, 0] != NO_PIN)


def test_data_before_drops_everything_at_or_after_the_time(data):
    cut = data.as_of_ms - 12 * HOUR_MS
    before = data_before(data, cut)
    assert before.engagements.time_ms.max() < cut
    assert before.pins.created_ms.max() < cut
    assert before.as_of_ms == cut
    assert len(before.pins.topic_indptr) == len(before.pins) + 1
    assert not np.isin(before.pin_boards.src, data.pins.pin_id[data.pins.created_ms >= cut]).any()
    # topics follow their pins
    i = len(before.pins) - 1
    j = int(np.searchsorted(data.pins.pin_id, before.pins.pin_id[i]))
    a = before.pins.topic_codes[before.pins.topic_indptr[i] : before.pins.topic_indptr[i + 1]]
    b = data.pins.topic_codes[data.pins.topic_indptr[j] : data.pins.topic_indptr[j + 1]]
    assert np.array_equal(a, b)


def test_data_before_keeps_only_the_graph_that_existed_then():
    config = SimulatorConfig.model_validate({"users": 150, "pins": 1500, "days": 2.0, "seed": 3})
    builder = TrainingDataBuilder().add_all(iter_events(config))
    full = builder.build()
    cut = full.as_of_ms - 18 * HOUR_MS
    before, then = data_before(full, cut), builder.build(as_of_ms=cut)

    def pairs(e) -> set[tuple[int, int]]:
        return set(zip(e.src.tolist(), e.dst.tolist(), strict=True))

    assert full.pin_boards.first_ms is not None and full.follows.since_ms is not None
    later = pairs(full.pin_boards) - pairs(then.pin_boards)
    assert later, "the world must add pin-board edges after the cut for this test to mean much"
    assert pairs(before.pin_boards) == pairs(then.pin_boards)
    assert pairs(before.board_owner) == pairs(then.board_owner)

    def follows(f) -> set[tuple[int, int, int]]:
        return set(zip(f.user_id.tolist(), f.target_type.tolist(), f.target_id.tolist(),
                       strict=True))  # fmt: skip

    assert follows(full.follows) - follows(then.follows)
    assert follows(before.follows) == follows(then.follows)
    # Loaders that know no times keep everything (MovieLens has no graph times).
    timeless = replace(full, follows=replace(full.follows, since_ms=None))
    assert follows(data_before(timeless, cut).follows) == follows(full.follows)


def test_graph_columns_of_different_lengths_are_refused():
    one = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="first_ms"):
        Edges(one, one, one.astype(np.float32), one[:2])
    with pytest.raises(ValueError, match="since_ms"):
        Follows(one, one.astype(np.int8), one, one[:1])


def test_examples_with_mismatched_columns_are_refused():
    one = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="label_hide"):
        RankerExamples(one, one, one, one, one, one[:2])


def test_gather_and_from_pairs_give_the_same_features(ratings_bundle, data):
    """The training path (pairs) and the serving path (gather) agree row for row."""
    users = active_users(data, 15)
    bundle = ratings_bundle
    gathered = CandidateSet.gather(bundle.sources, bundle.ks, users)
    pairs = CandidateSet.from_pairs(bundle.sources, bundle.ks, gathered.row_user, gathered.pin)
    x1, spec1 = build_features(bundle.context, gathered, data.as_of_ms)
    x2, spec2 = build_features(bundle.context, pairs, data.as_of_ms)
    assert spec1 == spec2
    np.testing.assert_array_equal(x1, x2)
    # a pin no source proposed: rank k + 1, but the exact scorer still scores it
    lonely = CandidateSet.from_pairs(bundle.sources, bundle.ks, users[:1], np.array([10**12]))
    assert np.all(lonely.ranks[0] == np.array(lonely.ks) + 1)
    assert lonely.scores[0, lonely.sources.index("toy_popular")] == 0
    assert np.isnan(lonely.scores[0, lonely.sources.index("toy_recent")])


def test_feature_context_round_trips_and_counts_are_right(data, tmp_path):
    context = FeatureContext.build(data)
    context.save(tmp_path / "ctx")
    loaded = FeatureContext.load(tmp_path / "ctx")
    users = active_users(data, 5)
    cs = CandidateSet.from_pairs({}, {}, np.repeat(users, 3), np.tile(data.pins.pin_id[:3], 5))
    np.testing.assert_array_equal(
        build_features(context, cs, data.as_of_ms)[0], build_features(loaded, cs, data.as_of_ms)[0]
    )
    x, spec = build_features(context, cs, data.as_of_ms)
    eng = data.engagements
    u0 = int(users[0])
    assert x[0, spec.names.index("user_saves")] == np.sum(
        (eng.user_id == u0) & (eng.action == Action.SAVE)
    )
    p0 = int(data.pins.pin_id[0])
    mine = eng.pin_id == p0
    assert x[0, spec.names.index("pin_impressions")] == np.sum(mine & (eng.action == 0))
    positive = action_weights()[eng.action] > 0
    assert (
        context.user_recent_pins[np.searchsorted(context.users, u0), 0]
        == eng.pin_id[positive & (eng.user_id == u0)][
            np.argmax(eng.time_ms[positive & (eng.user_id == u0)])
        ]
    )


def test_topic_affinity_follows_the_users_interests(data, world):
    context = FeatureContext.build(data)
    users = active_users(data, 40)
    pins = np.arange(world.pins)
    cs = CandidateSet.from_pairs({}, {}, np.repeat(users, len(pins)), np.tile(pins, len(users)))
    x, spec = build_features(context, cs, data.as_of_ms)
    affinity = x[:, spec.names.index("topic_affinity")]
    match = world.match(np.repeat(users, len(pins)), np.tile(pins, len(users)))
    ok = np.isfinite(affinity)
    assert np.corrcoef(affinity[ok], match[ok])[0, 1] > 0.5


def test_top_k_per_row_orders_by_score_then_pin():
    row = np.array([0, 0, 0, 1, 1], dtype=np.int64)
    pin = np.array([7, 3, 5, 9, 8], dtype=np.int64)
    score = np.array([0.5, 0.5, 0.9, 0.1, 0.2])
    pins, scores = top_k_per_row(row, pin, score, 3, 2)
    assert pins.tolist() == [[5, 3], [8, 9], [NO_PIN, NO_PIN]]
    assert np.isneginf(scores[2]).all()


def test_real_sources_train_and_recommend(data, world):
    """The registered sources (item-item left out for time), lake mode, end to end."""
    names = ("als", "content", "following", "pixie", "trending")
    config = ModelsConfig(
        sources={n: SourceConfig(k=100) for n in names},
        ranker=RankerConfig(rounds=60, min_data_in_leaf=20, learning_rate=0.1),
    )
    bundle = train_bundle(data, config, lake_examples(data))
    assert set(bundle.sources) == set(names)
    users = active_users(data, 40)
    cs = CandidateSet.gather(bundle.sources, bundle.ks, users)
    for name in ("als", "content"):  # exact pair scorers: every row scored, proposed or not
        column = cs.scores[:, cs.sources.index(name)]
        assert np.isfinite(column).all(), name
    got = bundle.recommend(users, 20)
    rows = np.repeat(np.arange(len(users)), 20)
    valid = got.pins.ravel() != NO_PIN
    recommended = world.match(users[rows[valid]], got.pins.ravel()[valid]).mean()
    baseline = world.match(np.repeat(users, 20), np.arange(len(users) * 20) % world.pins).mean()
    assert recommended > 1.5 * baseline, (recommended, baseline)


def test_ratings_rows_are_sampled_to_the_budget_keeping_every_label(
    ratings_bundle, data, monkeypatch
):
    from homefeed.models import pipeline

    full = ratings_bundle.metadata["timings"]
    users = full["ranker_users"]
    budget = users * 40  # well under the ~450 candidates per user of the toy sources
    monkeypatch.setattr(pipeline, "MAX_RANKER_ROWS", budget)
    sampled = train_bundle(data, CONFIG).metadata["timings"]
    assert sampled["ranker_positives"] == full["ranker_positives"]
    assert sampled["ranker_rows"] < full["ranker_rows"] / 3
    negatives = sum(full["ranker_positives"].values()) * CONFIG.ranker.negatives_per_positive
    assert sampled["ranker_rows"] < budget * 1.3 + negatives + 200
