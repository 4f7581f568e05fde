"""The deploy router's arms on /metrics: what the judge sees, for dashboards and alerts.

Series are labelled by ``deploy_id`` as well as version and arm: a new deploy starts its arms'
counters at zero, so each deploy is a new series and the counters stay monotonic.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from homefeed.serving.deploy.router import DeployRouter

LABELS = ["deploy_id", "version", "arm"]


class DeployCollector(Collector):
    """Requests, errors and p99 latency per arm of the router's current table."""

    def __init__(self, router: DeployRouter) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        table = self.router.table
        requests = CounterMetricFamily(
            "homefeed_deploy_requests", "Feed requests served by each arm.", labels=LABELS
        )
        errors = CounterMetricFamily(
            "homefeed_deploy_errors", "Server errors (5xx) of each arm.", labels=LABELS
        )
        p99 = GaugeMetricFamily(
            "homefeed_deploy_p99_seconds",
            "p99 latency of each arm over its latest requests (what the judge compares).",
            labels=LABELS,
        )
        percent = GaugeMetricFamily(
            "homefeed_deploy_canary_percent",
            "Share of users routed to the canary, in percent (0: no canary).",
            labels=["deploy_id", "version"],
        )
        deploy = table.deploy_id or ""
        for name, arm in (("stable", table.stable), ("canary", table.canary)):
            if arm is None:
                continue
            count, failed, p99_ms = arm.counters.snapshot()
            labels = [deploy, arm.version, name]
            requests.add_metric(labels, count)
            errors.add_metric(labels, failed)
            if p99_ms == p99_ms:  # NaN until the arm served a request
                p99.add_metric(labels, p99_ms / 1000)
        canary = table.canary.version if table.canary is not None else ""
        percent.add_metric([deploy, canary], table.percent)
        yield from (requests, errors, p99, percent)


__all__ = ["DeployCollector"]
