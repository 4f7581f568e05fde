"""The runner: a deterministic, valid, time-ordered stream that does not accumulate."""

import itertools
import tracemalloc
from collections import Counter

import pytest

from homefeed.config import SimulatorConfig
from homefeed.simulator import SimulationSummary, World, iter_events, simulate
from homefeed.simulator.world import DAY_MS

from .helpers import SMALL, rejections

EVENTS = list(iter_events(SMALL))
SMALL_WORLD = World.generate(SMALL)
START = "2026-11-01T00:00:00.000Z"
END = "2026-11-02T00:00:00.000Z"


def test_same_seed_same_events_other_seed_other_events():
    assert list(iter_events(SMALL)) == EVENTS
    other = list(iter_events(SMALL.model_copy(update={"seed": 4})))
    assert other != EVENTS and other[0]["event_id"].startswith("sim-4-")


def test_every_event_validates_with_unique_reproducible_ids():
    assert len(EVENTS) > 2000
    assert rejections(EVENTS) == []
    ids = [e["event_id"] for e in EVENTS]
    assert len(set(ids)) == len(ids) and ids[:2] == ["sim-3-0", "sim-3-1"]
    assert {e["event_type"] for e in EVENTS} == {
        "impression", "closeup", "click", "save", "hide", "follow", "pin_create", "board_create",
    }  # fmt: skip


def test_event_times_never_go_back_and_stay_inside_the_window():
    times = [e["event_time"] for e in EVENTS]
    assert times == sorted(times)
    assert times[0] == START and times[-1] < END
    sessions = [e for e in EVENTS if e["event_type"] == "impression"]
    assert sessions[0]["event_time"] > START  # behaviour starts after the world is stated


def test_the_world_is_stated_before_it_is_used():
    created = {}
    for e in EVENTS:
        if e["event_type"] == "pin_create":
            assert e["pin_id"] not in created
            created[e["pin_id"]] = e["event_time"]
        elif "pin_id" in e:
            assert created[e["pin_id"]] <= e["event_time"]  # no impression before creation
    assert len(created) == SMALL.pins  # the lake learns every pin's topics
    boards = {e["board_id"]: e["event_time"] for e in EVENTS if e["event_type"] == "board_create"}
    assert len(boards) == SMALL_WORLD.boards
    for e in EVENTS:
        if e["event_type"] == "save":
            assert boards[e["board_id"]] <= e["event_time"]
            assert SMALL_WORLD.board_owner[e["board_id"]] == e["user_id"]


def test_without_the_world_only_the_window_is_emitted():
    events = list(iter_events(SMALL, emit_world=False))
    world = [e for e in EVENTS if e["event_time"] == START and e["surface"] == "other"]
    assert len(events) == len(EVENTS) - len(world)
    assert all(e["event_time"] > START for e in events)


def test_sessions_follow_a_diurnal_curve_in_each_users_time_zone():
    config = SimulatorConfig(users=400, pins=2000, days=1.0, seed=8)
    world = World.generate(config)
    local_hours = Counter(
        (int(e["event_time"][11:13]) + int(world.utc_offset[e["user_id"]])) % 24
        for e in iter_events(config, emit_world=False)
        if e["event_type"] == "impression" and e["position"] == 0
    )
    evening = sum(local_hours[h] for h in (18, 19, 20, 21))
    night = sum(local_hours[h] for h in (2, 3, 4, 5))
    assert evening > 5 * night


def test_summary_counts_what_reached_the_sink():
    seen: list[dict] = []
    summary = simulate(SMALL, seen.append, progress=True)
    assert isinstance(summary, SimulationSummary)
    assert summary.events == len(seen) == len(EVENTS)
    assert summary.counts == Counter(e["event_type"] for e in seen)
    assert (summary.users, summary.pins, summary.days) == (50, 300, 1.0)
    assert summary.events_per_second > 0


def test_streaming_does_not_accumulate_events():
    config = SimulatorConfig(users=3000, pins=5000, days=3.0, seed=9)
    stream = iter_events(config, emit_world=False)
    next(stream)  # the world and the users' memory are allocated by now
    tracemalloc.start()
    consumed = sum(1 for _ in itertools.islice(stream, 200_000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert consumed == 200_000
    assert peak < 25_000_000  # holding the events would take ~200 MB


def test_a_window_ending_in_the_future_is_refused():
    config = SMALL.model_copy(update={"start": "2999-01-01T00:00:00Z"})
    with pytest.raises(ValueError, match="future"):
        next(iter_events(config))


def test_window_length_follows_days():
    config = SMALL.model_copy(update={"days": 0.25, "seed": 2})
    events = list(iter_events(config, emit_world=False))
    world = World.generate(config)
    assert world.end_ms - world.start_ms == DAY_MS // 4
    assert events and events[-1]["event_time"] < "2026-11-01T06:00:00.000Z"
