import pytest

from homefeed.config import KafkaLogConfig, LocalLogConfig, PersisterConfig
from homefeed.events import EventLogger
from homefeed.log.kafka import KafkaLog
from homefeed.log.local import LocalLog
from homefeed.persister import Persister
from homefeed.testing.broker import TansuBroker
from tests.conftest import make_lake

# (log, lake): every log backend and every lake backend, without the full cross product.
BACKENDS = [
    ("local", "local"),
    pytest.param(("local", "s3"), marks=pytest.mark.s3, id="local-s3"),
    pytest.param(("kafka", "local"), marks=pytest.mark.kafka, id="kafka-local"),
]


@pytest.fixture(params=BACKENDS, ids=lambda p: "-".join(p) if isinstance(p, tuple) else p)
def backends(request):
    return request.param


@pytest.fixture
def event_log(backends, tmp_path):
    """The embedded log, or Kafka with a broker per test: the persister's topic names are
    fixed, so tests cannot share one broker."""
    if backends[0] == "local":
        yield LocalLog(LocalLogConfig(path=str(tmp_path / "log")))
        return
    with TansuBroker() as broker:
        log = KafkaLog(KafkaLogConfig(bootstrap_servers=broker.bootstrap_servers))
        yield log
        log.close()


@pytest.fixture
def lake(request, backends, tmp_path):
    return make_lake(request, tmp_path, backends[1])


@pytest.fixture
def persist(event_log, lake):
    def run(
        group: str = "persister", batch_records: int = 500, late_delay_minutes: float = 0.0, **kw
    ):
        config = PersisterConfig(
            group=group, batch_records=batch_records, late_delay_minutes=late_delay_minutes, **kw
        )
        return Persister(event_log, lake, config=config).run()

    return run


@pytest.fixture
def logger(event_log):
    with EventLogger(event_log, partitions=3) as logger:
        yield logger
