"""``homefeed serve --workers 2``: two processes on one port share sessions and cursors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from homefeed.config import ModelsConfig, RankerConfig, SourceConfig
from homefeed.models.pipeline import train_bundle
from homefeed.testing.models import simulated_training_data

WORLD = {"users": 120, "pins": 800, "days": 2.0, "seed": 5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("workers")
    data = simulated_training_data(**WORLD)
    config = ModelsConfig(
        sources={"following": SourceConfig(k=60), "trending": SourceConfig(k=60)},
        ranker=RankerConfig(rounds=5, min_data_in_leaf=20, learning_rate=0.1),
    )
    train_bundle(data, config).save(tmp / "bundle")
    port = _free_port()
    env = dict(os.environ, **{f"HOMEFEED_SIMULATOR_{k.upper()}": str(v) for k, v in WORLD.items()})
    env["XDG_CACHE_HOME"] = str(tmp / "cache")  # compiled ranker heads
    cmd = [str(Path(sys.executable).parent / "homefeed"), "serve", "--bundle", str(tmp / "bundle"),
           "--port", str(port), "--workers", "2"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with open(tmp / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_both_workers_answer(base, proc, tmp / "server.log")
            yield base, proc, data
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)


def _wait_until_both_workers_answer(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        text = log.read_text(errors="replace")
        if text.count("Application startup complete") >= 2:
            return
        time.sleep(0.5)
    raise AssertionError(f"two workers never started:\n{log.read_text()[-3000:]}")


def test_next_pages_work_on_whichever_worker_answers(server):
    base, _, data = server
    users = np.unique(data.positives().user_id)[:30]
    seen_pages = 0
    # A new connection per request: the kernel spreads connections over the two workers.
    for user in users.tolist():
        first = httpx.get(f"{base}/v1/users/{user}/feed", params={"limit": 10}, timeout=30)
        assert first.status_code == 200, first.text
        body = first.json()
        page_2 = {"limit": 10, "cursor": body["next_cursor"]}
        second = httpx.get(f"{base}/v1/users/{user}/feed", params=page_2, timeout=30)
        assert second.status_code == 200, second.text
        assert not {i["pin_id"] for i in body["items"]} & {
            i["pin_id"] for i in second.json()["items"]
        }
        seen_pages += 2
    assert seen_pages == 60


def _feed_requests(base: str) -> float:
    """GET feed requests answered 200 so far, as /metrics reports them."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            counted = sample.name == "homefeed_http_request_seconds_count"
            if counted and labels.get("code") == "200" and "feed" in labels.get("route", ""):
                total += sample.value
    return total


def test_metrics_from_any_worker_count_every_workers_requests(server):
    base, _, data = server
    user = int(np.unique(data.positives().user_id)[0])
    before = [_feed_requests(base) for _ in range(4)]
    for _ in range(20):  # new connections: both workers answer some
        assert httpx.get(f"{base}/v1/users/{user}/feed", timeout=30).status_code == 200
    after = [_feed_requests(base) for _ in range(4)]
    # Whichever worker answers the scrape, it reports the whole service's count.
    assert len(set(before)) == 1 and len(set(after)) == 1, (before, after)
    assert after[0] - before[0] == 20


def test_terminating_the_parent_stops_every_worker(server):
    _, proc, _ = server
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) >= 2
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    # Workers are gone once the parent is; multiprocessing's resource tracker follows as
    # soon as it sees the parent's pipe close.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]


def _alive(pid: str) -> bool:
    return Path(f"/proc/{pid}").exists() and _state(pid) != "Z"


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"
