"""Small lakes for job tests, built through the real pipeline: EventLogger -> LocalLog ->
Persister (late delay 0) -> LocalLake. ``Lakebuilder.add`` queues events; ``persist`` sends them
and runs the persister, which marks every hour up to the newest event's hour (exclusive)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from homefeed.config import JobsConfig, LocalLogConfig, PersisterConfig
from homefeed.events import EventLogger
from homefeed.lake.local import LocalLake
from homefeed.log.local import LocalLog
from homefeed.persister import Persister
from homefeed.testing.events import valid_event

DAY = "2026-11-21"
NEXT = "2026-11-22"
CONFIG = JobsConfig(
    lake_retention_days=90,
    label_window_hours=2.0,
    interest_half_life_days=7.0,
    smoothing_impressions=10.0,
)


def ts(day: str, hh: int, mm: int = 0, ss: int = 0) -> str:
    return f"{day}T{hh:02d}:{mm:02d}:{ss:02d}.000Z"


class LakeBuilder:
    def __init__(self, root: Path) -> None:
        self.log = LocalLog(LocalLogConfig(path=str(root / "log")))
        self.lake = LocalLake(root / "lake")
        self.pending: list[dict[str, Any]] = []

    def add(self, event_type: str, time: str, **fields: Any) -> None:
        self.pending.append(valid_event(event_type, event_time=time, **fields))

    def persist(self) -> None:
        with EventLogger(self.log, partitions=2) as logger:
            rejected = logger.log_many(self.pending)
            assert not rejected, rejected
            logger.flush()
        self.pending = []
        config = PersisterConfig(group="persister", batch_records=500, late_delay_minutes=0.0)
        Persister(self.log, self.lake, config=config).run()

    def close(self) -> None:
        self.log.close()


def read_output(lake: LocalLake, job: str, partition: str) -> pa.Table:
    return pq.read_table(lake.root / "tables" / job / partition / "part-0000.parquet")


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def normalise(table: pa.Table, sort_key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows sorted by ``sort_key``, strings unified, floats rounded to 1e-9 for comparison."""
    out = []
    for row in table.to_pylist():
        out.append(
            {
                k: (round(v, 9) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in row.items()
            }
        )
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in sort_key))


def standard_events(b: LakeBuilder) -> None:
    """The scenario the expectations in test_jobs.py are computed from (by hand)."""
    b.add(
        "pin_create", ts(DAY, 0, 10), user_id=100, pin_id=11, board_id=3, topics=["travel", "food"]
    )
    b.add("pin_create", ts(DAY, 0, 20), user_id=100, pin_id=12, board_id=4, topics=["art"])
    imp = {"surface": "home_feed", "candidate_source": "popular", "model_version": "m-1"}
    b.add("impression", ts(DAY, 13, 5), user_id=7, pin_id=11, request_id="req-1", position=0, **imp)
    b.add("impression", ts(DAY, 13, 5), user_id=7, pin_id=12, request_id="req-1", position=1, **imp)
    b.add(
        "impression", ts(DAY, 13, 40), user_id=8, pin_id=11, request_id="req-2", position=5, **imp
    )
    b.add(
        "impression",
        ts(DAY, 13, 45),
        user_id=9,
        pin_id=12,
        request_id="req-3",
        position=30,
        surface="search",
        candidate_source="search",
        model_version="m-1",
    )
    b.add("click", ts(DAY, 13, 10), user_id=7, pin_id=11)
    b.add("save", ts(DAY, 13, 20), user_id=7, pin_id=11, board_id=5)
    b.add("closeup", ts(DAY, 13, 30), user_id=7, pin_id=12)
    b.add("hide", ts(DAY, 14, 10), user_id=7, pin_id=12)
    b.add("click", ts(DAY, 13, 50), user_id=8, pin_id=12)
    b.add("save", ts(DAY, 13, 55), user_id=8, pin_id=12, board_id=4)
    b.add("click", ts(DAY, 16, 0), user_id=8, pin_id=11)
    b.add("follow", ts(DAY, 10), user_id=7, action="follow", target_type="board", target_id=3)
    b.add("follow", ts(DAY, 11), user_id=7, action="follow", target_type="user", target_id=8)
    b.add("follow", ts(DAY, 15), user_id=7, action="unfollow", target_type="board", target_id=3)
    # The next day: one impression whose features come from day one, and one new follow.
    b.add("impression", ts(NEXT, 9), user_id=7, pin_id=11, request_id="req-9", position=2, **imp)
    b.add("follow", ts(NEXT, 9), user_id=9, action="follow", target_type="board", target_id=4)
    # A sentinel far enough ahead that every hour through NEXT + label window gets marked.
    b.add("board_create", "2026-11-23T05:00:00.000Z", user_id=1, board_id=99)
