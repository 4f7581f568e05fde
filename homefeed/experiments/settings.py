"""The ``[experiments]`` config section: A/B tests declared in ``homefeed.toml``.

An experiment is declared once, by name::

    [experiments.definitions.ranker_v2]
    salt = "ranker-v2-2026-11"
    start = "2026-11-21T00:00:00Z"
    end = "2026-12-05T00:00:00Z"
    metrics = ["saves", "clicks", "hides", "impressions"]
    variants = [
      { name = "control", weight = 50, target = "baseline" },
      { name = "treatment", weight = 50, target = "ranker:m-2" },
    ]

The salt, not the name, seeds assignment: renaming an experiment keeps its users where they
are, and a new salt reshuffles them (use one when re-running a test on the same population).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Self

from pydantic import Field, field_validator, model_validator

from homefeed.section import Section

# The per-user counts the lake can give (one event table each); reports choose among them.
METRICS = ("impressions", "closeups", "clicks", "saves", "hides")
# Daily series week-over-week alerts can watch: counts, and rates per impression.
DAILY_METRICS = (*METRICS, "click_rate", "save_rate", "hide_rate", "closeup_rate")
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class VariantConfig(Section):
    name: str = Field(pattern=NAME_PATTERN, description="Variant name, e.g. control.")
    weight: float = Field(
        ge=0, description="Relative share of users (weights need not sum to 100)."
    )
    target: str = Field(
        "", description="What the variant serves: a strategy or model version (free-form)."
    )


class ExperimentConfig(Section):
    salt: str = Field(min_length=1, description="Seeds assignment; a new salt reshuffles users.")
    variants: list[VariantConfig] = Field(min_length=2, description="Arms, the control first.")
    start: datetime = Field(description="Exposures from this time (RFC 3339 with zone) count.")
    end: datetime | None = Field(None, description="Exposures before this time count; None: open.")
    metrics: list[str] = Field(
        default_factory=lambda: ["saves", "clicks", "hides", "impressions"],
        description=f"Per-user metrics reported, among {', '.join(METRICS)}.",
    )
    control: str | None = Field(None, description="The baseline variant; None: the first one.")

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone; write e.g. ...T00:00:00Z")
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
        if not value:
            raise ValueError("metrics is empty; list at least one of " + ", ".join(METRICS))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [v.name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variants: duplicate name(s) {duplicates}")
        if sum(v.weight for v in self.variants) <= 0:
            weights = [v.weight for v in self.variants]
            raise ValueError(f"variants: weights {weights} sum to 0; give some variant a weight")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control = {self.control!r} is not a variant ({', '.join(names)})")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start}")
        return self

    @property
    def control_name(self) -> str:
        return self.control or self.variants[0].name

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"variant {name!r} is not one of {[v.name for v in self.variants]}")


class AlertsConfig(Section):
    metrics: list[str] = Field(
        default_factory=lambda: ["impressions", "save_rate", "click_rate"],
        description=f"Daily series watched, among {', '.join(DAILY_METRICS)}.",
    )
    z: float = Field(3.0, gt=0, description="A drop beyond z x normal weekly variation alerts.")
    history_weeks: int = Field(
        4, ge=1, le=52, description="Weeks before this one whose daily spread is 'normal'."
    )

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in DAILY_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(DAILY_METRICS)}")
        return value


class ExperimentsConfig(Section):
    definitions: dict[str, ExperimentConfig] = Field(
        default_factory=dict, description="Experiments by name ([experiments.definitions.NAME])."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of reported intervals.")
    srm_p_value: float = Field(
        0.001, gt=0, lt=1, description="Flag a sample-ratio mismatch below this chi-square p."
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # type: ignore[arg-type]

    @field_validator("definitions")
    @classmethod
    def _names(cls, value: dict[str, ExperimentConfig]) -> dict[str, ExperimentConfig]:

        bad = [n for n in value if not re.match(NAME_PATTERN, n)]
        if bad:
            raise ValueError(f"experiment name(s) {bad} must match {NAME_PATTERN}")
        return value

    def get(self, name: str) -> ExperimentConfig:
        if name not in self.definitions:
            known = ", ".join(sorted(self.definitions)) or "none configured"
            raise KeyError(f"no experiment {name!r}; experiments: {known}")
        return self.definitions[name]
