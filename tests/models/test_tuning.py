"""The evaluation blend and the validation harness, on small generated data."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from homefeed.models.evaluation.blend import (
    BlendedRecommender,
    BlendParams,
    History,
    TimeShares,
    TopicAffinity,
    ease_weights,
    sequence_cooccurrence,
    session_gram,
    standardise,
)
from homefeed.models.evaluation.movielens import (
    GENRES,
    Ease,
    Movies,
    Popularity,
    Ratings,
    Split,
    evaluate,
    training_data,
)
from homefeed.models.evaluation.tuning import validate, validation_split
from homefeed.testing.models import simulated_training_data

DAY = 86_400


def movies_of(n: int) -> Movies:
    ids = np.arange(1, n + 1, dtype=np.int64)
    genres = np.zeros((n, len(GENRES)), dtype=bool)
    genres[np.arange(n), 1 + ids % 4] = True
    return Movies(ids, tuple(f"Movie {i}" for i in ids), np.zeros(n, np.int64), genres)


def session_ratings(users: int = 80, items: int = 60, seed: int = 5) -> Ratings:
    """Users rate in two sessions days apart, each walking a chain of neighbouring items from
    a random start (like a list they scroll). Whole histories mix the two chains; only the
    time order says which items go together."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, users + 1):
        seen: set[int] = set()
        for session in range(2):
            start_s = (int(rng.integers(0, 60)) + 70 * session) * DAY
            first = int(rng.integers(0, items))
            chain = (first + np.arange(int(rng.integers(6, 12)))) % items
            for step, item in enumerate(chain.tolist()):
                if item not in seen:
                    seen.add(item)
                    rows.append((user, item + 1, int(rng.integers(1, 6)), start_s + 30 * step))
    table = np.array(rows, dtype=np.int64)
    return Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.int8), table[:, 3])


@pytest.fixture(scope="module")
def split() -> Split:
    return Split.of(session_ratings(), movies_of(60))


def test_blend_recommends_unseen_pins_and_falls_back_for_strangers():
    data = simulated_training_data()
    model = BlendedRecommender.fit(data)
    users = np.unique(data.positives().user_id)[:30]
    exclude = {int(u): data.positives().pin_id[data.positives().user_id == u] for u in users}
    stranger = np.int64(10**9)
    recs = model.recommend(np.r_[users, stranger], 10, exclude)
    for i, u in enumerate(users.tolist()):
        pins, _ = recs.of(i)
        assert len(pins) == 10 and len(set(pins.tolist())) == 10
        assert not set(pins.tolist()) & set(exclude[u].tolist())
    popular = Popularity(data).recommend(np.array([stranger]), 10, {})
    assert recs.of(len(users))[0].tolist() == popular.of(0)[0].tolist()


def test_session_ease_sees_what_whole_histories_blur(split):
    """Same L2 (small data): EASE over sessions beats EASE over whole histories by a margin,
    and the blend of everything beats EASE alone (but topics: genres here are ids mod 4,
    unrelated to what users rate)."""
    ease = evaluate(Ease(split.data, 10.0), split, 10)["ndcg"]
    weights = {k: v for k, v in BlendParams().weights.items() if k != "topics"}
    small = BlendParams(ease_l2=10.0, save_weighted_l2=10.0, session_l2=10.0, weights=weights)
    session_only = replace(small, weights={"session_ease": 1.0})
    assert evaluate(BlendedRecommender.fit(split.data, session_only), split, 10)["ndcg"] > (
        ease + 0.03
    )
    assert evaluate(BlendedRecommender.fit(split.data, small), split, 10)["ndcg"] > ease
    assert ease > evaluate(Popularity(split.data), split, 10)["ndcg"]


