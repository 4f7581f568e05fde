"""Ingest benchmark: events per second from the SDK to the lake, embedded log and Kafka.

    .venv/bin/python benchmarks/ingest.py                 # both backends, 1M events, 3 repeats
    .venv/bin/python benchmarks/ingest.py --events 200000 --backends local --repeats 1

Stages run as separate processes, as in production: a service process logging through the
SDK, and the persister following the log. For each backend and repeat it measures

* sdk:       events/s of EventLogger.log_many (validate, encode, batch, send, flush),
* persist:   events/s of the persister over a log that already holds every event,
* pipelined: SDK and persister running at once, from the first event logged until the
             persister has committed the last one (files durable), the end-to-end figure,
* baseline:  the raw log alone (pre-encoded records appended and read back, no validation,
             no Parquet) in the same run, so figures can be compared across noisy machines,

plus each process's peak RSS. Events come from the simulator: a pool generated before timing
and cycled, so generation cost is not counted. Prints a table of medians.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from homefeed.config import HomefeedConfig, KafkaLogConfig, LocalLogConfig

POOL = 100_000
FEED = 25  # events per log_many call: one feed response's impressions


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(
    backend: str, root: Path, bootstrap: str | None, batch_records: int | None = None
) -> HomefeedConfig:
    cfg = HomefeedConfig()
    if batch_records:
        cfg.persister.batch_records = batch_records
    # Following: an idle log is noticed within 0.2 s, so the last rows land promptly.
    cfg.persister.poll_interval_s = 0.2
    cfg.log.backend = backend  # type: ignore[assignment]
    cfg.log.local = LocalLogConfig(path=str(root / "log"))
    if bootstrap:
        cfg.log.kafka = KafkaLogConfig(bootstrap_servers=bootstrap)
    cfg.lake.uri = str(root / "lake")
    return cfg


def _event_pool(size: int) -> list[dict[str, Any]]:
    from homefeed.config import SimulatorConfig
    from homefeed.simulator import iter_events

    sim = SimulatorConfig(users=3000, pins=30000, days=1.0, seed=11)
    pool = []
    for event in iter_events(sim):
        pool.append(event)
        if len(pool) == size:
            return pool
    raise RuntimeError(f"the simulator produced only {len(pool)} events; raise days or users")


def run_sdk(cfg: HomefeedConfig, events: int, out: Any) -> None:
    from homefeed.events import EventLogger
    from homefeed.log import open_log

    pool = _event_pool(POOL)
    with open_log(cfg.log) as log:
        logger = EventLogger(log, config=cfg.sdk, partitions=cfg.log.partitions)
        out.put(("ready", time.time()))
        started = time.perf_counter()
        sent = 0
        while sent < events:
            for i in range(0, POOL, FEED):
                n = min(FEED, events - sent)
                logger.log_many(pool[i : i + n])
                sent += n
                if sent >= events:
                    break
        logger.flush()
        seconds = time.perf_counter() - started
        logger.close()
    out.put(
        (
            "sdk",
            {
                "seconds": seconds,
                "rss_mb": _peak_rss_mb(),
                "rejected": sum(logger.rejected.values()),
            },
        )
    )


def run_persister(cfg: HomefeedConfig, follow_until: int | None, out: Any) -> None:
    import threading

    from homefeed.lake import open_lake
    from homefeed.log import open_log
    from homefeed.persister import Persister

    stop = threading.Event()
    with open_log(cfg.log) as log:
        persister = Persister(log, open_lake(cfg.lake), config=cfg.persister)

        def on_batch(report: Any) -> None:
            if follow_until is not None and report.total_rows >= follow_until:
                stop.set()

        persister.on_batch = on_batch
        out.put(("ready", time.time()))
        started = time.perf_counter()
        report = persister.run(follow=follow_until is not None, stop=stop)
        seconds = time.perf_counter() - started
    out.put(
        (
            "persist",
            {
                "seconds": seconds,
                "rows": report.total_rows,
                "rss_mb": _peak_rss_mb(),
                "done_at": time.time(),
            },
        )
    )


def run_baseline(cfg: HomefeedConfig, events: int, out: Any) -> None:
    """The raw log: the same number of ~300-byte records in and out, nothing else."""
    from homefeed.log import TopicSpec, open_log

    value = b'{"event_type":"impression",' + b'"x":"' + b"y" * 260 + b'"}'
    with open_log(cfg.log) as log:
        log.ensure_topic(TopicSpec("baseline", cfg.log.partitions))
        started = time.perf_counter()
        with log.producer() as producer:
            for i in range(0, events, 10_000):
                producer.send_many(
                    "baseline",
                    ((str(j % 5000).encode(), value) for j in range(i, min(events, i + 10_000))),
                )
            producer.flush()
        with log.consumer("baseline-reader", ["baseline"]) as consumer:
            read = 0
            while read < events:
                read += len(consumer.poll(50_000, 1.0))
        seconds = time.perf_counter() - started
    out.put(("baseline", {"seconds": seconds, "rss_mb": _peak_rss_mb()}))


def _create_topics(cfg: HomefeedConfig) -> None:
    from homefeed.events.registry import SchemaRegistry
    from homefeed.events.sdk import ensure_event_topics
    from homefeed.log import open_log

    with open_log(cfg.log) as log:
        ensure_event_topics(log, SchemaRegistry(), cfg.log.partitions, 48 * 3_600_000)


def _spawn(target: Callable[..., None], *args: Any) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    return proc, queue


def _result(queue: Any, name: str, timeout: float = 1800) -> Any:
    while True:
        kind, value = queue.get(timeout=timeout)
        if kind == name:
            return value


@contextmanager
def _phase(backend: str, root: Path, batch_records: int | None) -> Iterator[HomefeedConfig]:
    """A config on fresh storage: a new directory, and for Kafka a new broker process."""
    if backend != "kafka":
        yield _config(backend, root, None, batch_records)
        return
    from homefeed.testing.broker import TansuBroker

    with TansuBroker() as broker:
        yield _config(backend, root, broker.bootstrap_servers, batch_records)


def measure(backend: str, events: int, batch_records: int | None = None) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        with _phase(backend, Path(tmp) / "sequential", batch_records) as cfg:
            proc, q = _spawn(run_sdk, cfg, events)
            sdk = _result(q, "sdk")
            proc.join()
            proc, q = _spawn(run_persister, cfg, None)
            persist = _result(q, "persist")
            proc.join()
        assert persist["rows"] == events - sdk["rejected"], persist
        figures |= {
            "sdk": events / sdk["seconds"],
            "persist": events / persist["seconds"],
            "sdk_rss_mb": sdk["rss_mb"],
            "persist_rss_mb": persist["rss_mb"],
        }

        with _phase(backend, Path(tmp) / "pipelined", batch_records) as cfg:
            # The persister is a long-running service: it is up before the services log.
            _create_topics(cfg)
            per_proc, per_q = _spawn(run_persister, cfg, events)
            _result(per_q, "ready")
            sdk_proc, sdk_q = _spawn(run_sdk, cfg, events)
            ready_at = _result(sdk_q, "ready")
            piped = _result(per_q, "persist")
            sdk_proc.join()
            per_proc.join()
        figures["pipelined"] = events / (piped["done_at"] - ready_at)

        with _phase(backend, Path(tmp) / "baseline", batch_records) as cfg:
            proc, q = _spawn(run_baseline, cfg, events)
            figures["baseline"] = events / _result(q, "baseline")["seconds"]
            proc.join()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="local,kafka")
    parser.add_argument(
        "--batch-records",
        type=int,
        default=None,
        help="persister.batch_records (default: the config default)",
    )
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        runs = [measure(backend, args.events, args.batch_records) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append((backend, med))
        print(f"{backend}: {[{k: round(v) for k, v in r.items()} for r in runs]}", flush=True)
    print(f"\n{args.events:,} events, median of {args.repeats} runs (events/s; RSS in MB)")
    header = [
        "backend",
        "sdk",
        "persist",
        "pipelined",
        "baseline",
        "pipelined/baseline",
        "sdk RSS",
        "persist RSS",
    ]
    print(" | ".join(header))
    for backend, m in rows:
        print(
            " | ".join(
                [
                    backend,
                    f"{m['sdk']:,.0f}",
                    f"{m['persist']:,.0f}",
                    f"{m['pipelined']:,.0f}",
                    f"{m['baseline']:,.0f}",
                    f"{m['pipelined'] / m['baseline']:.2f}",
                    f"{m['sdk_rss_mb']:.0f}",
                    f"{m['persist_rss_mb']:.0f}",
                ]
            )
        )


if __name__ == "__main__":
    main()
