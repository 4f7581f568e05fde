"""Event-to-effect latency: from EventLogger.log(hide) + flush to the online store's hidden set.

    .venv/bin/python benchmarks/reactions.py               # local and redis stores, 200 events
    .venv/bin/python benchmarks/reactions.py --events 500 --stores local

The log is the embedded local log (fsync=never, as a laptop would run it); the reaction
consumer follows it in a thread with its default 50 ms poll timeout. Each event is logged,
flushed, then the store is polled (every 0.5 ms) until the pin shows up as hidden; one event
at a time, so the figure is latency, not throughput. Prints median and p99 per store.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from homefeed.config import LocalLogConfig, SdkConfig
from homefeed.events import EventLogger
from homefeed.log.local import LocalLog
from homefeed.serving.online import OnlineStore, open_online_store
from homefeed.serving.online.reactions import ReactionConsumer
from homefeed.serving.settings import OnlineStoreConfig
from homefeed.testing.events import valid_event
from homefeed.testing.redis import RedisServer


def measure(store: OnlineStore, events: int, root: Path) -> np.ndarray:
    event_log = LocalLog(LocalLogConfig(path=str(root / "log"), fsync="never"))
    sdk = EventLogger(event_log, config=SdkConfig(linger_ms=1000), strict=True)
    consumer = ReactionConsumer(event_log, store)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    latencies = []
    try:
        for i in range(events):
            user, pin = 1000 + i % 50, 10_000 + i
            t0 = time.perf_counter()
            sdk.log(valid_event("hide", user_id=user, pin_id=pin))
            sdk.flush()
            while pin not in store.user_state([user])[0].hidden:
                time.sleep(0.0005)
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        stop.set()
        thread.join()
        consumer.close()
        sdk.close()
        event_log.close()
    return np.array(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--stores", nargs="+", default=["local", "redis"])
    args = parser.parse_args()
    print(f"{'store':8} {'events':>7} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    for name in args.stores:
        with tempfile.TemporaryDirectory() as tmp:
            server = RedisServer().start() if name == "redis" else None
            try:
                config = OnlineStoreConfig(backend=name)  # type: ignore[call-arg]
                if server is not None:
                    config = OnlineStoreConfig(
                        backend="redis",
                        redis_url=server.url,
                        key_prefix=f"b{uuid.uuid4().hex[:6]}:",
                    )
                store = open_online_store(config)
                ms = measure(store, args.events, Path(tmp))
                store.close()
            finally:
                if server is not None:
                    server.stop()
        p50, p99 = np.percentile(ms, [50, 99])
        print(f"{name:8} {len(ms):7d} {p50:10.2f} {p99:8.2f} {ms.max():8.2f}")


if __name__ == "__main__":
    main()