def test_standardise_gives_zero_mean_unit_spread_over_kept_pins():
    rng = np.random.default_rng(0)
    scores = rng.normal(3.0, 5.0, (4, 50))
    excluded = rng.random((4, 50)) < 0.3
    z = standardise(scores, excluded)
    for row, mask in zip(z, excluded, strict=True):
        assert row[~mask].mean() == pytest.approx(0.0, abs=1e-9)
        assert row[~mask].std() == pytest.approx(1.0)
    # excluded pins do not move the statistics
    scores[excluded] = 1e6
    assert np.allclose(standardise(scores, excluded)[~excluded], z[~excluded])


def test_session_gram_counts_pins_within_the_window():
    user = np.array([0, 0, 0, 1, 1])
    pin = np.array([0, 1, 2, 2, 3])
    gram = session_gram(user, pin, 4, window=1)
    # windows: {0,1} {1,2} {2} for user 0; {2,3} {3} for user 1 (never across users)
    assert gram[0, 1] == 1 and gram[1, 2] == 1 and gram[0, 2] == 0 and gram[2, 3] == 1
    assert np.diag(gram).tolist() == [1, 2, 3, 2]
    assert session_gram(user, pin, 4, window=2)[0, 2] == 1


def test_sequence_cooccurrence_weighs_by_steps_and_popularity():
    user = np.array([0, 0, 0, 1, 1])
    pin = np.array([0, 1, 2, 0, 1])
    co = sequence_cooccurrence(user, pin, 3, window=2, popularity_power=0.0)
    assert co[0, 1] == 2 and co[0, 2] == 0.5 and co[1, 2] == 1 and co[2, 2] == 0
    scaled = sequence_cooccurrence(user, pin, 3, window=2, popularity_power=1.0)
    assert scaled[2, 0] == pytest.approx(0.5 / 2)  # pin 0 was engaged twice


def test_ease_weights_have_a_zero_diagonal_and_predict_co_engaged_pins():
    gram = np.array([[5.0, 4.0, 0.0], [4.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    b = ease_weights(gram, 1.0)
    assert np.all(np.diag(b) == 0)
    assert b[0, 1] > 0.5 and abs(b[0, 2]) < 1e-6


def time_split_data():
    """Early users rate items 1-10 on day 0, late users items 11-20 on day 100."""
    rows = [(u, i, 4, u) for u in range(1, 21) for i in range(1, 11)]
    rows += [(u, i, 4, 100 * DAY + u) for u in range(21, 41) for i in range(11, 21)]
    rows += [(41, 1, 4, 50)]
    table = np.array(rows, dtype=np.int64)
    ratings = Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.int8), table[:, 3])
    return training_data(ratings, movies_of(20))


def test_time_shares_favour_pins_engaged_when_the_user_was_active():
    history = History(time_split_data())
    row = history.users.index(np.array([41]))
    ratio = TimeShares(history, days=7.0).log_ratio(row)[0]
    early, late = history.pins.index(np.arange(2, 11)), history.pins.index(np.arange(11, 21))
    assert ratio[early].min() > 0 > ratio[late].max()


def test_availability_penalises_pins_that_appeared_after_the_user_left():
    data = time_split_data()
    only = BlendParams(weights={"availability": 1.0})
    model = BlendedRecommender.fit(data, only)
    rows = model.users.index(np.array([41]))
    scores = model.scores(rows, np.zeros((1, len(model.pins)), dtype=bool))[0]
    late = model.pins.index(np.arange(11, 21))
    assert np.all(scores[late] == -1.0) and np.sum(scores == 0.0) == 10


def test_topic_affinity_favours_pins_in_the_users_own_topics():
    # user 1 rates only movies of one genre (ids divisible by 4); users 2-5 rate everything
    rows = [(1, i, 4, i) for i in range(4, 21, 4)]
    rows += [(u, i, 4, 100 * u + i) for u in range(2, 6) for i in range(1, 21)]
    table = np.array(rows, dtype=np.int64)
    ratings = Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.int8), table[:, 3])
    data = training_data(ratings, movies_of(20))
    history = History(data)
    topics = TopicAffinity(history, data, smoothing=0.01)
    scores = topics.scores(history.users.index(np.array([1, 2])))
    own = history.pins.index(np.arange(4, 21, 4))
    other = history.pins.index(np.array([i for i in range(1, 21) if i % 4]))
    assert scores[0, own].min() > 0 > scores[0, other].max()
    # a user who rates like everyone has no preference either way
    assert np.abs(scores[1]).max() < np.abs(scores[0]).max() / 2
    only = BlendParams(weights={"topics": 1.0})
    model = BlendedRecommender.fit(data, only)
    recs = model.recommend(np.array([1]), 4, {1: np.array([4])})
    assert set(recs.of(0)[0].tolist()) == {8, 12, 16, 20}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"weights": {"ease": 1.0, "bogus": 1.0}}, "bogus"),
        ({"weights": {"time_-3": 1.0}}, "time_-3"),
        ({"ease_l2": 0.0}, "ease_l2"),
        ({"session_window": 0}, "session_window"),
        ({"other_weight": 1.5}, "other_weight"),
        ({"availability_margin_days": -1.0}, "availability_margin_days"),
        ({"topic_smoothing": 0.0}, "topic_smoothing"),
    ],
)
def test_blend_params_name_the_bad_field(changes, field):
    with pytest.raises(ValueError, match=field):
        BlendParams(**changes)


