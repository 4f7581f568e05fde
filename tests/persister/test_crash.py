"""The persister killed with SIGKILL at random moments, again and again, then run to the end:
the lake must hold every valid event exactly once, checked by (topic, partition, offset)."""

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from homefeed.config import LocalLogConfig
from homefeed.events import EventLogger
from homefeed.lake.local import LocalLake
from homefeed.log.local import LocalLog
from homefeed.testing.events import valid_event
from homefeed.testing.lake import read_event_table

INTERRUPTED = 20  # kills that must land with work left to do
MAX_KILLS = 60  # on a loaded machine some kills land before start-up ends
START = datetime(2026, 11, 1, tzinfo=UTC)
TYPES = ["click", "save", "impression", "closeup"]


def _produce(
    logger: EventLogger, rng: random.Random, start: int, count: int, expected: dict
) -> None:
    for i in range(start, start + count):
        kind = TYPES[i % len(TYPES)]
        minute = i // 40  # about 40 events a minute, so batches span hours
        event = valid_event(
            kind,
            user_id=rng.randrange(200),
            pin_id=i,
            event_id=f"ev-{i}",
            event_time=(START + timedelta(minutes=minute)).isoformat(),
        )
        if rng.random() < 0.01:
            event["pin_id"] = "not-a-number"  # dead-lettered by the SDK, never in the lake
            assert logger.log(event) is not None
            continue
        assert logger.log(event) is None
        expected[kind].add(event["event_id"])
    logger.flush()


def _wait_for_start(proc: subprocess.Popen) -> None:
    """Block until the persister says it is persisting, so the kill lands in real work."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready, "the persister did not start within 60 s"
    proc.stdout.readline()


def _committed(log: LocalLog) -> int:
    return sum(sum(log.group_offsets("lake-persister", f"events.{t}").values()) for t in TYPES)


@pytest.mark.slow
def test_persister_killed_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(20261122)
    log_path, lake_path = tmp_path / "log", tmp_path / "lake"
    env = os.environ | {
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        "HOMEFEED_LOG_LOCAL_PATH": str(log_path),
        "HOMEFEED_LAKE_URI": str(lake_path),
        "HOMEFEED_PERSISTER_BATCH_RECORDS": "1500",
        "HOMEFEED_PERSISTER_LATE_DELAY_MINUTES": "0",
    }
    log = LocalLog(LocalLogConfig(path=str(log_path)))
    expected: dict[str, set[str]] = {t: set() for t in TYPES}
    logger = EventLogger(log, partitions=3, on_reject=lambda r: None)
    produced = 0
    _produce(logger, rng, produced, 20_000, expected)
    produced += 20_000

    kills = interrupted = progressed = 0
    while interrupted < INTERRUPTED and kills < MAX_KILLS:
        before = _committed(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "homefeed.cli.main", "persist"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _wait_for_start(proc)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
            proc.wait()
            after = _committed(log)
            end = sum(i.end_offset for t in TYPES for i in log.partitions(f"events.{t}"))
            interrupted += after < end  # killed with work still to do
            progressed += before < after < end  # ...after committing some of it
        else:
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        _produce(logger, rng, produced, 6_000, expected)  # the world keeps producing
        produced += 6_000

    final = subprocess.run(
        [sys.executable, "-m", "homefeed.cli.main", "persist"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr.decode()
    logger.close()

    lake = LocalLake(lake_path)
    for kind in TYPES:
        table = read_event_table(lake, kind, ["event_id", "_partition", "_offset"])
        keys = list(
            zip(
                table.column("_partition").to_pylist(),
                table.column("_offset").to_pylist(),
                strict=True,
            )
        )
        duplicates = [k for k, n in Counter(keys).items() if n > 1]
        assert not duplicates, (
            f"{kind}: {len(duplicates)} duplicated offsets, e.g. {duplicates[:3]}"
        )
        for info in log.partitions(f"events.{kind}"):
            have = sorted(o for p, o in keys if p == info.partition)
            assert have == list(range(info.start_offset, info.end_offset)), (
                f"{kind}[{info.partition}] gaps"
            )
        assert set(table.column("event_id").to_pylist()) == expected[kind]
    print(
        f"\n{kills} SIGKILLs: {interrupted} with work left, {progressed} of them after committing "
        f"part of it; {produced} events produced"
    )
    assert interrupted >= INTERRUPTED  # the kills really interrupted work, not only start-up
