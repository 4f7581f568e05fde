import subprocess
import sys
import time

import orjson
import pytest

from homefeed.config import LocalLogConfig, SdkConfig
from homefeed.events import DEAD_LETTER_TOPIC, EventLogger, RejectedEventError
from homefeed.log.local import LocalLog
from homefeed.testing.events import valid_event


@pytest.fixture
def local_log(tmp_path):
    return LocalLog(LocalLogConfig(path=str(tmp_path / "log")))


def _records(log, topic):
    with log.consumer(f"check-{topic}", [topic]) as c:
        out = []
        while batch := c.poll(10_000, 0.05):
            out += batch
    return out


def test_accepted_events_reach_their_topic_keyed_by_user(local_log):
    with EventLogger(local_log) as logger:
        for i in range(50):
            assert logger.log(valid_event("click", user_id=i % 5, pin_id=i)) is None
    records = _records(local_log, "events.click")
    assert len(records) == 50
    by_user: dict[bytes, set[int]] = {}
    for r in records:
        by_user.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_user.values())  # one user, one partition
    for user_records in ([r for r in records if r.key == b"3"],):
        assert [orjson.loads(r.value)["pin_id"] for r in user_records] == [
            i for i in range(50) if i % 5 == 3
        ]


def test_rejections_go_to_dead_letters_and_are_returned(local_log):
    seen = []
    with EventLogger(local_log, on_reject=seen.append) as logger:
        rejection = logger.log(valid_event("save", board_id="kitchen"))
        assert rejection is not None and rejection.field == "board_id"
        assert logger.log_raw(b"\x00\xff") is not None
        assert logger.log(valid_event("save")) is None
    assert logger.accepted == 1 and sum(logger.rejected.values()) == 2 and len(seen) == 2
    dead = [orjson.loads(r.value) for r in _records(local_log, DEAD_LETTER_TOPIC)]
    assert [d["reason"] for d in dead] == ["invalid_field", "not_utf8"]
    assert dead[0]["field"] == "board_id" and dead[0]["value"] == "'kitchen'"


def test_strict_logger_raises_instead(local_log):
    with (
        EventLogger(local_log, strict=True) as logger,
        pytest.raises(RejectedEventError, match="pin_id"),
    ):
        logger.log(valid_event("click", pin_id="x"))


def test_linger_sends_without_an_explicit_flush(local_log):
    logger = EventLogger(local_log, config=SdkConfig(linger_ms=20))
    logger.log(valid_event("hide"))
    deadline = time.monotonic() + 5
    while not _records(local_log, "events.hide") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_records(local_log, "events.hide")) == 1
    logger.close()


def test_events_are_flushed_at_interpreter_exit(tmp_path):
    script = f"""
from homefeed.config import LocalLogConfig, SdkConfig
from homefeed.events import EventLogger
from homefeed.log.local import LocalLog
from homefeed.testing.events import valid_event
logger = EventLogger(LocalLog(LocalLogConfig(path={str(tmp_path / "log")!r})),
                     config=SdkConfig(linger_ms=60000, batch_size=100000))
for i in range(123):
    logger.log(valid_event("closeup", pin_id=i))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert (
        len(_records(LocalLog(LocalLogConfig(path=str(tmp_path / "log"))), "events.closeup")) == 123
    )
