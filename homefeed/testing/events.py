"""Valid example events, for tests of code that consumes events."""

from __future__ import annotations

from typing import Any

_SPECIFIC: dict[str, dict[str, Any]] = {
    "impression": {
        "pin_id": 11,
        "request_id": "req-1",
        "position": 0,
        "candidate_source": "trending",
        "model_version": "m-1",
    },
    "click": {"pin_id": 11},
    "closeup": {"pin_id": 11, "duration_ms": 1200},
    "save": {"pin_id": 11, "board_id": 3},
    "hide": {"pin_id": 11, "reason": "not_interested"},
    "exposure": {"experiment": "ranker_v2", "variant": "control", "request_id": "req-1"},
    "follow": {"action": "follow", "target_type": "board", "target_id": 3},
    "pin_create": {
        "pin_id": 11,
        "board_id": 3,
        "title": "Cabin in the woods",
        "topics": ["travel"],
    },
    "board_create": {"board_id": 3, "name": "Cabins", "topic": "travel"},
}


def valid_event(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A valid event of ``event_type``; keyword arguments replace fields."""
    event = {
        "event_type": event_type,
        "user_id": 7,
        "event_time": "2026-11-21T13:05:01.123Z",
        "surface": "home_feed",
        "client": {"platform": "web", "app_version": "1.0"},
        **_SPECIFIC[event_type],
    }
    return event | overrides