def test_validation_splits_carve_the_train_part_only(split):
    train_rows = set(zip(split.train.user_id.tolist(), split.train.item_id.tolist(), strict=True))
    for seed in (1, 2):
        val = validation_split(split, seed)
        parts = [val.train, val.test]
        rows = [set(zip(p.user_id.tolist(), p.item_id.tolist(), strict=True)) for p in parts]
        assert rows[0] | rows[1] == train_rows and not rows[0] & rows[1]
        assert len(val.test) / len(split.train) == pytest.approx(0.25, abs=0.05)
    assert validation_split(split, 1).test.item_id.tolist() != (
        validation_split(split, 2).test.item_id.tolist()
    )
    with pytest.raises(ValueError, match="seed 42"):
        validation_split(split, 42)


def test_validation_split_ratio_sets_the_fitted_share(split):
    val = validation_split(split, 3, ratio=0.9)
    assert len(val.test) / len(split.train) == pytest.approx(0.1, abs=0.05)
    assert len(val.train) + len(val.test) == len(split.train)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="ratio"):
            validation_split(split, 3, ratio=bad)
    result = validate(split, {"same": Ease}, seeds=(3,), ratio=0.9)
    assert result.baseline[0] == evaluate(Ease(val.data), val, 10)["ndcg"]


def test_validate_measures_gains_over_the_baseline_per_seed(split):
    result = validate(
        split, {"same": Ease, "weak": partial(Ease, l2=1e6)}, seeds=(1, 2), baseline=Ease
    )
    assert result.seeds == (1, 2) and len(result.baseline) == 2
    assert result.gain("same") == 0.0 and result.worst_gain("same") == 0.0
    assert result.gain("weak") < 0.0
    with pytest.raises(ValueError, match="seeds"):
        validate(split, {"same": Ease}, seeds=())


def test_save_weighted_history_keeps_the_strongest_engagement_per_pin():
    # user 1: item 1 rated 2 then 5 (a click and a save), item 2 rated 3 (a click only)
    table = np.array([(1, 1, 2, 10), (1, 1, 5, 20), (1, 2, 3, 30), (2, 1, 4, 40)])
    ratings = Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.int8), table[:, 3])
    history = History(training_data(ratings, movies_of(2)))
    weighted = history.save_weighted(0.5).toarray()
    rows, cols = history.users.index(np.array([1, 2])), history.pins.index(np.array([1, 2]))
    assert weighted[rows[0], cols].tolist() == [1.0, 0.5]
    assert weighted[rows[1], cols].tolist() == [1.0, 0.0]
