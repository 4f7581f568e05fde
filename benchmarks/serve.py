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
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP_REQUESTS = 200
# Next pages continue one of the latest first pages: at 300 req/s, cursors a few seconds old,
# as a user scrolling. (Picking among all earlier cursors asked long runs for sessions the
# server had rightly dropped: 410s.)
OPEN_CURSORS = 1000
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
    server_cpu_s: float = 0.0  # the server process's user + system CPU during the rate
    client_cpu_s: float = 0.0  # the load generator's


def main() -> None:
    args = _parse()
    world = {"users": args.users, "pins": args.pins, "days": args.days, "seed": args.seed}
    bundle = args.bundle or _train(world, args.sources, args.save_bundle)
    users = _users(world)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        store = _store_env(stack, args.store)
        server = stack.enter_context(
            _server(bundle, world, Path(tmp), args.cache_ttl, args.workers, store)
        )
        base = server.base
        results = _run_loop(_drive(server, users, args))
        pool, stages = _server_stats(base)
    _report(results, pool, args)
    print(
        "server mean ms per first-page stage (all rates): "
        + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    )


def _store_env(stack: contextlib.ExitStack, store: str) -> dict[str, str]:
    """The server's environment for ``--store`` (a redis-server started for the run)."""
    if store == "local":
        return {}
    from homefeed.testing.redis import RedisServer

    url = stack.enter_context(RedisServer()).url
    return {"HOMEFEED_SERVING_ONLINE_BACKEND": "redis", "HOMEFEED_SERVING_ONLINE_REDIS_URL": url}


def _run_loop(main: Coroutine[Any, Any, list[RateResult]]) -> list[RateResult]:
    """uvloop when installed (it is a dependency of the server): a cheaper generator."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


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
    ap.add_argument("--connections", type=int, default=32, help="client connection pool")
    ap.add_argument(
        "--no-warm",
        dest="warm",
        action="store_false",
        help="skip the first page per user before measuring (cold candidate cache)",
    )
    ap.add_argument("--workers", type=int, default=1, help="homefeed serve --workers")
    ap.add_argument(
        "--store",
        choices=("local", "redis"),
        default="local",
        help="online store (redis: a redis-server this benchmark starts on loopback)",
    )
    ap.add_argument(
        "--warm-passes",
        type=int,
        default=None,
        help="first pages per user before measuring (default: 1, 3 with workers: each worker "
        "caches the pools of the users it served)",
    )
    ap.add_argument(
        "--cache-ttl",
        type=float,
        default=None,
        help="server's candidate_cache_ttl_s (default: the config's; 0 disables)",
    )
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

    def __init__(
        self,
        bundle: Path,
        world: dict[str, float],
        tmp: Path,
        cache_ttl: float | None,
        workers: int = 1,
        store_env: dict[str, str] | None = None,
    ) -> None:
        self.bundle, self.world, self.tmp, self.cache_ttl = bundle, world, tmp, cache_ttl
        self.workers, self.store_env = workers, store_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _server:
        port = _free_port()
        env = dict(os.environ)
        env.update({f"HOMEFEED_SIMULATOR_{k.upper()}": str(v) for k, v in self.world.items()})
        if self.cache_ttl is not None:
            env["HOMEFEED_SERVING_API_CANDIDATE_CACHE_TTL_S"] = str(self.cache_ttl)
        env |= self.store_env
        cmd = [
            str(ROOT / ".venv/bin/homefeed"),
            "serve",
            "--bundle",
            str(self.bundle.resolve()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(self.workers),
        ]
        self.log = open(self.tmp / "server.log", "wb")
        # cwd: the server's default event log and lake paths land in the temporary directory
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdout=self.log, stderr=self.log)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, self.proc, self.tmp / "server.log")
        self.base = base
        return self

    def cpu_s(self) -> float:
        """The server's CPU seconds so far (user + system of it and its workers, from /proc)."""
        assert self.proc is not None
        return sum(_cpu_s(pid) for pid in [self.proc.pid, *_children(self.proc.pid)])

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


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


