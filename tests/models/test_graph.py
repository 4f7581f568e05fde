"""Pixie random walks: taste clusters, boosting, determinism, components, early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from homefeed.models.data import Action
from homefeed.models.sources.base import NO_PIN
from homefeed.models.sources.graph import PixieSource
from tests.models.test_collaborative import (
    engaged,
    in_cluster_unseen_share,
    pin_cluster,
    training_data,
    two_clusters,
)

A, B, C, X, Y = 1, 2, 3, 50, 60


def boosting_graph():
    """One user whose query pins are A, B, C (equal saves). Y sits on four boards with A only;
    X shares one board with A, B and C. Raw visits favour Y (A's walkers mostly land there);
    boosting favours X, which every query pin reaches."""
    src = [A, Y] * 4 + [A, B, C, X]
    dst = [100, 100, 101, 101, 102, 102, 103, 103] + [110] * 4
    return training_data(
        users=[7, 7, 7],
        pins=[A, B, C],
        actions=[Action.SAVE] * 3,
        pin_boards=(src, dst, [1.0] * len(src)),
        catalogue=np.array([A, B, C, X, Y]),
    )


def rank(source: PixieSource, user: int, pin: int) -> int:
    pins = source.retrieve(np.array([user]), 10).of(0)[0].tolist()
    return pins.index(pin)


def test_pixie_recommends_unseen_pins_of_the_users_cluster():
    data = two_clusters()
    source = PixieSource()
    source.fit(data)
    assert in_cluster_unseen_share(source, data) == 1.0
    assert source.stats.steps > 0 and source.stats.queries > 0


@pytest.mark.parametrize("user_boards", [True, False])
def test_walks_never_leave_the_connected_component(user_boards):
    data = two_clusters()
    source = PixieSource(user_boards=user_boards, exclude_seen=False, steps=5000)
    source.fit(data)
    got = source.retrieve(np.arange(1, 41), 60)
    for row, user in enumerate(got.user_ids.tolist()):
        pins = got.of(row)[0].tolist()
        assert len(pins) > 10, "the walk should reach most of the cluster"
        assert {pin_cluster(p) for p in pins} == {int(user > 20)}


def test_boosting_ranks_a_pin_reached_from_several_query_pins_first():
    data = boosting_graph()
    # alpha 1: one pin->board->pin step per walk, so the expected visits are exact: per 20k
    # steps Y gets ~3900 raw visits (all from A) and X ~3000 (490 from A, ~1280 each from B
    # and C); boosted, X gets ~8800 against Y's ~3900.
    params = {"user_boards": False, "n_p": 10_000, "steps": 20_000, "alpha": 1.0}
    boosted, plain = PixieSource(**params), PixieSource(**params, boost=False)
    boosted.fit(data)
    plain.fit(data)
    assert rank(plain, 7, Y) < rank(plain, 7, X), "without boosting Y has more raw visits"
    assert rank(boosted, 7, X) < rank(boosted, 7, Y)


def test_query_pins_and_excluded_pins_are_never_candidates():
    data = boosting_graph()
    source = PixieSource(user_boards=False, exclude_seen=False)
    source.fit(data)
    assert set(source.retrieve(np.array([7]), 10).of(0)[0].tolist()) == {X, Y}
    got = source.retrieve(np.array([7]), 10, exclude={7: np.array([X, 12345])})
    assert got.of(0)[0].tolist() == [Y]


def test_walks_are_deterministic_per_seed_and_independent_of_the_batch():
    data = two_clusters()
    source = PixieSource(steps=3000)
    source.fit(data)
    batch = source.retrieve(np.array([5, 25, 3]), 10)
    alone = source.retrieve(np.array([25]), 10)
    np.testing.assert_array_equal(batch.pins[1], alone.pins[0])
    np.testing.assert_array_equal(batch.scores[1], alone.scores[0])
    again = source.retrieve(np.array([5, 25, 3]), 10)
    np.testing.assert_array_equal(batch.scores, again.scores)
    other = PixieSource(steps=3000, seed=1)
    other.fit(data)
    assert not np.array_equal(other.retrieve(np.array([5, 25, 3]), 10).scores, batch.scores)


def test_early_stopping_takes_fewer_steps():
    data = two_clusters()
    users = np.arange(1, 41)
    full, early = PixieSource(n_p=10_000), PixieSource(n_p=5, n_v=3)
    full.fit(data)
    early.fit(data)
    full.retrieve(users, 10)
    got = early.retrieve(users, 10)
    assert full.stats.early_stopped == 0
    assert early.stats.early_stopped > 0
    assert early.stats.steps < full.stats.steps / 2
    assert full.stats.steps <= full.steps * len(users)
    assert in_cluster_unseen_share(early, data) >= 0.9
    assert np.all(got.pins[:, 0] != NO_PIN)


def test_step_budget_grows_with_degree_and_weight():
    data = boosting_graph()
    source = PixieSource(user_boards=False, steps=1000)
    source.fit(data)
    queries = source._pins.index(np.array([A, B, C]))
    even = source._budgets(queries, np.ones(3))
    assert even[0] > even[1] == even[2]  # A has 5 boards, B and C one
    assert even.sum() <= 1000
    heavier = source._budgets(queries, np.array([1.0, 3.0, 1.0]))
    assert heavier[1] > heavier[2]


def test_query_set_is_the_users_top_recent_pins():
    times = [0, 50, 99]
    data = training_data(
        users=[7, 7, 7],
        pins=[A, B, C],
        actions=[Action.SAVE] * 3,
        times_ms=[t * 86_400_000 for t in times],
        pin_boards=([A, B, C, X], [110] * 4, [1.0] * 4),
        catalogue=np.array([A, B, C, X]),
    )
    source = PixieSource(user_boards=False, query_pins=2, half_life_days=10.0)
    source.fit(data)
    query = source._queries[0].indices
    assert sorted(source._pins.ids[query].tolist()) == [B, C]
    got = set(source.retrieve(np.array([7]), 10).of(0)[0].tolist())
    assert B not in got and C not in got and X in got
    assert A not in got  # engaged (seen), though not a query pin


def test_users_without_graph_pins_and_unknown_users_get_nothing():
    data = training_data(
        users=[7, 8],
        pins=[A, B],
        actions=[Action.SAVE, Action.SAVE],
        pin_boards=([A, X], [110, 110], [1.0, 1.0]),
        catalogue=np.array([A, B, X]),
    )
    source = PixieSource(user_boards=False)
    source.fit(data)
    got = source.retrieve(np.array([8, -1, 7]), 5)
    assert np.all(got.pins[:2] == NO_PIN)
    assert got.of(2)[0].tolist() == [X]


def test_seen_pins_come_back_only_when_asked():
    data = two_clusters()
    seen = engaged(data, 3)
    for exclude_seen, overlap in ((True, False), (False, True)):
        # few query pins, so some seen pins are not queries (queries are never candidates)
        source = PixieSource(exclude_seen=exclude_seen, steps=3000, query_pins=3)
        source.fit(data)
        got = set(source.retrieve(np.array([3]), 30).of(0)[0].tolist())
        assert bool(got & seen) is overlap


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"query_pins": -1}, "query_pins"),
        ({"n_v": 0}, "n_v"),
        ({"half_life_days": -3.0}, "half_life_days"),
    ],
)
def test_bad_parameters_are_refused_by_name(params, field):
    with pytest.raises(ValueError, match=field):
        PixieSource(**params)


def test_k_zero_gives_empty_rows_and_negative_k_is_refused():
    source = PixieSource(steps=1000)
    source.fit(two_clusters())
    assert source.retrieve(np.array([3, 4]), 0).pins.shape == (2, 0)
    with pytest.raises(ValueError, match="k must be"):
        source.retrieve(np.array([3]), -1)


def test_walks_from_pin_ids_reach_the_same_pins_as_the_users_walks():
    data = boosting_graph()
    source = PixieSource(user_boards=False, steps=5000)
    source.fit(data)
    pins, counts = source.walk_pins(np.array([A, B, C, 999]), np.ones(4), np.random.default_rng(0))
    assert set(pins.tolist()) <= {A, B, C, X, Y} and {X, Y} <= set(pins.tolist())
    assert np.all(counts > 0) and len(pins) == len(counts)
    assert set(source.pin_ids.tolist()) == {A, B, C, X, Y}
    none = source.walk_pins(np.array([999]), np.ones(1), np.random.default_rng(0))
    assert len(none[0]) == 0
