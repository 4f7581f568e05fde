"""Settings of canary deploys (``[serving.deploy]`` once the lead wires it into config.py)."""

from __future__ import annotations

from pydantic import Field

from homefeed.section import Section


class DeployConfig(Section):
    bake_minutes: float = Field(
        30.0, gt=0, description="A canary serves at least this long before it can be promoted."
    )
    max_bake_minutes: float = Field(
        120.0,
        gt=0,
        description=(
            "A canary still inconclusive after this long is rolled back: a deploy must show "
            "the new model is no worse, not merely fail to show it is worse."
        ),
    )
    min_impressions: int = Field(
        2000, ge=1, description="Impressions each arm needs before the judge decides anything."
    )
    min_requests: int = Field(
        200, ge=1, description="Feed requests each arm needs before errors and latency count."
    )
    max_error_rate_delta: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Rollback when the canary's error rate exceeds the stable's by more.",
    )
    max_p99_ratio: float = Field(
        1.5, gt=0, description="Rollback when canary p99 latency exceeds stable p99 times this."
    )
    min_engagement_ratio: float = Field(
        0.95,
        gt=0,
        description=(
            "The canary's (saves + clicks) per impression must be at least this times the "
            "stable's: promote only when a one-sided test shows it, rollback when it shows the "
            "opposite."
        ),
    )
    alpha: float = Field(
        0.05, gt=0, lt=0.5, description="Significance level of the one-sided engagement tests."
    )
    attribution_minutes: float = Field(
        30.0,
        gt=0,
        description="A save or click counts for an impression of its user and pin this recent.",
    )
    check_interval_s: float = Field(
        30.0, gt=0, description="Seconds between two judgements of a baking canary."
    )
    max_tracked_impressions: int = Field(
        2_000_000,
        ge=1000,
        description="Impressions the judge keeps for attribution; the oldest go first.",
    )
