"""Jobs benchmark: hourly and daily job times on DuckDB and Spark, side by side, with memory.

    .venv/bin/python benchmarks/jobs.py --events 1000000
    .venv/bin/python benchmarks/jobs.py --events 1000000,10000000 --engines duckdb

For each size, a lake is built through the real pipeline (simulator -> SDK -> embedded log ->
persister) over 2.5 simulated days, so the first day and its label window are complete. Then,
for each engine in its own process: all 24 hourly partitions of day 1, then the daily jobs of
day 1 (training examples included). Peak memory is sampled over the whole process tree, so
Spark's JVM counts. Prints one table; the events in the lake and on day 1 are shown too.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from homefeed.config import (
    DuckDBConfig,
    EngineConfig,
    JobsConfig,
    LocalLogConfig,
    PersisterConfig,
    SimulatorConfig,
    SparkConfig,
)

DAYS = 2.5
EVENTS_PER_USER_DAY = 51  # what the default world produces, measured (world included)


def build_lake(root: Path, events: int) -> dict[str, float]:
    from homefeed.events import EventLogger
    from homefeed.lake.local import LocalLake
    from homefeed.log.local import LocalLog
    from homefeed.persister import Persister
    from homefeed.simulator import simulate

    users = max(100, int(events / (EVENTS_PER_USER_DAY * DAYS)))
    sim = SimulatorConfig(users=users, pins=users * 10, days=DAYS, seed=5)
    log = LocalLog(LocalLogConfig(path=str(root / "log")))
    started = time.perf_counter()
    with EventLogger(log, partitions=4) as logger:
        summary = simulate(sim, logger.log)
    persister = Persister(log, LocalLake(root / "lake"), config=PersisterConfig())
    report = persister.run()
    return {"events": summary.events, "rows": report.total_rows,
            "build_s": time.perf_counter() - started}  # fmt: skip


def run_jobs(engine_name: str, lake_dir: str, out: Any) -> None:
    from homefeed.jobs.definitions import DAILY, HOURLY, day_start_ms, parse_date
    from homefeed.jobs.engines import open_engine
    from homefeed.jobs.runner import run_job
    from homefeed.lake.local import LocalLake

    peak = _sample_peak_rss()
    engines = EngineConfig(
        default=engine_name,  # type: ignore[arg-type]
        duckdb=DuckDBConfig(memory_limit="3GB"),
        spark=SparkConfig(master="local[2]", driver_memory="3g", shuffle_partitions=4),
    )
    config = JobsConfig()
    lake = LocalLake(lake_dir)
    first = day_start_ms(parse_date("2026-11-01"))
    with open_engine(engines) as engine:
        started = time.perf_counter()
        for hour in range(24):
            for spec in HOURLY:
                run_job(engine, lake, spec, first + hour * 3_600_000, config)
        hourly_s = time.perf_counter() - started
        started = time.perf_counter()
        rows = {spec.name: run_job(engine, lake, spec, first, config).rows_out for spec in DAILY}
        daily_s = time.perf_counter() - started
    out.put({"hourly_s": hourly_s, "daily_s": daily_s, "peak_mb": peak(),
             "training_rows": rows.get("training_examples", 0)})  # fmt: skip


def _sample_peak_rss() -> Any:
    """Start sampling this process tree's RSS; the returned function gives the peak in MB."""
    me = psutil.Process()
    peak = [0]

    def sample() -> None:
        while True:
            try:
                total = me.memory_info().rss + sum(
                    c.memory_info().rss for c in me.children(recursive=True)
                )
            except psutil.Error:
                total = 0
            peak[0] = max(peak[0], total)
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    return lambda: peak[0] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="1000000", help="comma-separated lake sizes")
    parser.add_argument("--engines", default="duckdb,spark")
    args = parser.parse_args()
    rows = []
    for events in (int(e) for e in args.events.split(",")):
        with tempfile.TemporaryDirectory(prefix="hf-jobs-") as tmp:
            built = build_lake(Path(tmp), events)
            print(f"lake: {built['events']:,.0f} events in {built['build_s']:.0f} s", flush=True)
            for engine in args.engines.split(","):
                ctx = mp.get_context("spawn")
                queue = ctx.Queue()
                proc = ctx.Process(target=run_jobs, args=(engine, str(Path(tmp) / "lake"), queue))
                proc.start()
                result = queue.get(timeout=3600)
                proc.join()
                rows.append((built["events"], engine, result))
                print(f"  {engine}: {result}", flush=True)
    print("\nevents in lake | engine | 24 hourly partitions (s) | daily jobs (s) | "
          "training rows | peak RSS (MB)")  # fmt: skip
    for events, engine, r in rows:
        print(f"{events:,.0f} | {engine} | {r['hourly_s']:.1f} | {r['daily_s']:.1f} | "
              f"{r['training_rows']:,} | {r['peak_mb']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
