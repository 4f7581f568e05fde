"""Simulator benchmark: events generated per second and peak memory, streaming a large world.

    .venv/bin/python benchmarks/simulate.py --users 20000 --pins 200000 --days 9

Counts events from ``iter_events`` without keeping them, so the peak RSS shows what the
simulator itself holds (the world plus one simulated hour). Prints one summary line.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from homefeed.config import SimulatorConfig
from homefeed.simulator import iter_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--pins", type=int, default=200_000)
    parser.add_argument("--days", type=float, default=9.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    config = SimulatorConfig(users=args.users, pins=args.pins, days=args.days, seed=args.seed)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    for event in iter_events(config):
        counts[event["event_type"]] += 1
    seconds = time.perf_counter() - started
    total = sum(counts.values())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{total:,} events in {seconds:.0f} s = {total / seconds:,.0f} events/s; "
        f"peak RSS {rss:.0f} MB; {dict(counts.most_common())}"
    )


if __name__ == "__main__":
    main()
