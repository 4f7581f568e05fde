"""The demo end to end on a tiny world: every stage runs through the real pipeline, and the
A/B report compares the five feeds with a sample-ratio check."""

from __future__ import annotations

import numpy as np
import pytest

from homefeed.config import HomefeedConfig
from homefeed.demo.run import ARMS, DemoSize, run_demo

TINY = DemoSize(users=150, pins=1500, days=3, extra_hours=6, hourly_hours=2, job_days=2,
                ab_hours=6)  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    said: list[str] = []
    out = run_demo(HomefeedConfig(), TINY, str(tmp_path_factory.mktemp("demo")), said.append)
    return out, said


def test_every_stage_runs_and_reports_where_the_data_went(result):
    out, said = result
    assert list(out.timings) == ["simulate + log", "persist", "jobs", "train + deploy",
                                 "experiment", "persist + report from the lake"]  # fmt: skip
    assert out.events > 10_000 and out.model_version == "v0001"
    text = "\n".join(said)
    assert "events.dead_letter" in text and "rows persisted" in text and "promoted" in text


def test_the_ab_compares_all_five_feeds_on_hashed_arms(result):
    out, _ = result
    report = out.ab.report
    assert report.variants == list(ARMS) and report.control == "chronological"
    assert sum(report.users.values()) == TINY.users
    assert report.srm is not None and not report.srm.mismatch
    for arm in ARMS:
        assert out.ab.sessions[arm] > 0
        saves = out.ab.per_user[arm]["saves"]
        assert len(saves) == report.users[arm] and np.all(saves >= 0)
    # Feeds that model the user earn more saves than the chronological feed of followees.
    means = {arm: report.summaries["saves"][arm].mean for arm in ARMS}
    assert means["gbdt"] > means["chronological"]


def test_the_lake_report_of_the_experiment_agrees_with_the_simulator(result):
    out, _ = result
    lake, memory = out.lake_report, out.ab.report
    assert lake.users == memory.users  # every user exposed, through the SDK, to the lake
    for metric in ("saves", "clicks", "hides", "impressions"):
        for arm in ARMS:
            assert lake.summaries[metric][arm].mean == pytest.approx(
                memory.summaries[metric][arm].mean
            ), (metric, arm)
