"""The user model: valid events for any feed, and users that behave like users.

The statistical checks use fixed seeds and margins far from what a broken model would give.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.simulator import Behaviour, Feeds, UserModel

from .helpers import NOW, WORLD, fresh_model, kinds, pins_by_match, rejections


def _fresh_react(model: UserModel, user: int, pins: np.ndarray, seed: int) -> list[dict]:
    """Show ``pins`` to a copy of the user with the model's memory, with draws from ``seed``."""
    return model.clone().react(user, pins, request_id="r", now=NOW, rng=np.random.default_rng(seed))


def _closeup_rate(model: UserModel, user: int, pins: np.ndarray, trials: int) -> tuple[int, int]:
    """(closeups, impressions) over ``trials`` showings, each to a user with no memory."""
    closeups = impressions = 0
    for t in range(trials):
        events = _fresh_react(model, user, pins, t)
        impressions += len(kinds(events, "impression"))
        closeups += len(kinds(events, "closeup"))
    return closeups, impressions


def test_users_engage_more_with_pins_matching_their_interests():
    model = fresh_model(1)
    good = bad = np.zeros(2)
    for user in range(20):
        best, worst = pins_by_match(user)
        good = good + _closeup_rate(model, user, best, 10)
        bad = bad + _closeup_rate(model, user, worst, 10)
    assert good[0] / good[1] > 5 * bad[0] / bad[1]


def test_position_bias_top_positions_get_more_closeups_and_views():
    model = fresh_model(2)
    rng = np.random.default_rng(0)
    shown = np.zeros(40)
    closed = np.zeros(40)
    for trial in range(300):
        user = trial % WORLD.users
        best, _ = pins_by_match(user, 40)
        feed = rng.permutation(best)  # equally good pins in random order: only position differs
        events = _fresh_react(model, user, feed, trial)
        position = {e["pin_id"]: e["position"] for e in kinds(events, "impression")}
        for e in kinds(events, "impression"):
            shown[e["position"]] += 1
        for e in kinds(events, "closeup"):
            closed[position[e["pin_id"]]] += 1
    assert shown[0] == 300 and shown[30] < 0.5 * shown[0]  # users stop scrolling
    assert closed[:5].sum() / shown[:5].sum() > 1.3 * closed[20:30].sum() / shown[20:30].sum()


def test_hides_concentrate_on_poorly_matched_pins():
    model = fresh_model(3)
    hides = {"good": 0, "bad": 0}
    for user in range(WORLD.users):
        best, worst = pins_by_match(user)
        for name, pins in (("good", best), ("bad", worst)):
            hides[name] += len(kinds(_fresh_react(model, user, pins, user), "hide"))
    assert hides["bad"] > 4 * max(hides["good"], 1)


def test_fatigue_reshowing_the_same_pins_earns_less():
    model = fresh_model(4)
    first = second = 0
    for user in range(60):
        best, _ = pins_by_match(user)
        first += len(kinds(model.react(user, best, request_id="a", now=NOW), "closeup"))
        second += len(kinds(model.react(user, best, request_id="b", now=NOW + 60), "closeup"))
    assert second < 0.6 * first


def test_fatigue_seen_pins_lose_attraction_unseen_pins_do_not():
    model = fresh_model(5)
    user = 7
    best, _ = pins_by_match(user, 40)
    before = model.probabilities(user, best, NOW).attract
    events = model.react(user, best, request_id="r", now=NOW)
    seen = [e["position"] for e in kinds(events, "impression")]
    after = model.probabilities(user, best, NOW).attract
    assert np.all(after[seen] <= model.b.repeat_fatigue * before[seen] + 1e-12)
    unseen = [i for i in range(len(best)) if i not in seen]
    assert unseen and np.all(after[unseen] <= before[unseen])  # topic fatigue only
    assert np.all(after[unseen] > model.b.repeat_fatigue * before[unseen])


def test_topic_fatigue_many_pins_of_one_topic_in_a_feed():
    model = fresh_model(6)
    user = 3
    topic = int(np.argmax(WORLD.interests[user]))
    same = np.flatnonzero((WORLD.pin_topic == topic) & (WORLD.pin_topic2 < 0))
    others = np.flatnonzero(WORLD.pin_topic != topic)
    target, same = same[0], same[1:21]
    after_same = model.probabilities(user, np.r_[same, target], NOW).attract[-1]
    after_others = model.probabilities(user, np.r_[others[:20], target], NOW).attract[-1]
    assert after_same < 0.7 * after_others


def test_saves_go_to_the_users_own_board_of_the_pins_topic():
    model = fresh_model(7)
    saves = []
    for user in range(WORLD.users):
        best, _ = pins_by_match(user)
        saves += kinds(model.react(user, best, request_id="r", now=NOW), "save")
    assert len(saves) > 100
    on_topic = 0
    for e in saves:
        boards = WORLD.boards_of(e["user_id"])
        assert e["board_id"] in boards.tolist()
        assert WORLD.board_created_ms[e["board_id"]] <= NOW * 1000
        existing = boards[WORLD.board_created_ms[boards] <= NOW * 1000]
        matching = existing[WORLD.board_topic[existing] == WORLD.pin_topic[e["pin_id"]]]
        if len(matching):  # a board on the pin's topic is always preferred
            assert e["board_id"] in matching.tolist()
            on_topic += 1
    assert on_topic > 0.5 * len(saves)


