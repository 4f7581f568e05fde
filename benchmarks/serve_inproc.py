"""Feed API latency in process: GET /v1/users/{id}/feed through the ASGI stack, no network.

    .venv/bin/python benchmarks/serve_inproc.py --users 2000 --pins 20000 --requests 1000

A SimpleBackend over the simulated world with the given sources (each asked for --k
candidates, so a user's pool is several hundred pins). Each first-page request runs the whole
pipeline (candidates, features, rank, blend of the session, impressions queued in a local log);
next-page requests only slice the session. Prints p50/p90/p99 of both, the pool size and the
time per stage from the service's own Prometheus histograms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from homefeed.config import LocalLogConfig
from homefeed.events.sdk import EventLogger
from homefeed.log.local import LocalLog
from homefeed.models.sources import make_source
from homefeed.serving.api.app import create_app
from homefeed.serving.api.backend import SimpleBackend
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.testing.models import simulated_training_data

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _pct(ms: list[float]) -> str:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--pins", type=int, default=20000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--sources", default="following,pixie,als,trending")
    ap.add_argument("--k", type=int, default=200, help="candidates per source")
    ap.add_argument("--bundle", action="store_true", help="train a ModelBundle, serve its ranker")
    args = ap.parse_args()

    t = time.perf_counter()
    data = simulated_training_data(users=args.users, pins=args.pins)
    print(f"world: {len(data.engagements)} engagements in {time.perf_counter() - t:.1f} s")
    backend = _bundle_backend(data, args) if args.bundle else _simple_backend(data, args)
    with tempfile.TemporaryDirectory() as tmp:
        log = LocalLog(LocalLogConfig(path=tmp, fsync="never"))
        with EventLogger(log, source="bench", on_reject=lambda _: None) as logger:
            app = create_app(backend, logger, FeedServiceConfig())  # type: ignore[call-arg]
            _run(TestClient(app), backend, data, args)
            logger.flush()
            print(f"impressions logged: {logger.accepted}")
        log.close()


def _simple_backend(data, args) -> SimpleBackend:
    sources = {}
    for name in args.sources.split(","):
        t = time.perf_counter()
        sources[name] = source = make_source(name)
        source.fit(data)
        print(f"fit {name}: {time.perf_counter() - t:.1f} s")
    return SimpleBackend(data, sources, candidates_per_source=args.k)


def _bundle_backend(data, args) -> SimpleBackend:
    from homefeed.config import ModelsConfig, SourceConfig
    from homefeed.models.pipeline import train_bundle
    from homefeed.serving.api.bundle_backend import BundleBackend

    config = ModelsConfig(sources={n: SourceConfig(k=args.k) for n in args.sources.split(",")})
    t = time.perf_counter()
    bundle = train_bundle(data, config)
    print(f"trained bundle ({', '.join(bundle.ranker.heads)}): {time.perf_counter() - t:.1f} s")
    return BundleBackend(bundle, data)


def _run(client: TestClient, backend: SimpleBackend, data, args) -> None:
    users = np.unique(data.positives().user_id)
    rng = np.random.default_rng(0)
    pool_sizes = [len(backend.candidates(int(u), 0)) for u in rng.choice(users, 200)]
    print(f"pool size per request: median {np.median(pool_sizes):.0f}, min {min(pool_sizes)}")
    for u in users[:20]:  # warm-up
        client.get(f"/v1/users/{int(u)}/feed")
    first, second = [], []
    for u in rng.choice(users, args.requests):
        t = time.perf_counter()
        r = client.get(f"/v1/users/{int(u)}/feed", params={"limit": 25})
        first.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200 and len(r.json()["items"]) == 25, r.text
        t = time.perf_counter()
        client.get(f"/v1/users/{int(u)}/feed", params={"cursor": r.json()["next_cursor"]})
        second.append((time.perf_counter() - t) * 1000)
    print(f"first page (ranks a session): {_pct(first)}")
    print(f"next page (cursor):           {_pct(second)}")
    service = client.app.state.service  # type: ignore[attr-defined]
    direct = []
    for u in rng.choice(users, args.requests // 2):
        t = time.perf_counter()
        service.feed(int(u), 25, None)
        direct.append((time.perf_counter() - t) * 1000)
    print(f"first page, FeedService.feed without HTTP: {_pct(direct)}")
    _stages(client.get("/metrics").text)


def _stages(text: str) -> None:
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("homefeed_feed_stage_seconds_sum"):
            sums[line.split('"')[1]] = float(line.split()[-1])
        elif line.startswith("homefeed_feed_stage_seconds_count"):
            counts[line.split('"')[1]] = float(line.split()[-1])
    print(
        "mean per stage: "
        + ", ".join(f"{s} {1000 * sums[s] / counts[s]:.2f} ms" for s in sums if counts.get(s))
    )


if __name__ == "__main__":
    main()
