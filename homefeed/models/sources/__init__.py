"""Candidate sources: each fits on ``TrainingData`` and retrieves scored pins for users.

``SOURCES`` maps a source's config name to its class path; ``make_source`` imports lazily so
a heavy library (implicit, faiss) loads only when its source is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from homefeed.models.sources.base import Candidates, CandidateSource

SOURCES: dict[str, str] = {
    "following": "homefeed.models.sources.following:FollowingSource",
    "trending": "homefeed.models.sources.trending:TrendingSource",
    "content": "homefeed.models.sources.content:ContentSource",
    "als": "homefeed.models.sources.collaborative:AlsSource",
    "item_item": "homefeed.models.sources.collaborative:ItemItemSource",
    "pixie": "homefeed.models.sources.graph:PixieSource",
}


def source_class(name: str) -> type[CandidateSource]:
    if name not in SOURCES:
        raise ValueError(f"unknown candidate source {name!r}; known: {', '.join(sorted(SOURCES))}")
    module, _, attr = SOURCES[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, CandidateSource)):
        raise TypeError(f"{SOURCES[name]} is not a CandidateSource")
    return cls


def make_source(name: str, **params: Any) -> CandidateSource:
    """A new, unfitted source by config name, with its parameters (unknown ones refused)."""
    return source_class(name)(**params)


__all__ = ["SOURCES", "CandidateSource", "Candidates", "make_source", "source_class"]
