from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow.compute as pc

from homefeed.events import DEAD_LETTER_TOPIC
from homefeed.lake.layout import HOUR_MS
from homefeed.testing.events import valid_event
from homefeed.testing.lake import read_event_table

START = datetime(2026, 11, 20, 8, tzinfo=UTC)


def _at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def _log_events(logger, count: int, first_minute: float = 0, step_minutes: float = 0.5):
    """Clicks, saves and hides spread over hours; returns the accepted event ids by type."""
    ids: dict[str, set[str]] = {"click": set(), "save": set(), "hide": set()}
    kinds = ["click", "click", "save", "hide"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        event = valid_event(
            kind,
            user_id=i % 17,
            pin_id=i,
            event_id=f"e{first_minute}-{i}",
            event_time=_at(first_minute + i * step_minutes),
        )
        assert logger.log(event) is None
        ids[kind].add(event["event_id"])
    logger.flush()
    return ids


def _assert_exactly_once(lake, event_log, ids):
    for kind, expected in ids.items():
        table = read_event_table(lake, kind)
        assert table.num_rows == len(expected), kind
        assert set(table.column("event_id").to_pylist()) == expected
        keys = list(
            zip(
                table.column("_partition").to_pylist(),
                table.column("_offset").to_pylist(),
                strict=True,
            )
        )
        assert len(set(keys)) == len(keys), f"duplicate offsets in {kind}"
        ends = {i.partition: i.end_offset for i in event_log.partitions(f"events.{kind}")}
        assert Counter(p for p, _ in keys) == Counter({p: e for p, e in ends.items() if e})


def test_every_event_lands_once_in_its_event_hour(logger, persist, lake, event_log):
    ids = _log_events(logger, 2000)
    report = persist()
    assert report.total_rows == 2000
    _assert_exactly_once(lake, event_log, ids)
    table = read_event_table(lake, "click")
    hours = pc.floor_temporal(table.column("event_time"), unit="hour")
    labels = [f"{h:%Y-%m-%d}T{h:%H}" for h in hours.to_pylist()]
    paths = [
        f"{d}T{int(h):02d}"
        for d, h in zip(table.column("dt").to_pylist(), table.column("hr").to_pylist(), strict=True)
    ]
    assert labels == paths


def test_a_second_run_with_nothing_new_writes_nothing(logger, persist):
    _log_events(logger, 300)
    persist()
    assert persist().total_rows == 0


def test_tails_grow_into_whole_batches_and_replays_cut_identically(
    logger, persist, lake, event_log
):
    ids = _log_events(logger, 1300)  # batches of 500: the tail of each partition is partial
    persist()
    more = _log_events(logger, 900, first_minute=650)
    report = persist()
    assert report.reread_records > 0  # the tails were read again and rewritten whole
    for kind in ids:
        ids[kind] |= more[kind]
    _assert_exactly_once(lake, event_log, ids)
    files_before = {f.path: f.size for f in lake.list("events")}
    # A new group replays everything from offset 0 into the same lake: same cuts, same files.
    replay = persist(group="replay")
    assert replay.total_rows == 2200
    _assert_exactly_once(lake, event_log, ids)
    assert {f.path for f in lake.list("events")} == set(files_before)


def test_hours_are_marked_complete_and_late_events_counted(logger, persist, lake):
    _log_events(logger, 400, step_minutes=1)  # 08:00 to 14:40
    persist(late_delay_minutes=10)
    markers = sorted(f.path for f in lake.list("events/click") if f.path.endswith("_SUCCESS"))
    # Watermark 14:39; with a 10 minute delay, hours up to 13:00 are complete.
    assert [m.split("/")[2:4] for m in markers] == [
        ["dt=2026-11-20", f"hr={h:02d}"] for h in range(8, 14)
    ]
    assert lake.exists(
        "events/board_create/dt=2026-11-20/hr=10/_SUCCESS"
    )  # no data is complete too
    assert logger.log(valid_event("click", event_id="late-1", event_time=_at(65))) is None  # 09:05
    logger.flush()
    report = persist(late_delay_minutes=10)
    assert report.late_rows == 1
    marker = orjson.loads(lake.get_bytes("events/click/dt=2026-11-20/hr=09/_SUCCESS"))
    assert marker["late_rows"] == 1 and "updated_at_ms" in marker
    assert "late-1" in read_event_table(lake, "click").column("event_id").to_pylist()


def test_records_that_bypassed_the_sdk_are_dead_lettered_not_lost(logger, persist, lake, event_log):
    _log_events(logger, 40)
    with event_log.producer() as producer:
        producer.send("events.click", b'{"event_type": "click", "user_id": "x"}', key=b"1")
        producer.send("events.click", b"\xff not json", key=b"1")
        producer.send(
            "events.click", orjson.dumps(valid_event("save", event_id="wrong-topic")), key=b"1"
        )
    report = persist()
    assert report.dead_lettered == 3
    with event_log.consumer("check", [DEAD_LETTER_TOPIC]) as c:
        dead: list = []
        while len(dead) < 3 and (batch := c.poll(100, 5.0)):
            dead += [orjson.loads(r.value) for r in batch]
    assert sorted(d["reason"] for d in dead) == ["missing_field", "not_utf8", "wrong_topic"]
    assert all(d["source"].startswith("persister:events.click") for d in dead)
    assert read_event_table(lake, "click").num_rows == 20


def test_hour_boundaries_split_a_batch(logger, persist, lake):
    logger.log(valid_event("click", event_id="a", event_time="2026-11-20T08:59:59.999Z"))
    logger.log(valid_event("click", event_id="b", event_time="2026-11-20T09:00:00.000Z"))
    logger.flush()
    persist()
    table = read_event_table(lake, "click")
    by_id = dict(
        zip(table.column("event_id").to_pylist(), table.column("hr").to_pylist(), strict=True)
    )
    assert by_id == {"a": 8, "b": 9}
    assert HOUR_MS == 3_600_000


def test_changing_batch_records_between_runs_keeps_exactly_once(logger, persist, lake, event_log):
    ids = _log_events(logger, 2600)  # ~430 clicks per partition: tails between 300 and 500
    persist(batch_records=500)  # leaves partial tails named by 500-aligned starts
    more = _log_events(logger, 900, first_minute=1300)
    persist(batch_records=300)  # a new alignment must not rewrite the old tails elsewhere
    later = _log_events(logger, 500, first_minute=1800)
    persist(batch_records=300)  # ...nor in the runs after the change
    for kind in ids:
        ids[kind] |= more[kind] | later[kind]
    _assert_exactly_once(lake, event_log, ids)
