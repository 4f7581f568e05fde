"""``homefeed serve --workers N``: N feed-server processes sharing one listening socket.

One Python process computes one page at a time (the work holds the GIL), so a single process
tops out near 300 first pages a second on this kind of machine. Workers are separate
processes: the parent binds the port and spawns them (fresh interpreters, not forks, so no
thread or OpenMP state is inherited); each loads the bundle from disk and the catalogue, and
the kernel hands each new connection to whichever worker accepts first.

What the workers share, and how:

- feed sessions and the cursor key: one SQLite file (``session_sqlite.py``), so a page's
  ``next_cursor`` works whichever worker the next request reaches;
- the event log: each worker has its own producer (the local log takes appends from several
  processes; Kafka naturally);
- online state: with the Redis store, one store and one reaction consumer (worker 0); with
  the local store, each worker keeps its own, fed by its own consumer group
  (``online-features-<worker>``), so every worker sees every hide, save and impression.

- ``/metrics``: prometheus_client's multiprocess mode, in a temporary directory, so any
  worker's answer sums every worker's counters and histograms.

Per worker, not shared: the candidate pool cache (route a user to one worker, e.g. by
consistent hashing at the load balancer, to keep its hit rate).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homefeed.config import HomefeedConfig
    from homefeed.models.data import TrainingData

from homefeed.serving.api.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)

# Where a worker finds its catalogue: {"kind": "simulated"} (the config's simulator world)
# or {"kind": "window", "start": ISO, "end": ISO} (the lake's events of a training window).
DataOrigin = dict[str, str]


def serve_workers(
    cfg: HomefeedConfig, bundle_dir: Path, data: DataOrigin, host: str, port: int, workers: int
) -> None:
    """Bind ``host:port``, run ``workers`` worker processes on it until one exits or a signal."""
    config = cfg.serving.api
    scratch = None if config.sessions_path else Path(tempfile.mkdtemp(prefix="homefeed-"))
    sessions = scratch / "sessions.db" if scratch else Path(str(config.sessions_path))
    spec = json.dumps({
        "config": cfg.model_dump(mode="json"), "bundle": str(bundle_dir.resolve()),
        "data": data, "sessions": str(sessions),
    })  # fmt: skip
    sock = _listen(host, port)
    metrics = Path(tempfile.mkdtemp(prefix="homefeed-metrics-"))
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=worker_main, args=(spec, slot, sock), name=f"feed-worker-{slot}")
        for slot in range(workers)
    ]
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(metrics)  # read by each worker's prometheus_client import
    try:
        for proc in procs:
            proc.start()
    finally:
        _restore_env(MULTIPROC_ENV, previous)
    log.info("%d feed workers on http://%s:%d, sessions in %s", workers, host, port, sessions)
    try:
        _supervise(procs)
    finally:
        sock.close()
        shutil.rmtree(metrics, ignore_errors=True)
        if scratch is not None:  # sessions do not outlive the service unless configured
            shutil.rmtree(scratch, ignore_errors=True)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _supervise(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Wait until a signal or any worker's exit, then stop every worker."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.2)
        dead = [p.name for p in procs if not p.is_alive()]
        if dead and not stopping:
            log.error("feed worker(s) %s exited: stopping the others", ", ".join(dead))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # uvicorn finishes in-flight requests on SIGTERM
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not stopping:
        raise SystemExit(1)


def worker_main(spec_json: str, slot: int, sock: socket.socket) -> None:
    """One worker: load the model and catalogue, then serve on the parent's socket."""
    from homefeed.config import HomefeedConfig
    from homefeed.models.bundle import ModelBundle
    from homefeed.serving.api.cli import serve_app
    from homefeed.serving.api.session import CursorCodec
    from homefeed.serving.api.session_sqlite import SqliteSessionStore, shared_cursor_key
    from homefeed.serving.online.reactions import GROUP

    logging.basicConfig(level=logging.INFO, format=f"[worker {slot}] %(levelname)s %(message)s")
    spec: dict[str, Any] = json.loads(spec_json)
    cfg = HomefeedConfig.model_validate(spec["config"])
    model = ModelBundle.load(Path(spec["bundle"]))
    data = _load_data(cfg, spec["data"])
    api, path = cfg.serving.api, Path(spec["sessions"])
    local = cfg.serving.online.backend == "local"
    serve_app(
        cfg, model, data, sockets=[sock],
        sessions=SqliteSessionStore(path, api.session_ttl_s, api.max_sessions),
        cursors=CursorCodec(shared_cursor_key(path)),
        consumer_group=f"{GROUP}-{slot}" if local else (GROUP if slot == 0 else None),
    )  # fmt: skip


def _load_data(cfg: HomefeedConfig, origin: DataOrigin) -> TrainingData:
    if origin["kind"] == "simulated":
        from homefeed.testing.models import simulated_training_data

        sim = cfg.simulator
        return simulated_training_data(sim.users, sim.pins, sim.days, sim.seed)
    from datetime import datetime

    from homefeed.models.lake_data import load_training_data

    start, end = (datetime.fromisoformat(origin[k]) for k in ("start", "end"))
    return load_training_data(cfg, start, end)
