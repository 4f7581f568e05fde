"""Feed API under open-loop load over loopback: ``homefeed serve`` in a subprocess.

    .venv/bin/python benchmarks/serve.py --bundle DIR --rates 100,300,1000 --duration 15

Starts ``homefeed serve --bundle DIR`` (uvicorn, one worker) on a free port, with the
simulated world the bundle was trained on (``--users/--pins/--days/--seed``, passed as
``HOMEFEED_SIMULATOR_*``). Without ``--bundle`` a bundle is trained on that world first and
saved to ``--save-bundle`` (minutes: the item-item source inverts a pins x pins matrix).

Load is open-loop: request i of a rate r is due at ``start + i / r`` whatever happened to
the earlier ones, and its latency is measured from that due time, so a stalled server shows
up as latency instead of as fewer requests (no coordinated omission). A share of requests
(``--next-share``) asks for the next page of an earlier first page's cursor. The load
generator runs on the same machine as the server and competes with it for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP_REQUESTS = 200
REQUEST_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 600.0


@dataclass
class RateResult:
    rate: int
    latencies_ms: list[float] = field(default_factory=list)  # from the due time, OK only
    first_ms: list[float] = field(default_factory=list)
    next_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    late_start_ms: float = 0.0  # worst lag of the generator behind the schedule
    wall_s: float = 0.0


def main() -> None:
    args = _parse()
    world = {"users": args.users, "pins": args.pins, "days": args.days, "seed": args.seed}
    bundle = args.bundle or _train(world, args.sources, args.save_bundle)
    users = _users(world)
    with tempfile.TemporaryDirectory() as tmp, _server(bundle, world, Path(tmp)) as base:
        results = asyncio.run(_drive(base, users, args))
        pool, stages = _server_stats(base)
    _report(results, pool, args)
    print(
        "server mean ms per first-page stage (all rates): "
        + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    )


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="a saved ModelBundle trained on the world")
    ap.add_argument("--save-bundle", type=Path, default=Path("/tmp/homefeed-bench-bundle"))
    ap.add_argument("--sources", default="", help="train only these sources (default: all)")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--pins", type=int, default=20000)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--rates", default="100,300,1000", help="requests/s, comma-separated")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per rate")
    ap.add_argument("--max-requests", type=int, default=20_000, help="per rate")
    ap.add_argument("--next-share", type=float, default=0.3, help="share of next-page requests")
    ap.add_argument("--connections", type=int, default=64, help="client connection pool")
    args = ap.parse_args()
    if not 0 <= args.next_share < 1:
        ap.error(f"--next-share = {args.next_share}: must be in [0, 1)")
    return args


def _train(world: dict[str, float], sources: str, target: Path) -> Path:
    from homefeed.config import ModelsConfig
    from homefeed.models.pipeline import train_bundle
    from homefeed.testing.models import simulated_training_data

    config = ModelsConfig()  # type: ignore[call-arg]
    if sources:
        names = [n.strip() for n in sources.split(",") if n.strip()]
        config = config.model_copy(update={"sources": {n: config.sources[n] for n in names}})
    t = time.perf_counter()
    data = simulated_training_data(**world)
    bundle = train_bundle(data, config)
    bundle.save(target)
    print(f"trained a bundle of {', '.join(bundle.sources)} in {time.perf_counter() - t:.0f} s")
    return target


def _users(world: dict[str, float]) -> np.ndarray:
    from homefeed.testing.models import simulated_training_data

    return np.unique(simulated_training_data(**world).positives().user_id)


class _server:
    """``homefeed serve`` on a free loopback port; the base URL once /healthz answers."""

    def __init__(self, bundle: Path, world: dict[str, float], tmp: Path) -> None:
        self.bundle, self.world, self.tmp = bundle, world, tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        port = _free_port()
        env = dict(os.environ)
        env.update({f"HOMEFEED_SIMULATOR_{k.upper()}": str(v) for k, v in self.world.items()})
        cmd = [
            str(ROOT / ".venv/bin/homefeed"),
            "serve",
            "--bundle",
            str(self.bundle.resolve()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        self.log = open(self.tmp / "server.log", "wb")
        # cwd: the server's default event log and lake paths land in the temporary directory
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdout=self.log, stderr=self.log)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, self.proc, self.tmp / "server.log")
        return base

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < READY_TIMEOUT_S:
        if proc.poll() is not None:
            sys.exit(f"homefeed serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                print(f"server ready in {time.perf_counter() - t:.0f} s at {base}")
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"homefeed serve not ready after {READY_TIMEOUT_S:.0f} s")


@dataclass
class _Load:
    """What every request of a run shares."""

    client: httpx.AsyncClient
    users: np.ndarray
    next_share: float
    # httpcore's pool rescans its waiting requests on every release: thousands queued in it
    # make the generator, not the server, the bottleneck. Requests beyond the pool wait on
    # this semaphore instead; the wait still counts, as latency runs from the due time.
    in_flight: asyncio.Semaphore
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    cursors: list[tuple[int, str]] = field(default_factory=list)  # (user, next page cursor)


async def _drive(base: str, users: np.ndarray, args: argparse.Namespace) -> list[RateResult]:
    n = args.connections
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        load = _Load(client, users, args.next_share, asyncio.Semaphore(n))
        await _run_rate(load, RateResult(0), 100, WARMUP_REQUESTS)
        results = []
        for rate in [int(r) for r in args.rates.split(",")]:
            result = RateResult(rate)
            await _run_rate(load, result, rate, min(args.max_requests, int(rate * args.duration)))
            results.append(result)
            errors = result.errors or "no errors"
            print(f"  {rate} req/s done: {len(result.latencies_ms)} ok, {errors}")
        return results


async def _run_rate(load: _Load, out: RateResult, rate: int, n: int) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        out.late_start_ms = max(out.late_start_ms, (loop.time() - due) * 1000)
        if load.cursors and load.rng.random() < load.next_share:
            user, cursor = load.cursors.pop(int(load.rng.integers(len(load.cursors))))
        else:
            user, cursor = int(load.rng.choice(load.users)), None
        tasks.append(asyncio.create_task(_one(load, user, cursor, due, out)))
    out.sent = n
    await asyncio.gather(*tasks)
    out.wall_s = loop.time() - start


async def _one(load: _Load, user: int, cursor: str | None, due: float, out: RateResult) -> None:
    params: dict[str, str | int] = {"limit": 25}
    if cursor is not None:
        params["cursor"] = cursor
    try:
        # The deadline runs from the due time: a request still queued behind the pool after
        # REQUEST_TIMEOUT_S is an error, which also bounds how long an overloaded rate lasts.
        async with asyncio.timeout_at(due + REQUEST_TIMEOUT_S), load.in_flight:
            r = await load.client.get(f"/v1/users/{user}/feed", params=params)
    except (httpx.HTTPError, TimeoutError) as e:
        out.errors[type(e).__name__] = out.errors.get(type(e).__name__, 0) + 1
        return
    ms = (asyncio.get_running_loop().time() - due) * 1000
    if r.status_code != 200:
        out.errors[str(r.status_code)] = out.errors.get(str(r.status_code), 0) + 1
        return
    body = r.json()
    if cursor is None and len(body["items"]) != 25:
        out.errors["short_page"] = out.errors.get("short_page", 0) + 1
        return
    out.latencies_ms.append(ms)
    (out.next_ms if cursor else out.first_ms).append(ms)
    if body.get("next_cursor") and len(load.cursors) < 10_000:
        load.cursors.append((user, body["next_cursor"]))


def _server_stats(base: str) -> tuple[float, dict[str, float]]:
    """Mean candidates per first page and mean ms per stage, from the server's own metrics."""
    try:  # after an overloaded rate the server may still be draining abandoned requests
        text = httpx.get(f"{base}/metrics", timeout=120).text
    except httpx.HTTPError as e:
        print(f"GET /metrics failed: {e!r}")
        return float("nan"), {}
    candidates, sums, counts = 0.0, {}, {}
    for line in text.splitlines():
        if line.startswith("homefeed_feed_candidates_total"):
            candidates += float(line.split()[-1])
        elif line.startswith("homefeed_feed_stage_seconds_sum"):
            sums[line.split('"')[1]] = float(line.split()[-1])
        elif line.startswith("homefeed_feed_stage_seconds_count"):
            counts[line.split('"')[1]] = float(line.split()[-1])
    stages = {s: 1000 * sums[s] / counts[s] for s in sums if counts.get(s)}
    first_pages = counts.get("candidates", 0.0)
    return (candidates / first_pages if first_pages else float("nan")), stages


