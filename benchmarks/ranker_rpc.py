"""Ranking RPC latency: one feed's candidates (500 x 40 float32 features) over loopback Thrift.

    .venv/bin/python benchmarks/ranker_rpc.py                   # 2000 calls after 200 warm-up
    .venv/bin/python benchmarks/ranker_rpc.py --rows 1000 --calls 500

The server runs in a child process (as in production, so client and server do not share a
GIL) with a linear scorer, whose cost is a few microseconds: the figures are the transport's
(encode, send, decode, reply). The in-process client on the same scorer is printed beside it:
the price of the network hop is the difference.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from homefeed.serving.ranking.client import InProcessRankerClient, Scores, ThriftRankerClient
from homefeed.serving.ranking.service import RankingServer, RankingService


class LinearScorer:
    def __init__(self, n_features: int) -> None:
        self.feature_names = [f"f{i:02d}" for i in range(n_features)]
        self.version = "linear-1"
        self.w = np.random.default_rng(0).normal(size=n_features).astype(np.float32)

    def score(self, feature_names: Sequence[str], X: np.ndarray) -> np.ndarray:
        return X @ self.w


def run_server(n_features: int, conn: Connection) -> None:
    server = RankingServer(RankingService(LinearScorer(n_features)), "127.0.0.1", port=0)
    conn.send(server.bind())
    server.serve()


def timed(call: Callable[[], Scores], calls: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        call()
    out = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        call()
        out[i] = (time.perf_counter() - t0) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    scorer = LinearScorer(args.features)
    X = np.random.default_rng(1).normal(size=(args.rows, args.features)).astype(np.float32)
    names = scorer.feature_names
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=run_server, args=(args.features, child))
    proc.start()
    try:
        client = ThriftRankerClient("127.0.0.1", parent.recv(), timeout_ms=5000)
        rpc = timed(lambda: client.score(1, names, X), args.calls, args.warmup)
        client.close()
    finally:
        proc.kill()
        proc.join()
    local_client = InProcessRankerClient(scorer)
    local = timed(lambda: local_client.score(1, names, X), args.calls, args.warmup)
    print(f"{args.rows} rows x {args.features} features, {args.calls} calls")
    print(f"{'client':12} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for label, ms in (("thrift", rpc), ("in-process", local)):
        p50, p99 = np.percentile(ms, [50, 99])
        print(f"{label:12} {p50:8.3f} {p99:8.3f} {ms.mean():8.3f}")


if __name__ == "__main__":
    main()
