"""The baseline feed: its sources are what they claim, and it serves only servable pins."""

import numpy as np

from homefeed.simulator import BaselineFeed, UserState
from homefeed.simulator.feeds import SOURCES

from .helpers import WORLD


def _batch(feed: BaselineFeed, state: UserState, users: np.ndarray, seed: int = 0):
    now = np.full(len(users), feed.now_ms)
    return feed.build(users, now, np.arange(len(users)), state, np.random.default_rng(seed))


def test_feeds_mix_the_three_sources_with_honest_labels():
    feed = BaselineFeed(WORLD, size=40)
    feed.set_time(WORLD.start_ms + 3_600_000)
    state = UserState(WORLD.users, len(WORLD.topics))
    users = np.arange(WORLD.users)
    batch = _batch(feed, state, users)
    counts = np.bincount(batch.sources, minlength=3)
    assert all(counts > 0.1 * len(batch.pins)), dict(zip(SOURCES, counts.tolist(), strict=True))
    for s in range(len(batch)):
        pins = batch.pins[batch.offsets[s] : batch.offsets[s + 1]]
        sources = batch.sources[batch.offsets[s] : batch.offsets[s + 1]]
        assert len(set(pins.tolist())) == len(pins) > 20  # no duplicates
        user = int(batch.users[s])
        followed = set(WORLD.follows_users.row(user).tolist())
        boards = set(WORLD.follows_boards.row(user).tolist())
        for pin in pins[sources == 0].tolist():
            assert WORLD.pin_creator[pin] in followed or WORLD.pin_board[pin] in boards
    assert np.all(WORLD.pin_created_ms[batch.pins] <= feed.now_ms)  # nothing from the future


def test_new_follows_feed_the_following_source():
    feed = BaselineFeed(WORLD)
    feed.set_time(WORLD.end_ms - 1)
    state = UserState(WORLD.users, len(WORLD.topics))
    user = int(np.argmin(WORLD.follows_users.lengths + WORLD.follows_boards.lengths))
    creator = int(np.bincount(WORLD.pin_creator).argmax())
    state.follows[user, 0] = creator * 2  # as if the user followed them during the run
    state.follows_count[user] = 1
    pins, sources = feed.feed(user, state, np.random.default_rng(0))
    from_following = [p for p, s in zip(pins.tolist(), sources, strict=True) if s == "following"]
    assert from_following and all(WORLD.pin_creator[p] == creator for p in from_following)


def test_hidden_pins_are_not_served_again():
    feed = BaselineFeed(WORLD)
    state = UserState(WORLD.users, len(WORLD.topics))
    user = 1
    first, _ = feed.feed(user, state, np.random.default_rng(0))
    state.acted[user, : len(first[:20])] = first[:20] * 2 + 1  # hid the first twenty
    state.acted_count[user] = 20
    again, _ = feed.feed(user, state, np.random.default_rng(0))
    assert not set(again.tolist()) & set(first[:20].tolist())


def test_no_pins_yet_means_empty_feeds():
    feed = BaselineFeed(WORLD)
    feed.set_time(int(WORLD.pin_created_ms.min()) - 1)
    batch = _batch(feed, UserState(WORLD.users, len(WORLD.topics)), np.arange(3))
    assert len(batch) == 3 and len(batch.pins) == 0
