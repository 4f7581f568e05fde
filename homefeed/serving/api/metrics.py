"""Prometheus metrics of the feed service, in a registry per app (tests build many apps).

Under ``serve --workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR`` before spawning the
workers: prometheus_client then keeps every worker's values in files there, and ``render``
sums them, so a scrape reaching any worker sees the whole service.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

STAGES = ("candidates", "features", "rank", "blend", "log")
# Sub-millisecond to a second: in-process stages take microseconds, a remote ranker tens of ms.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class FeedMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "homefeed_feed_stage_seconds",
            "Time spent per stage of a feed request.",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "homefeed_http_request_seconds",
            "HTTP request latency by route and status code.",
            ["route", "code"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.candidates = Counter(
            "homefeed_feed_candidates",
            "Candidates retrieved, by source.",
            ["source"],
            registry=self.registry,
        )
        self.served = Counter(
            "homefeed_feed_served_pins",
            "Pins served in feed pages, by source.",
            ["source"],
            registry=self.registry,
        )
        self.errors = Counter(
            "homefeed_http_errors",
            "Error responses, by route and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.events = Counter(
            "homefeed_events_received",
            "Events received through POST /v1/events, by outcome.",
            ["outcome"],
            registry=self.registry,
        )

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(name).observe(time.perf_counter() - start)

    def count_candidates(self, per_source: Mapping[str, int]) -> None:
        for source, count in per_source.items():
            self.candidates.labels(source).inc(count)

    def observe_request(self, route: str, code: int, seconds: float) -> None:
        self.request_seconds.labels(route, str(code)).observe(seconds)
        if code >= 400:
            self.errors.labels(route, str(code)).inc()

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):  # every worker's values, summed
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
