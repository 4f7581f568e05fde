"""Behaviour of the following, trending and content sources on small hand-made event streams."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from homefeed.models.data import TrainingData
from homefeed.models.from_events import TrainingDataBuilder
from homefeed.models.sources.content import ContentSource, hashed_words
from homefeed.models.sources.following import FollowingSource
from homefeed.models.sources.trending import TrendingSource
from homefeed.testing.models import simulated_training_data

T0 = 1_800_000_000  # epoch seconds; every event below is an offset from here
DAY, HOUR = 86_400, 3_600
CREATOR = 900  # owns the catalogue; never followed


def event(kind: str, user: int, at: float, **fields: Any) -> dict[str, Any]:
    return {"event_type": kind, "user_id": user, "event_time": T0 + at, **fields}


def pin(pin_id: int, at: float = 0, topics: tuple[str, ...] = ("art",), title: str = "") -> dict:
    return event("pin_create", CREATOR, at, pin_id=pin_id, board_id=1, topics=topics, title=title)


def save(user: int, pin_id: int, at: float, board: int = 2) -> dict[str, Any]:
    return event("save", user, at, pin_id=pin_id, board_id=board)


def act(kind: str, user: int, pin_id: int, at: float) -> dict[str, Any]:
    return event(kind, user, at, pin_id=pin_id)


def follow(user: int, target: int, at: float, kind: str = "user", on: bool = True) -> dict:
    action = "follow" if on else "unfollow"
    return event("follow", user, at, target_type=kind, target_id=target, action=action)


def build(events: Iterable[dict[str, Any]], as_of: float) -> TrainingData:
    return TrainingDataBuilder().add_all(events).build(as_of_ms=int((T0 + as_of) * 1000))


def ranked(source: Any, user: int, k: int = 10, exclude: dict | None = None) -> list[int]:
    got = source.retrieve(np.array([user]), k, exclude=exclude)
    return got.of(0)[0].tolist()


def fitted(source: Any, data: TrainingData) -> Any:
    source.fit(data)
    return source


# ---------------------------------------------------------------- following

CATALOGUE = [pin(p) for p in range(100, 110)]


def test_following_returns_a_followees_save_not_a_strangers():
    events = [*CATALOGUE, follow(1, 2, 0), save(2, 100, 9 * DAY), save(3, 101, 9 * DAY)]
    source = fitted(FollowingSource(), build(events, 10 * DAY))
    assert ranked(source, 1) == [100]
    assert ranked(source, 3) == [], "following nobody gives nothing"
    assert ranked(source, 12345) == [], "an unknown user gives nothing"


def test_following_ranks_older_saves_lower_and_drops_too_old_ones():
    events = [
        *CATALOGUE,
        follow(1, 2, 0),
        save(2, 100, 9.5 * DAY),
        save(2, 101, 5 * DAY),
        save(2, 102, -10 * DAY),  # 20 days before as_of: past max_age_days=14
    ]
    source = fitted(FollowingSource(), build(events, 10 * DAY))
    got = source.retrieve(np.array([1]), 10)
    pins, scores = got.of(0)
    assert pins.tolist() == [100, 101]
    # half-life 3 days: 0.5 and 5 days old
    np.testing.assert_allclose(scores, [0.5 ** (0.5 / 3), 0.5 ** (5 / 3)], rtol=1e-5)


def test_following_sums_over_followees():
    events = [
        *CATALOGUE,
        follow(1, 2, 0),
        follow(1, 3, 0),
        save(2, 100, 9.9 * DAY),  # newest, but only one followee saved it
        save(2, 101, 8 * DAY),
        save(3, 101, 8 * DAY),
    ]
    source = fitted(FollowingSource(), build(events, 10 * DAY))
    assert ranked(source, 1) == [101, 100]


def test_following_ignores_unfollowed_targets():
    events = [
        *CATALOGUE,
        follow(1, 2, 0),
        follow(1, 4, 0),
        follow(1, 4, DAY, on=False),
        save(2, 100, 9 * DAY),
        save(4, 101, 9.5 * DAY),
    ]
    source = fitted(FollowingSource(), build(events, 10 * DAY))
    assert ranked(source, 1) == [100]


def test_following_a_board_brings_that_boards_pins_only():
    events = [
        *CATALOGUE,
        event("board_create", 5, 0, board_id=50),
        event("board_create", 5, 0, board_id=51),
        follow(1, 50, 0, kind="board"),
        save(5, 103, 9 * DAY, board=50),
        save(5, 104, 9.5 * DAY, board=51),
    ]
    source = fitted(FollowingSource(), build(events, 10 * DAY))
    assert ranked(source, 1) == [103]


def test_following_caps_each_followee_and_honours_excludes():
    saves = [save(2, 100 + i, (5 + i * 0.5) * DAY) for i in range(6)]
    data = build([*CATALOGUE, follow(1, 2, 0), *saves], 10 * DAY)
    capped = fitted(FollowingSource(per_followee=2), data)
    assert ranked(capped, 1) == [105, 104], "the two most recent saves"
    full = fitted(FollowingSource(), data)
    assert ranked(full, 1, k=3) == [105, 104, 103]
    assert ranked(full, 1, k=3, exclude={1: np.array([104, 999])}) == [105, 103, 102]


def test_following_refuses_bad_parameters():
    with pytest.raises(ValueError, match="half_life_days"):
        FollowingSource(half_life_days=0)
    with pytest.raises(ValueError, match="per_followee"):
        FollowingSource(per_followee=0)


# ---------------------------------------------------------------- trending


def _impressions_and_saves(pin_id: int, impressions: int, saves: int, at: float) -> list[dict]:
    """``impressions`` users see the pin around ``at``; the first ``saves`` of them save it."""
    out = []
    for i in range(impressions):
        user = 10_000 * pin_id + i
        out.append(act("impression", user, pin_id, at + i))
        if i < saves:
            out.append(save(user, pin_id, at + i + 1))
    return out


def _trending_world() -> TrainingData:
    as_of = 10 * DAY
    events = [
        *[pin(p, 0) for p in (100, 101, 102, 103)],
        *_impressions_and_saves(100, 20, 10, as_of - 6 * HOUR),  # many saves per impression
        *_impressions_and_saves(101, 400, 4, as_of - 6 * HOUR),  # many impressions, few saves
        *_impressions_and_saves(102, 1, 1, as_of - 6 * HOUR),  # one lucky impression
        *_impressions_and_saves(103, 30, 30, as_of - 5 * DAY),  # a hit, but outside the window
    ]
    return build(events, as_of)


def test_trending_ranks_a_high_save_rate_above_many_impressions():
    source = fitted(TrendingSource(explore_share=0), _trending_world())
    # The prior keeps the single lucky impression below the proven pin, above the dud.
    assert ranked(source, 1) == [100, 102, 101]


def test_trending_is_one_list_for_everyone_minus_their_excludes():
    source = fitted(TrendingSource(explore_share=0), _trending_world())
    got = source.retrieve(np.array([1, 2, -5]), 3, exclude={2: np.array([100])})
    assert got.of(0)[0].tolist() == [100, 102, 101]
    assert got.of(1)[0].tolist() == [102, 101]
    assert got.of(2)[0].tolist() == [100, 102, 101], "unknown users get the list too"


def test_trending_reserves_explore_slots_for_the_freshest_pins():
    as_of = 10 * DAY
    popular = [pin(p, 0) for p in range(100, 112)]
    fresh = [pin(200 + i, as_of - (i + 1) * HOUR) for i in range(8)]  # 200 is the newest
    engagement = [e for p in range(100, 112) for e in _impressions_and_saves(p, 20, 5, as_of - DAY)]
    data = build([*popular, *fresh, *engagement], as_of)
    source = fitted(TrendingSource(explore_share=0.2), data)
    pins, scores = source.retrieve(np.array([1]), 10).of(0)
    assert sorted(set(pins.tolist()) - set(range(100, 112))) == [200, 201], "2 of 10 slots"
    assert np.all(np.diff(scores) <= 0)
    assert ranked(source, 1, k=10, exclude={1: np.array([200])}).count(202) == 1
    greedy = fitted(TrendingSource(explore_share=0), data)
    assert set(ranked(greedy, 1, k=10)) <= set(range(100, 112)), "no exploration, no fresh pins"
    # 12 trending pins cannot fill 20 slots: the fresh pins fill the rest, not just 4 of them
    everything = ranked(source, 1, k=20)
    assert set(everything) == set(range(100, 112)) | set(range(200, 208))


def test_trending_works_without_impressions():
    as_of = 10 * DAY
    events = [pin(p, 0) for p in (100, 101, 102)]
    events += [save(u, 100, as_of - 3 * HOUR) for u in range(5)]
    events += [act("click", 7, 101, as_of - 3 * HOUR), save(8, 102, as_of - 3 * HOUR)]
    source = fitted(TrendingSource(explore_share=0), build(events, as_of))
    assert ranked(source, 1) == [100, 102, 101]


def test_trending_refuses_bad_parameters():
    with pytest.raises(ValueError, match="explore_share"):
        TrendingSource(explore_share=1.5)
    with pytest.raises(ValueError, match="window_days"):
        TrendingSource(window_days="2")


# ---------------------------------------------------------------- content


def _topic_catalogue() -> list[dict]:
    topics = {"art": range(100, 110), "cars": range(110, 120), "food": range(120, 130)}
    return [pin(p, 0, topics=(t,), title=f"{t} idea") for t, ps in topics.items() for p in ps]


def _topics_of(pins: list[int]) -> list[str]:
    return ["art" if p < 110 else "cars" if p < 120 else "food" for p in pins]


def test_content_recommends_the_topic_the_user_engaged_with():
    events = [*_topic_catalogue(), save(1, 100, DAY), save(1, 101, DAY), act("click", 1, 125, DAY)]
    source = fitted(ContentSource(), build(events, 2 * DAY))
    got = ranked(source, 1, k=12)
    assert _topics_of(got[:10]) == ["art"] * 10, "saves outweigh a click"
    assert _topics_of(got[10:]) == ["food", "food"]
    assert ranked(source, 12345) == []


def test_content_hides_push_a_topic_down():
    likes = [save(u, 100, DAY) for u in (1, 2)] + [save(u, 110, DAY) for u in (1, 2)]
    hides = [act("hide", 2, 111, DAY), act("hide", 2, 112, DAY)]
    source = fitted(ContentSource(), build([*_topic_catalogue(), *likes, *hides], 2 * DAY))
    assert _topics_of(ranked(source, 2, k=10)) == ["art"] * 10
    cars = np.array([113, 113])
    with_hides, without = source.similarity(np.array([2, 1]), cars)
    assert with_hides < without


def test_content_uses_title_words_when_present():
    events = [
        pin(100, 0, topics=("cars",), title="red sports car"),
        pin(101, 0, topics=("cars",), title="vintage sports car"),
        pin(102, 0, topics=("cars",), title="family minivan"),
        save(1, 100, DAY),
    ]
    source = fitted(ContentSource(), build(events, 2 * DAY))
    assert ranked(source, 1, exclude={1: np.array([100])}) == [101, 102]
    assert source.pin_embeddings.shape == (3, 1 + source.text_dims)


def test_hashed_words_are_stable_and_ignore_numbers():
    a = hashed_words(("Sports car #12", ""), 64)
    b = hashed_words(("sports CAR 7",), 64)
    np.testing.assert_array_equal(a[0], b[0])
    assert np.count_nonzero(a[1]) == 0
    assert np.abs(a[0]).sum() == 2


def test_content_similarity_is_cosine_and_zero_when_unknown():
    events = [*_topic_catalogue(), save(1, 100, DAY)]
    source = fitted(ContentSource(), build(events, 2 * DAY))
    norms = np.linalg.norm(source.pin_embeddings, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    assert np.array_equal(source.pin_ids, np.arange(100, 130))
    sims = source.similarity(np.array([1, 1, 1, 999]), np.array([100, 120, 555, 100]))
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    # different topics, one shared title word ("idea"): only the text part, weighted
    # 0.5, overlaps by half: 0.5**2 * 0.5 / (1 + 0.5**2)
    assert sims[1] == pytest.approx(0.1, abs=1e-5)
    assert sims[2] == 0.0 and sims[3] == 0.0
    with pytest.raises(ValueError, match="pair up"):
        source.similarity(np.array([1, 2]), np.array([100]))


def test_content_ann_agrees_with_exact_search():
    data = simulated_training_data()
    exact = fitted(ContentSource(), data)
    approx = fitted(ContentSource(exact_below=10), data)
    assert (exact.index_kind, approx.index_kind) == ("exact", "hnsw")
    users = exact.user_ids
    k = 10
    a, b = exact.retrieve(users, k), approx.retrieve(users, k)
    recalls = []
    for row, user in enumerate(users):
        truth_scores = a.of(row)[1]
        found = b.of(row)[0]
        # Many pins share an embedding (same topics and title words): a found pin counts when
        # its true cosine reaches the exact k-th score, whichever of the tied pins it is.
        true_cos = exact.similarity(np.full(len(found), user), found)
        recalls.append(np.sum(true_cos >= truth_scores[-1] - 1e-5) / len(truth_scores))
    assert np.mean(recalls) >= 0.9
    assert np.mean(np.array(recalls) >= 0.9) >= 0.9, "recall@10 >= 0.9 for most users"


def test_content_ann_path_is_deterministic_and_round_trips(tmp_path):
    data = simulated_training_data()
    first = fitted(ContentSource(exact_below=10), data)
    twin = fitted(ContentSource(exact_below=10), data)
    users = first.user_ids[:30]
    a, b = first.retrieve(users, 10), twin.retrieve(users, 10)
    assert np.array_equal(a.pins, b.pins)
    first.save(tmp_path / "content")
    loaded = ContentSource.load(tmp_path / "content")
    assert isinstance(loaded, ContentSource) and loaded.index_kind == "hnsw"
    assert np.array_equal(loaded.retrieve(users, 10).pins, a.pins)
    np.testing.assert_array_equal(loaded.pin_embeddings, first.pin_embeddings)


def test_content_refuses_bad_parameters():
    with pytest.raises(ValueError, match="text_dims"):
        ContentSource(text_dims=0)
    with pytest.raises(ValueError, match="half_life_days"):
        ContentSource(half_life_days=-1)
