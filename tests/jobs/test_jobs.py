"""Every job's output against hand-computed expectations, on each engine, then parity: both
engines produce identical tables from the same input (sorted; floats to 1e-9)."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from homefeed.jobs.definitions import JOBS, day_start_ms, parse_date
from homefeed.jobs.runner import run_job
from homefeed.lake.layout import parse_hour
from homefeed.lake.local import LocalLake
from tests.jobs.fixtures import (
    CONFIG,
    DAY,
    NEXT,
    LakeBuilder,
    normalise,
    read_output,
    standard_events,
)

# Filled by test_jobs_match_expectations for each engine, compared by test_engines_agree.
RESULTS: dict[str, dict[str, list[dict[str, Any]]]] = {}


@pytest.fixture(scope="module")
def input_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs-input")
    builder = LakeBuilder(root)
    standard_events(builder)
    builder.persist()
    builder.close()
    return root / "lake"


def copy_lake(src: Path, dst: Path) -> LocalLake:
    shutil.copytree(src, dst / "lake")
    return LocalLake(dst / "lake")


def run_all(engine: Any, lake: LocalLake) -> dict[str, list[dict[str, Any]]]:
    """Hour 13 and both days (the second day only where its previous day is needed)."""
    out: dict[str, list[dict[str, Any]]] = {}
    day, nxt = day_start_ms(parse_date(DAY)), day_start_ms(parse_date(NEXT))
    steps = [(n, parse_hour(f"{DAY}T13")) for n, s in JOBS.items() if s.grain == "hourly"]
    steps += [(n, day) for n, s in JOBS.items() if s.grain == "daily"]
    steps += [("follow_graph", nxt), ("training_examples", nxt)]
    for name, start in steps:
        record = run_job(engine, lake, JOBS[name], start, CONFIG)
        assert record.status == "ok"
        table = read_output(lake, name, record.partition)
        key = f"{name}/{record.partition}"
        out[key] = normalise(table, JOBS[name].sort_key)
    return out


def decay(hours_before_midnight: float) -> float:
    return float(0.5 ** (hours_before_midnight / 24 / CONFIG.interest_half_life_days))


def test_jobs_match_expectations(engine: Any, tmp_path: Path, input_lake: Path) -> None:
    out = run_all(engine, copy_lake(input_lake, tmp_path))
    RESULTS[engine.name] = out
    h13, d1, d2 = f"dt={DAY}/hr=13", f"dt={DAY}", f"dt={NEXT}"

    assert out[f"pin_engagement_hourly/{h13}"] == [
        dict(
            pin_id=11,
            impressions=2,
            clicks=1,
            closeups=0,
            saves=1,
            hides=0,
            click_rate=0.5,
            save_rate=0.5,
        ),
        dict(
            pin_id=12,
            impressions=2,
            clicks=1,
            closeups=1,
            saves=1,
            hides=0,
            click_rate=0.5,
            save_rate=0.5,
        ),
    ]
    zero = dict(clicks=0, closeups=0, saves=0, hides=0, follows=0, pin_creates=0)
    assert out[f"user_activity_hourly/{h13}"] == [
        {
            **zero,
            "user_id": 7,
            "impressions": 2,
            "clicks": 1,
            "closeups": 1,
            "saves": 1,
            "sessions": 1,
        },
        {**zero, "user_id": 8, "impressions": 1, "clicks": 1, "saves": 1, "sessions": 1},
        {**zero, "user_id": 9, "impressions": 1, "sessions": 1},
    ]
    sp = out[f"surface_position_hourly/{h13}"]
    assert [
        (r["surface"], r["position_bucket"], r["impressions"], r["ctr"], r["save_rate"]) for r in sp
    ] == [
        ("home_feed", "00", 1, 1.0, 1.0),  # user 7 clicked and saved pin 11 in the hour
        ("home_feed", "01-03", 1, 0.0, 0.0),
        ("home_feed", "04-09", 1, 0.0, 0.0),  # user 8's click on pin 11 came at 16:00
        ("search", "25+", 1, 0.0, 0.0),
    ]

    # Day totals: 4 impressions, 3 clicks, 2 saves, 1 hide; prior of 10 impressions.
    m, g_click, g_save, g_hide = 10.0, 3 / 4, 2 / 4, 1 / 4
    assert out[f"pin_stats_daily/{d1}"] == normalise_rows(
        [
            dict(
                pin_id=11,
                impressions=2,
                clicks=2,
                saves=1,
                hides=0,
                click_rate=(2 + m * g_click) / 12,
                save_rate=(1 + m * g_save) / 12,
                hide_rate=(0 + m * g_hide) / 12,
            ),
            dict(
                pin_id=12,
                impressions=2,
                clicks=1,
                saves=1,
                hides=1,
                click_rate=(1 + m * g_click) / 12,
                save_rate=(1 + m * g_save) / 12,
                hide_rate=(1 + m * g_hide) / 12,
            ),
        ]
    )

    # Weights click 1, closeup 0.5, save 3, decayed from each event to midnight.
    u7_trip = 1 * decay(10 + 50 / 60) + 3 * decay(10 + 40 / 60)
    u8_art = 1 * decay(10 + 10 / 60) + 3 * decay(10 + 5 / 60)
    assert out[f"user_topic_interest/{d1}"] == normalise_rows(
        [
            dict(user_id=7, topic="art", weight=0.5 * decay(10.5)),
            dict(user_id=7, topic="food", weight=u7_trip),
            dict(user_id=7, topic="travel", weight=u7_trip),
            dict(user_id=8, topic="art", weight=u8_art),
            dict(user_id=8, topic="food", weight=decay(8)),
            dict(user_id=8, topic="travel", weight=decay(8)),
        ]
    )

    assert out[f"pin_pin_coengagement/{d1}"] == [dict(pin_a=11, pin_b=12, users=1)]
    assert out[f"pin_board_edges/{d1}"] == [
        dict(pin_id=11, board_id=3, saves=0, created=1, weight=1.0),
        dict(pin_id=11, board_id=5, saves=1, created=0, weight=1.0),
        dict(pin_id=12, board_id=4, saves=1, created=1, weight=2.0),
    ]

    follows = [
        (r["user_id"], r["target_type"], r["target_id"], _utc(r["followed_at"]))
        for r in out[f"follow_graph/{d1}"]
    ]
    assert follows == [(7, "user", 8, "2026-11-21T11:00")]  # board 3 was unfollowed at 15:00
    follows = [(r["user_id"], r["target_type"], r["target_id"]) for r in out[f"follow_graph/{d2}"]]
    assert follows == [(7, "user", 8), (9, "board", 4)]  # carried over, plus the new one

    labels = {
        (r["user_id"], r["pin_id"]): (r["label_click"], r["label_save"], r["label_hide"])
        for r in out[f"training_examples/{d1}"]
    }
    assert labels == {
        (7, 11): (1, 1, 0),
        (7, 12): (0, 0, 1),  # hidden at 14:10, inside the 2 h window
        (8, 11): (0, 0, 0),  # clicked at 16:00, after the window closed at 15:40
        (9, 12): (0, 0, 0),
    }
    [row] = out[f"training_examples/{d2}"]
    assert row["pin_impressions_prev_day"] == 2
    assert row["pin_click_rate_prev_day"] == round((2 + m * g_click) / 12, 9)
    assert (
        row["user_impressions_before"],
        row["user_clicks_before"],
        row["user_saves_before"],
        row["user_hides_before"],
    ) == (2, 1, 1, 1)
    assert row["topic_affinity"] == round(2 * u7_trip, 9)  # pin 11: travel + food


def test_engines_agree() -> None:
    """Runs after the parametrised test above has filled RESULTS for every engine."""
    assert len(RESULTS) >= 2, f"parity needs both engines, ran only {sorted(RESULTS)}"
    (first, a), *others = sorted(RESULTS.items())
    for name, b in others:
        assert a.keys() == b.keys()
        for key in a:
            assert _comparable(a[key]) == _comparable(b[key]), f"{key}: {first} != {name}"


def normalise_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def _utc(value: datetime) -> str:
    offset = value.utcoffset() or timedelta(0)
    return f"{(value - offset).replace(tzinfo=None):%Y-%m-%dT%H:%M}"


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _utc(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows]