def _pct(ms: list[float], q: float) -> str:
    return f"{np.percentile(ms, q):8.2f}" if ms else "       -"


def _report(results: list[RateResult], pool: float, args: argparse.Namespace) -> None:
    print(
        f"\ncandidate pool per first page (server counters): mean {pool:.0f}"
        f" {'(>= 500: ok)' if pool >= 500 else '(< 500!)'}"
    )
    print(
        f"mix: {1 - args.next_share:.0%} first pages (rank a session), {args.next_share:.0%} "
        f"next pages; {args.duration:g} s or {args.max_requests} requests per rate; "
        f"latency from each request's due time (open loop)"
    )
    print(f"NOTE: load generator and server share this machine's {os.cpu_count()} cores\n")
    head = (
        f"{'rate/s':>7} {'sent':>6} {'ok':>6} {'errors':>7} {'achieved/s':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'first p50':>9} {'first p99':>9} {'next p99':>8} {'gen lag ms':>10}"
    )
    print(head)
    for r in results:
        errors = sum(r.errors.values())
        achieved = len(r.latencies_ms) / r.wall_s if r.wall_s else 0.0
        print(
            f"{r.rate:>7} {r.sent:>6} {len(r.latencies_ms):>6} {errors:>7} {achieved:>10.1f} "
            f"{_pct(r.latencies_ms, 50)} {_pct(r.latencies_ms, 99)} {_pct(r.first_ms, 50):>9} "
            f"{_pct(r.first_ms, 99):>9} {_pct(r.next_ms, 99)} {r.late_start_ms:>10.1f}"
        )


if __name__ == "__main__":
    main()