def test_a_hidden_pin_is_never_engaged_again():
    model = fresh_model(8)
    user, (_, worst) = 5, pins_by_match(5)
    hidden = None
    for t in range(200):
        hides = kinds(model.react(user, worst, request_id="r", now=NOW + t), "hide")
        if hides:
            hidden = hides[0]["pin_id"]
            break
    assert hidden is not None
    assert model.state.hidden(np.array([user]), np.array([hidden]))[0]
    assert model.probabilities(user, [hidden]).attract[0] == 0.0


def test_follows_after_saves_target_the_saved_pins_creator_or_board():
    model = fresh_model(9)
    events = []
    for user in range(WORLD.users):
        best, _ = pins_by_match(user)
        events += model.react(user, best, request_id="r", now=NOW)
    follows = kinds(events, "follow")
    assert follows
    saved = {}
    for e in kinds(events, "save"):
        saved.setdefault(e["user_id"], set()).add(e["pin_id"])
    for e in follows:
        pins = saved[e["user_id"]]
        if e["target_type"] == "user":
            assert e["target_id"] != e["user_id"]
            assert e["target_id"] in {int(WORLD.pin_creator[p]) for p in pins}
            assert e["target_id"] not in WORLD.follows_users.row(e["user_id"]).tolist()
        else:
            assert e["target_id"] in {int(WORLD.pin_board[p]) for p in pins}
    pairs = [(e["user_id"], e["target_type"], e["target_id"]) for e in follows]
    assert len(pairs) == len(set(pairs))  # never the same follow twice


def test_an_interest_ranked_feed_earns_more_saves_than_a_random_one():
    """The property online experiments rely on: a better ranking wins, measurably."""
    ranked, randomly = fresh_model(10), fresh_model(10)
    rng = np.random.default_rng(1)
    saves = {"ranked": 0, "random": 0}
    for user in range(WORLD.users):
        candidates = rng.choice(WORLD.pins, size=200, replace=False)
        order = np.argsort(-WORLD.match(user, candidates))
        for name, model, feed in (
            ("ranked", ranked, candidates[order][:40]),
            ("random", randomly, candidates[:40]),
        ):
            draws = np.random.default_rng([user, 0])  # the same draws in both arms
            events = model.react(user, feed, request_id="r", now=NOW, rng=draws)
            saves[name] += len(kinds(events, "save"))
    assert saves["ranked"] > 2 * saves["random"]


def test_react_is_react_batch_for_one_session():
    pins = np.arange(0, 600, 15)
    events = fresh_model().react(12, pins, request_id="r", now=NOW, rng=np.random.default_rng(3))
    feeds = Feeds.single(12, pins, "unknown", int(NOW * 1000))
    cols = fresh_model().react_batch(feeds, np.random.default_rng(3)).sorted_by_time()
    assert [e["event_type"] for e in events] == [
        ["impression", "closeup", "click", "save", "hide", "follow"][k] for k in cols.kind
    ]
    assert [e.get("pin_id", e.get("target_id")) for e in events] == cols.ref.tolist()


def test_clones_start_equal_and_stay_independent():
    model = fresh_model(11)
    best, _ = pins_by_match(4)
    model.react(4, best, request_id="r", now=NOW)
    remembered = model.state.seen_count.copy()
    a, b = model.clone(), model.clone()
    run_a = a.react(4, best, request_id="r", now=NOW + 60, rng=np.random.default_rng(1))
    run_b = b.react(4, best, request_id="r", now=NOW + 60, rng=np.random.default_rng(1))
    strip = [{k: v for k, v in e.items() if k != "event_id"} for e in run_a]
    assert strip == [{k: v for k, v in e.items() if k != "event_id"} for e in run_b]
    assert np.array_equal(model.state.seen_count, remembered)  # the original is untouched
    assert a.state.seen_count[4] == remembered[4] + len(kinds(run_a, "impression"))


def test_react_events_are_in_time_order_from_now():
    model = fresh_model(12)
    best, _ = pins_by_match(2)
    events = model.react(2, best, request_id="r", now=NOW)
    times = [e["event_time"] for e in events]
    assert times == sorted(times) and times[0] == "2026-11-01T01:00:00.000Z"


def test_behaviour_knobs_move_the_outcome():
    best, _ = pins_by_match(9)
    base = fresh_model().expected_saves(9, best, NOW)
    keen = UserModel(WORLD, Behaviour(save_bias=0.0)).expected_saves(9, best, NOW)
    restless = UserModel(WORLD, Behaviour(stop_rate=0.3)).expected_saves(9, best, NOW)
    assert keen > 1.3 * base and restless < 0.7 * base


def test_unknown_pins_are_refused():
    with pytest.raises(ValueError):
        fresh_model().react(0, [WORLD.pins], request_id="r", now=NOW)
    assert fresh_model().react(0, [], request_id="r", now=NOW) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, WORLD.pins - 1), max_size=60),
    st.integers(0, WORLD.users - 1),
    st.sampled_from(["trending", "ann", "following"]),
    st.integers(0, 2**32 - 1),
)
def test_any_feed_yields_valid_events_for_shown_pins_only(pins, user, source, seed):
    model = fresh_model(13)
    events = model.react(
        user, pins, request_id="req-1", sources=[source] * len(pins), model_version="m-1",
        now=NOW, rng=np.random.default_rng(seed),
    )  # fmt: skip
    assert rejections(events) == []
    impressions = kinds(events, "impression")
    assert [e["position"] for e in impressions] == list(range(len(impressions)))
    assert all(e["pin_id"] == pins[e["position"]] for e in impressions)
    assert all(e["candidate_source"] == source and e["model_version"] == "m-1" for e in impressions)
    viewed = {e["pin_id"] for e in impressions}
    assert all(e["pin_id"] in viewed for e in events if "pin_id" in e)
    if pins:
        assert impressions  # the first pin is always seen
