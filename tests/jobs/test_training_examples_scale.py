"""training_examples stays linear in its input: no join may pair rows by topic alone.

An impression's topic affinity joins its pin's topics with the user's interests on (user,
topic). Written as a three-way join through the impressions, DuckDB's optimizer (misled by
its cardinality estimates at scale) paired every impression topic with every user's interest
in that topic first: impressions x users per topic rows, 384M at 1M events, and at 10M a spill
that filled a 69 GB disk. At this test's size DuckDB happens to choose a good order even for
the old SQL, so this is a guard, not a reproduction: it bounds every operator of the job's
profile by the rows the job reads, which any topic-only pairing here (~33,000 rows) breaks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from homefeed.config import DuckDBConfig
from homefeed.jobs.definitions import JOBS, day_start_ms, parameters, parse_date, render
from homefeed.jobs.engines.duckdb import DuckDBEngine
from homefeed.jobs.runner import register_inputs, run_job
from tests.jobs.fixtures import CONFIG, DAY, NEXT, LakeBuilder, ts

USERS, PINS, IMPRESSIONS_PER_USER, CLICKS_PER_USER = 100, 60, 5, 5
TOPICS = [f"topic{t:02d}" for t in range(30)]


def shared_topics_lake(root: Path) -> LakeBuilder:
    """Each user clicks pins of a few topics on DAY and sees pins of the same topics on NEXT."""
    b = LakeBuilder(root)
    for pin in range(PINS):
        topics = [TOPICS[pin % len(TOPICS)], TOPICS[(pin + 1) % len(TOPICS)]]
        b.add("pin_create", ts(DAY, 0, 5), user_id=1, pin_id=pin, board_id=1, topics=topics)
    imp = {"surface": "home_feed", "candidate_source": "popular", "model_version": "m-1"}
    for user in range(10, 10 + USERS):
        for k in range(CLICKS_PER_USER):
            b.add("click", ts(DAY, 12, k), user_id=user, pin_id=(user + 7 * k) % PINS)
        for k in range(IMPRESSIONS_PER_USER):
            pin = (user + 7 * k + 1) % PINS
            b.add("impression", ts(NEXT, 8, k), user_id=user, pin_id=pin,
                  request_id=f"r-{user}", position=k, **imp)  # fmt: skip
    b.add("board_create", "2026-11-23T05:00:00.000Z", user_id=1, board_id=99)
    b.persist()
    return b


def operator_rows(profile: dict[str, Any]) -> Iterator[tuple[str, int]]:
    stack = list(profile["operator"])
    while stack:
        node = stack.pop()
        yield node.get("type", "?"), int(node.get("intermediate_rows", 0))
        stack.extend(node.get("children", []))


def test_no_operator_grows_with_users_per_topic(tmp_path: Path) -> None:
    builder = shared_topics_lake(tmp_path)
    day, nxt = day_start_ms(parse_date(DAY)), day_start_ms(parse_date(NEXT))
    profile_path = tmp_path / "profile.json"
    with DuckDBEngine(DuckDBConfig(memory_limit="1GB", threads=2)) as engine:  # type: ignore[call-arg]
        for name in ("pin_stats_daily", "user_topic_interest"):
            run_job(engine, builder.lake, JOBS[name], day, CONFIG)
        spec = JOBS["training_examples"]
        register_inputs(engine, builder.lake, spec, nxt)
        engine.db.execute("PRAGMA enable_profiling = 'json'")
        engine.db.execute(f"PRAGMA profiling_output = '{profile_path}'")
        result = engine.query(render(spec, parameters(spec, nxt, CONFIG)))
    builder.close()
    events = PINS + USERS * (CLICKS_PER_USER + IMPRESSIONS_PER_USER)
    assert result.num_rows == USERS * IMPRESSIONS_PER_USER
    assert max(result.column("topic_affinity").to_pylist()) > 0  # the affinity join matched
    biggest = max(operator_rows(json.loads(profile_path.read_text())), key=lambda t: t[1])
    assert biggest[1] <= events, biggest
