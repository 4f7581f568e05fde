"""Following the log: events that arrive while the persister runs reach the lake promptly."""

import threading
import time

from homefeed.config import LocalLogConfig, PersisterConfig
from homefeed.events import EventLogger
from homefeed.lake.local import LocalLake
from homefeed.log.local import LocalLog
from homefeed.persister import Persister
from homefeed.testing.events import valid_event
from homefeed.testing.lake import read_event_table


def _rows(lake) -> int:
    return read_event_table(lake, "click").num_rows


def test_follow_persists_new_events_until_stopped(tmp_path):
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "log")))
    lake = LocalLake(tmp_path / "lake")
    logger = EventLogger(log, partitions=2)
    logger.log(valid_event("click", pin_id=0))
    logger.flush()
    config = PersisterConfig(batch_records=1000, poll_interval_s=0.1, flush_interval_s=0.5)
    persister = Persister(log, lake, config=config)
    stop = threading.Event()
    runner = threading.Thread(target=persister.run, kwargs={"follow": True, "stop": stop})
    runner.start()
    try:
        for wave in range(3):
            for i in range(50):
                logger.log(valid_event("click", pin_id=wave * 100 + i))
            logger.flush()
            expected = 1 + 50 * (wave + 1)
            deadline = time.monotonic() + 10
            while _rows(lake) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _rows(lake) == expected
    finally:
        stop.set()
        runner.join(10)
        logger.close()
    assert not runner.is_alive()
    assert persister.report.total_rows == 151
