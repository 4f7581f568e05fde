import pytest
from homefeed.lake.local import LocalLake

from homefeed.config import LocalLogConfig, PersisterConfig
from homefeed.events import EventLogger
from homefeed.log.local import LocalLog
from homefeed.persister import Persister


@pytest.fixture
def local_log(tmp_path):
    return LocalLog(LocalLogConfig(path=str(tmp_path / "log")))


@pytest.fixture
def lake(tmp_path):
    return LocalLake(tmp_path / "lake")


@pytest.fixture
def persist(local_log, lake):
    def run(
        group: str = "persister", batch_records: int = 500, late_delay_minutes: float = 0.0, **kw
    ):
        config = PersisterConfig(
            group=group, batch_records=batch_records, late_delay_minutes=late_delay_minutes, **kw
        )
        return Persister(local_log, lake, config=config).run()

    return run


@pytest.fixture
def logger(local_log):
    with EventLogger(local_log, partitions=3) as logger:
        yield logger
