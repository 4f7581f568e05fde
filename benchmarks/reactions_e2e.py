"""Event-to-effect latency of a hide, end to end through the feed service.

    .venv/bin/python benchmarks/reactions_e2e.py                      # 100 hides, local store
    .venv/bin/python benchmarks/reactions_e2e.py --store redis        # a redis-server it starts
    .venv/bin/python benchmarks/reactions_e2e.py --linger-ms 10       # SDK linger (default 200)

A bundle is trained on a small simulated world and saved; ``homefeed serve --bundle`` runs in
its own process (uvicorn on loopback, the embedded log in a temporary directory, the reaction
consumer thread, the online store). For each event, over HTTP: GET the user's feed (limit 1)
twice to learn the pin it shows first, POST a hide of that pin to /v1/events, then GET the
feed again and again until its first pin is another one. The latency is from just before the
POST until the response that no longer shows the pin: SDK linger and send, the log, the
consumer's poll and apply, the store, and one feed request (the measurement's resolution).

The server runs with ``serving.api.recent_window_hours = 0``, so seen pins are not excluded:
otherwise the probe GET would itself make the pin "seen" and hide it. Only hides move it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np

from homefeed.config import ModelsConfig, RankerConfig, SourceConfig
from homefeed.models.pipeline import train_bundle
from homefeed.testing.models import simulated_training_data

MODELS = ModelsConfig(
    sources={
        "following": SourceConfig(k=100),
        "pixie": SourceConfig(k=150),
        "content": SourceConfig(k=150),
        "trending": SourceConfig(k=60),
    },
    ranker=RankerConfig(rounds=30, min_data_in_leaf=20, learning_rate=0.1),
)
TARGET_S = 2.0


def main() -> None:
    args = _parse()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reactions-e2e-")))
        users = _train(args, work / "bundle")
        env = _server_env(args, work, stack)
        url = stack.enter_context(_Server(env, work / "bundle", args.verbose))
        with httpx.Client(base_url=url, timeout=30.0) as client:
            latencies, gets = _measure(client, users, args.events)
    _report(args, latencies, gets)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--events", type=int, default=100, help="hides to time")
    parser.add_argument("--store", choices=("local", "redis"), default="local")
    parser.add_argument("--linger-ms", type=int, default=None, help="SDK linger (config: 200)")
    parser.add_argument("--users", type=int, default=200, help="simulated world users")
    parser.add_argument("--pins", type=int, default=2000, help="simulated world pins")
    parser.add_argument("--verbose", action="store_true", help="show the server's log")
    return parser.parse_args()


def _train(args: argparse.Namespace, path: Path) -> list[int]:
    """Train and save the bundle; the users with positive history, most active first."""
    data = simulated_training_data(args.users, args.pins)
    start = time.perf_counter()
    train_bundle(data, MODELS).save(path)
    print(f"bundle trained and saved in {time.perf_counter() - start:.1f} s", flush=True)
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    return [int(u) for u in users[np.argsort(-counts, kind="stable")]]


def _server_env(args: argparse.Namespace, work: Path, stack: ExitStack) -> dict[str, str]:
    env = dict(os.environ)
    env |= {
        "HOMEFEED_LOG_LOCAL_PATH": str(work / "log"),
        "HOMEFEED_LOG_LOCAL_FSYNC": "never",
        "HOMEFEED_SIMULATOR_USERS": str(args.users),
        "HOMEFEED_SIMULATOR_PINS": str(args.pins),
        "HOMEFEED_SERVING_API_RECENT_WINDOW_HOURS": "0",
        "HOMEFEED_SERVING_ONLINE_BACKEND": args.store,
    }
    if args.linger_ms is not None:
        env["HOMEFEED_SDK_LINGER_MS"] = str(args.linger_ms)
    if args.store == "redis":
        from homefeed.testing.redis import RedisServer

        env["HOMEFEED_SERVING_ONLINE_REDIS_URL"] = stack.enter_context(RedisServer()).url
    return env


class _Server:
    """``homefeed serve --bundle`` in a child process on a free loopback port."""

    def __init__(self, env: dict[str, str], bundle: Path, verbose: bool) -> None:
        self.env, self.bundle, self.verbose = env, bundle, verbose
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        command = [sys.executable, "-m", "homefeed.cli.main", "serve", "--bundle",
                   str(self.bundle), "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        output = None if self.verbose else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=self.env, stdout=output, stderr=output)
        url = f"http://127.0.0.1:{self.port}"
        _wait_healthy(url, self.process)
        return url

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"homefeed serve exited with {process.returncode}; run --verbose")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"homefeed serve did not answer /healthz within {timeout_s} s")


def _first_pin(client: httpx.Client, user: int) -> tuple[int, float]:
    start = time.perf_counter()
    response = client.get(f"/v1/users/{user}/feed", params={"limit": 1})
    response.raise_for_status()
    return int(response.json()["items"][0]["pin_id"]), time.perf_counter() - start


def _hide(client: httpx.Client, user: int, pin: int) -> None:
    now = time.time()
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    event = {
        "event_type": "hide",
        "user_id": user,
        "pin_id": pin,
        "event_time": when,
        "surface": "home_feed",
        "client": {"platform": "web"},
        "reason": "not_interested",
    }
    body = client.post("/v1/events", json={"events": [event]}).json()
    if body.get("accepted") != 1:
        raise SystemExit(f"the hide was not accepted: {body}")


def _measure(
    client: httpx.Client, users: list[int], events: int
) -> tuple[list[float], list[float]]:
    latencies: list[float] = []
    gets: list[float] = []
    i = 0
    while len(latencies) < events:
        user = users[i % len(users)]
        i += 1
        pin, _ = _first_pin(client, user)
        again, _ = _first_pin(client, user)
        if again != pin:  # the feed's first pin must be stable for the probe to mean anything
            continue
        start = time.perf_counter()
        _hide(client, user, pin)
        while True:
            shown, took = _first_pin(client, user)
            gets.append(took)
            if shown != pin:
                break
            if time.perf_counter() - start > 60:
                raise SystemExit(f"user {user}: the hide of pin {pin} never reached the feed")
        latencies.append(time.perf_counter() - start)
    return latencies, gets


def _report(args: argparse.Namespace, latencies: list[float], gets: list[float]) -> None:
    ms = np.array(latencies) * 1000
    print(f"store={args.store} sdk linger={args.linger_ms or 'config (200)'} ms, "
          f"{len(ms)} hides")  # fmt: skip
    print(
        f"event-to-effect: median {np.median(ms):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
        f"max {ms.max():.0f} ms, mean {ms.mean():.0f} ms (target <= {TARGET_S * 1000:.0f} ms)"
    )
    print(f"feed GET (limit 1, the probe): median {statistics.median(gets) * 1000:.0f} ms")
    verdict = "meets" if np.percentile(ms, 99) <= TARGET_S * 1000 else "misses"
    print(f"p99 {verdict} the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
