"""The simulator: deterministic, valid, streaming, and users who behave like users."""

import itertools
import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.config import SimulatorConfig
from homefeed.events import EventValidator, Rejection, SchemaRegistry
from homefeed.simulator import UserModel, World, iter_events, simulate

SMALL = SimulatorConfig(users=60, pins=400, days=1.0, seed=3)
VALIDATOR = EventValidator(SchemaRegistry())
WORLD = World.generate(SimulatorConfig(users=300, pins=3000, seed=5))
NOW = WORLD.start + 3600


def test_same_seed_same_events_other_seed_other_events():
    first = list(iter_events(SMALL))
    assert first == list(iter_events(SMALL))
    assert first != list(iter_events(SMALL.model_copy(update={"seed": 4})))


def test_every_event_validates_and_time_never_goes_back():
    events = list(iter_events(SMALL))
    assert len(events) > 1000
    assert all(not isinstance(VALIDATOR.check(e), Rejection) for e in events)
    times = [e["event_time"] for e in events]
    assert times == sorted(times)
    assert times[0] >= "2026-11-01T00:00:00.000Z" and times[-1] < "2026-11-02T00:05:00.000Z"
    assert len({e["event_id"] for e in events}) == len(events)


def test_summary_counts_what_reached_the_sink():
    seen = []
    summary = simulate(SMALL, seen.append)
    assert summary.events == len(seen) and summary.counts["impression"] > 0


def _engagement(model: UserModel, user: int, pins: np.ndarray, trials: int) -> tuple[int, int]:
    closeups = impressions = 0
    for t in range(trials):
        events = model.react(user, pins, request_id=f"r{t}", now=NOW + t)
        impressions += sum(e["event_type"] == "impression" for e in events)
        closeups += sum(e["event_type"] == "closeup" for e in events)
        model.seen.clear()  # isolate the interest effect from fatigue
    return closeups, impressions


def _pins_by_match(user: int) -> tuple[np.ndarray, np.ndarray]:
    match = WORLD.match(user, np.arange(WORLD.pins))
    order = np.argsort(-match)
    return order[:30], order[-30:]


def test_users_engage_more_with_pins_matching_their_interests():
    model = UserModel(WORLD, seed=1)
    good_rate = bad_rate = 0.0
    for user in range(20):
        good, bad = _pins_by_match(user)
        c, i = _engagement(model, user, good, 20)
        good_rate += c / max(i, 1)
        c, i = _engagement(model, user, bad, 20)
        bad_rate += c / max(i, 1)
    assert good_rate > 3 * bad_rate


def test_hides_concentrate_on_poorly_matched_pins():
    model = UserModel(WORLD, seed=2)
    hides = {"good": 0, "bad": 0}
    for user in range(40):
        good, bad = _pins_by_match(user)
        for name, pins in (("good", good), ("bad", bad)):
            events = model.react(user, pins, request_id="r", now=NOW)
            hides[name] += sum(e["event_type"] == "hide" for e in events)
    assert hides["bad"] > 2 * hides["good"]


def test_position_bias_top_positions_get_more_closeups():
    model = UserModel(WORLD, seed=3)
    rng = np.random.default_rng(0)
    by_position = np.zeros(40)
    shown = np.zeros(40)
    for trial in range(400):
        user = trial % WORLD.users
        pins = rng.choice(WORLD.pins, size=40, replace=False)
        for e in model.react(user, pins, request_id="r", now=NOW):
            if e["event_type"] == "impression":
                shown[e["position"]] += 1
        events = model.react(user, pins, request_id="r", now=NOW)
        positions = {e["pin_id"]: e["position"] for e in events if e["event_type"] == "impression"}
        for e in events:
            if e["event_type"] == "closeup":
                by_position[positions[e["pin_id"]]] += 1
    assert shown[0] > shown[20]  # users stop scrolling
    assert by_position[:5].sum() > by_position[20:25].sum()


def test_fatigue_repeated_pins_earn_less():
    model = UserModel(WORLD, seed=4)
    user = 7
    good, _ = _pins_by_match(user)
    fresh = model.probabilities(user, good)["closeup"]
    events = model.react(user, good, request_id="r", now=NOW)
    seen = [e["position"] for e in events if e["event_type"] == "impression"]
    after = model.probabilities(user, good)["closeup"]
    # Pins the user saw are less engaging on a second showing; unseen ones are not.
    assert np.all(after[seen] <= 0.5 * fresh[seen])
    unseen = [i for i in range(len(good)) if i not in seen]
    assert np.allclose(after[unseen], fresh[unseen])


def test_hidden_pins_are_never_shown_again_and_saves_go_to_own_boards():
    model = UserModel(WORLD, seed=5)
    events = list(itertools.islice(iter_events(SMALL), 20000))
    world = World.generate(SMALL)
    for e in events:
        if e["event_type"] == "save":
            assert e["board_id"] in set(world.user_boards[e["user_id"]].tolist())
    hidden = {(e["user_id"], e["pin_id"]) for e in events if e["event_type"] == "hide"}
    user, pin = next(iter(hidden)) if hidden else (0, 0)
    model.hidden.setdefault(user, set()).add(pin)
    again = model.react(user, [pin, pin + 1], request_id="r", now=NOW)
    assert all(e.get("pin_id") != pin for e in again)


def test_streaming_holds_an_hour_not_the_run():
    config = SimulatorConfig(users=800, pins=5000, days=1.0, seed=9)
    world_bytes = 30_000_000  # generous allowance for the world itself
    tracemalloc.start()
    count = sum(1 for _ in iter_events(config))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count > 40_000
    assert peak < world_bytes + count * 50  # holding every event would cost ~1 KB each


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, WORLD.pins - 1), max_size=60), st.integers(0, WORLD.users - 1))
def test_any_feed_yields_valid_events_for_shown_pins_only(pins, user):
    model = UserModel(WORLD, seed=6)
    events = model.react(
        user, pins, request_id="req", sources="trending", model_version="m", now=NOW
    )
    shown = set(pins)
    impressions = [e for e in events if e["event_type"] == "impression"]
    assert [e["position"] for e in impressions] == list(range(len(impressions)))
    for e in events:
        assert not isinstance(VALIDATOR.check(e), Rejection), e
        if "pin_id" in e:
            assert e["pin_id"] in shown
