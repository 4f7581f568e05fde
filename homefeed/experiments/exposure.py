"""Exposure events: the record that a user was served a variant, logged through the SDK.

Log an exposure where the variant takes effect (the feed request that used it), not where the
user is assigned: a user assigned but never served would dilute both arms equally and hide the
effect. The analysis counts a user's events from their first exposure on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from homefeed.events.sdk import EventLogger
from homefeed.events.validate import Rejection
from homefeed.experiments.assignment import assign
from homefeed.experiments.settings import ExperimentConfig

EXPOSURE = "exposure"


def exposure_event(
    user_id: int,
    experiment: str,
    variant: str,
    event_time: datetime | str,
    *,
    request_id: str | None = None,
    surface: str = "home_feed",
    platform: str = "api",
) -> dict[str, Any]:
    """An ``exposure`` event as the registry's schema wants it."""
    when = event_time.isoformat() if isinstance(event_time, datetime) else event_time
    event: dict[str, Any] = {
        "event_type": EXPOSURE,
        "user_id": user_id,
        "event_time": when,
        "surface": surface,
        "client": {"platform": platform},
        "experiment": experiment,
        "variant": variant,
    }
    if request_id is not None:
        event["request_id"] = request_id
    return event


class ExposureRejectedError(ValueError):
    """The SDK dead-lettered an exposure: the report would silently lose this user."""


def log_exposure(
    logger: EventLogger,
    name: str,
    experiment: ExperimentConfig,
    user_id: int,
    event_time: datetime | str,
    *,
    request_id: str | None = None,
    platform: str = "api",
) -> str:
    """Assign ``user_id`` in experiment ``name``, log the exposure, return the variant."""
    variant = assign(experiment, user_id)
    event = exposure_event(
        user_id, name, variant, event_time, request_id=request_id, platform=platform
    )
    rejection: Rejection | None = logger.log(event)
    if rejection is not None:
        raise ExposureRejectedError(f"exposure of user {user_id} in {name}: {rejection}")
    return variant
