"""Point in time: a training row's features depend only on what happened before its impression.

Events after the impression (more clicks on the pin, a new topic for it, the user's later
engagement) may change its labels and nothing else; the same events before it do change the
features.

On DuckDB only: the SQL is the same on both engines, and test_jobs.py shows that both engines
build identical training rows from the same input, so a second run here would test nothing new
for the cost of a minute of Spark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homefeed.config import DuckDBConfig
from homefeed.jobs.definitions import JOBS, day_start_ms, parse_date
from homefeed.jobs.engines.duckdb import DuckDBEngine
from homefeed.jobs.runner import run_job
from tests.jobs.fixtures import CONFIG, DAY, NEXT, LakeBuilder, read_output, standard_events, ts

LABELS = {"label_click", "label_save", "label_hide"}


@pytest.fixture
def duck() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(DuckDBConfig(memory_limit="1GB", threads=2))  # type: ignore[call-arg]
    yield engine
    engine.close()


def build_day_one(engine: Any, builder: LakeBuilder) -> None:
    """Day one's tables the next day's features read (later events here are all on NEXT)."""
    day = day_start_ms(parse_date(DAY))
    for name in ("pin_stats_daily", "user_topic_interest"):
        run_job(engine, builder.lake, JOBS[name], day, CONFIG)


def training_row(engine: Any, builder: LakeBuilder) -> dict[str, Any]:
    """The next day's training examples, rebuilt; the row of the req-9 impression."""
    nxt = day_start_ms(parse_date(NEXT))
    record = run_job(engine, builder.lake, JOBS["training_examples"], nxt, CONFIG)
    [row] = [
        r
        for r in read_output(builder.lake, "training_examples", record.partition).to_pylist()
        if r["request_id"] == "req-9"
    ]
    return row


def features(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in LABELS and k != "impression_id"}


def test_features_see_only_the_past(duck: DuckDBEngine, tmp_path: Path) -> None:
    builder = LakeBuilder(tmp_path)
    standard_events(builder)
    builder.persist()
    build_day_one(duck, builder)
    base = training_row(duck, builder)

    # All after the 09:00 impression: more engagement with pin 11, a new topic for it.
    builder.add("click", ts(NEXT, 9, 30), user_id=7, pin_id=11)
    builder.add("click", ts(NEXT, 9, 40), user_id=9, pin_id=11)
    builder.add("save", ts(NEXT, 10, 0), user_id=7, pin_id=12, board_id=5)
    builder.add("pin_create", ts(NEXT, 9, 10), user_id=100, pin_id=11, board_id=3, topics=["cars"])
    builder.add(
        "impression", ts(NEXT, 9, 0, 1), user_id=7, pin_id=12, request_id="req-10", position=0
    )
    builder.persist()
    later = training_row(duck, builder)
    assert features(later) == features(base)
    assert (base["label_click"], later["label_click"]) == (0, 1)  # only the label moved

    # The same kind of events before the impression do change its features.
    builder.add("click", ts(NEXT, 8, 0), user_id=7, pin_id=12)
    builder.add("pin_create", ts(NEXT, 8, 30), user_id=100, pin_id=11, board_id=3, topics=["art"])
    builder.persist()
    earlier = training_row(duck, builder)
    assert earlier["user_clicks_before"] == base["user_clicks_before"] + 1
    # Pin 11 is now about art only: the affinity is user 7's day-one art weight alone.
    interest = read_output(builder.lake, "user_topic_interest", f"dt={DAY}").to_pylist()
    [art] = [r["weight"] for r in interest if r["user_id"] == 7 and r["topic"] == "art"]
    assert abs(earlier["topic_affinity"] - art) < 1e-9
    assert abs(base["topic_affinity"] - art) > 1e-3