class _Connection:
    """One keep-alive HTTP/1.1 connection: GET and read a Content-Length body, nothing else.

    httpx costs about a millisecond of CPU per request, which on a machine whose two cores
    also run the server is the generator, not the server, being measured.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        at = head.lower().find(b"content-length:")
        if at < 0:
            raise ConnectionError(f"response without Content-Length: {head[:200]!r}")
        length = int(head[at + 15 : head.index(b"\r\n", at)])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class _Load:
    """What every request of a run shares: a pool of connections and the users."""

    pool: asyncio.Queue[_Connection]
    users: np.ndarray
    next_share: float
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    cursors: list[tuple[int, str]] = field(default_factory=list)  # (user, next page cursor)


async def _drive(server: _server, users: np.ndarray, args: argparse.Namespace) -> list[RateResult]:
    host, port = server.base.removeprefix("http://").split(":")
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(args.connections):
        pool.put_nowait(_Connection(host, int(port)))
    load = _Load(pool, users, args.next_share)
    await _warm(load, args)
    results = []
    for rate in [int(r) for r in args.rates.split(",")]:
        result = RateResult(rate)
        server_cpu, client_cpu = server.cpu_s(), time.process_time()
        await _run_rate(load, result, rate, min(args.max_requests, int(rate * args.duration)))
        result.server_cpu_s = server.cpu_s() - server_cpu
        result.client_cpu_s = time.process_time() - client_cpu
        results.append(result)
        errors = result.errors or "no errors"
        print(f"  {rate} req/s done: {len(result.latencies_ms)} ok, {errors}")
    return results


async def _warm(load: _Load, args: argparse.Namespace) -> None:
    """One first page per user (the steady state: candidates cached by an earlier session)."""
    passes = args.warm_passes if args.warm_passes is not None else (1 if args.workers == 1 else 3)
    users = np.tile(load.users, passes) if args.warm else load.users[:0]
    t = time.perf_counter()
    out = RateResult(0)
    for start in range(0, len(users), 50):
        batch = users[start : start + 50]
        now = asyncio.get_running_loop().time()
        await asyncio.gather(*[_one(load, int(u), None, now, out) for u in batch])
    await _run_rate(load, out, 100, WARMUP_REQUESTS)
    load.cursors.clear()
    print(f"warm-up: {out.sent + len(users)} requests in {time.perf_counter() - t:.0f} s, "
          f"errors {out.errors or 'none'}")  # fmt: skip


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
    path = f"/v1/users/{user}/feed?limit=25" + (f"&cursor={cursor}" if cursor else "")
    conn: _Connection | None = None
    try:
        # The deadline runs from the due time: a request still waiting for a connection after
        # REQUEST_TIMEOUT_S is an error, which also bounds how long an overloaded rate lasts.
        async with asyncio.timeout_at(due + REQUEST_TIMEOUT_S):
            conn = await load.pool.get()
            status, body = await conn.get(path)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
        if conn is not None:
            conn.close()  # mid-response: the connection's state is unknown
        out.errors[type(e).__name__] = out.errors.get(type(e).__name__, 0) + 1
        return
    finally:
        if conn is not None:
            load.pool.put_nowait(conn)
    ms = (asyncio.get_running_loop().time() - due) * 1000
    if status != 200:
        out.errors[str(status)] = out.errors.get(str(status), 0) + 1
        return
    page = json.loads(body)
    if cursor is None and len(page["items"]) != 25:
        out.errors["short_page"] = out.errors.get("short_page", 0) + 1
        return
    out.latencies_ms.append(ms)
    (out.next_ms if cursor else out.first_ms).append(ms)
    if page.get("next_cursor"):
        load.cursors.append((user, page["next_cursor"]))
        if len(load.cursors) > OPEN_CURSORS:  # users scroll soon or not at all
            del load.cursors[0]


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
        f"{'p99 ms':>8} {'first p50':>9} {'first p99':>9} {'next p99':>8} {'gen lag ms':>10} "
        f"{'CPU ms/req: server':>18} {'client':>6}"
    )
    print(head)
    for r in results:
        errors = sum(r.errors.values())
        achieved = len(r.latencies_ms) / r.wall_s if r.wall_s else 0.0
        print(
            f"{r.rate:>7} {r.sent:>6} {len(r.latencies_ms):>6} {errors:>7} {achieved:>10.1f} "
            f"{_pct(r.latencies_ms, 50)} {_pct(r.latencies_ms, 99)} {_pct(r.first_ms, 50):>9} "
            f"{_pct(r.first_ms, 99):>9} {_pct(r.next_ms, 99)} {r.late_start_ms:>10.1f} "
            f"{1000 * r.server_cpu_s / max(r.sent, 1):>18.2f} "
            f"{1000 * r.client_cpu_s / max(r.sent, 1):>6.2f}"
        )


if __name__ == "__main__":
    main()
