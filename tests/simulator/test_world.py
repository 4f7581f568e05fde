"""The world: deterministic by seed, internally consistent, with the skews it promises."""

import numpy as np

from homefeed.config import SimulatorConfig
from homefeed.simulator import World
from homefeed.simulator.world import MAX_BOARDS

from .helpers import MEDIUM, WORLD


def test_same_seed_same_world_other_seed_other_world():
    again = World.generate(MEDIUM)
    other = World.generate(MEDIUM.model_copy(update={"seed": 6}))
    for name in ("interests", "pin_topic", "pin_created_ms", "board_topic", "pin_popularity"):
        assert np.array_equal(getattr(WORLD, name), getattr(again, name)), name
    assert np.array_equal(WORLD.follows_users.values, again.follows_users.values)
    assert not np.array_equal(WORLD.pin_topic, other.pin_topic)


def test_users_have_sparse_interests_and_heavy_tailed_activity():
    w = WORLD
    assert np.allclose(w.interests.sum(axis=1), 1.0, atol=1e-4)
    top4 = np.sort(w.interests, axis=1)[:, -4:].sum(axis=1)
    assert np.median(top4) > 0.7  # a handful of topics carry most of a user's interest
    assert w.activity.max() > 5 * np.median(w.activity)


def test_boards_belong_to_users_and_pins_to_their_creators_boards():
    w = WORLD
    for user in range(w.users):
        boards = w.boards_of(user)
        assert 1 <= len(boards) <= MAX_BOARDS
        assert np.all(w.board_owner[boards] == user)
        assert w.board_created_ms[boards[0]] < w.start_ms  # the first board always exists
        assert len(set(w.board_topic[boards].tolist())) == len(boards)
    assert np.all(w.board_owner[w.pin_board] == w.pin_creator)
    assert np.all(w.pin_created_ms > w.board_created_ms[w.pin_board])
    on_board_topic = np.mean(w.pin_topic == w.board_topic[w.pin_board])
    assert 0.8 < on_board_topic < 0.95
    assert np.all(w.pin_topic2 != w.pin_topic)


def test_some_pins_and_boards_are_created_during_the_window():
    w = World.generate(SimulatorConfig(users=300, pins=3000, days=2.0, seed=5))
    new_pins = (w.pin_created_ms >= w.start_ms) & (w.pin_created_ms < w.end_ms)
    assert 0.05 < new_pins.mean() < 0.2 and np.all(w.pin_created_ms < w.end_ms)
    assert np.any(w.board_created_ms >= w.start_ms) and np.all(w.board_created_ms < w.end_ms)


def test_popularity_is_zipf_like_and_favours_quality():
    w = WORLD
    assert np.isclose(w.pin_popularity.sum(), 1.0)
    top = np.sort(w.pin_popularity)[::-1]
    assert top[: w.pins // 100].sum() > 0.2  # the top 1% of pins hold over a fifth
    popular = w.pin_popularity > np.median(w.pin_popularity)
    assert w.pin_quality[popular].mean() > w.pin_quality[~popular].mean() + 0.05


def test_users_follow_popular_similar_creators_never_themselves():
    w = WORLD
    fame = np.bincount(w.pin_creator, weights=w.pin_popularity, minlength=w.users)
    followed = w.follows_users.values
    assert fame[followed].mean() > 5 * fame.mean()
    sims, baseline = [], []
    rng = np.random.default_rng(0)
    for user in range(w.users):
        targets = w.follows_users.row(user)
        assert user not in targets and len(set(targets.tolist())) == len(targets)
        if len(targets):
            sims.append(float((w.interests[targets] @ w.interests[user]).mean()))
            # The same creators for a random user: fame alone, no similarity.
            baseline.append(
                float((w.interests[targets] @ w.interests[rng.integers(w.users)]).mean())
            )
        boards = w.follows_boards.row(user)
        assert not np.any(w.board_owner[boards] == user)
    assert np.mean(sims) > 1.2 * np.mean(baseline)


def test_match_is_one_for_an_average_topic():
    w = WORLD
    user = 11
    primary_only = np.flatnonzero(w.pin_topic2 < 0)
    match = w.match(user, primary_only)
    expected = w.interests[user, w.pin_topic[primary_only]] * len(w.topics)
    assert np.allclose(match, expected, rtol=1e-5)
