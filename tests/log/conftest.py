"""Event log fixtures: every backend behind one ``event_log`` fixture, and a shared broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from homefeed.config import KafkaLogConfig, LocalLogConfig
from homefeed.log.base import EventLog
from homefeed.testing.broker import TansuBroker

BACKENDS = ["local", pytest.param("kafka", marks=pytest.mark.kafka)]


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[TansuBroker]:
    """One in-memory broker for the session; tests keep apart by unique topic and group names."""
    with TansuBroker() as broker:
        yield broker


@pytest.fixture(params=BACKENDS)
def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    log: EventLog
    if request.param == "local":
        from homefeed.log.local import LocalLog

        log = LocalLog(LocalLogConfig(path=str(tmp_path / "log")))
    else:
        from homefeed.log.kafka import KafkaLog

        broker: TansuBroker = request.getfixturevalue("tansu_broker")
        log = KafkaLog(KafkaLogConfig(bootstrap_servers=broker.bootstrap_servers))
    yield log
    log.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("events")`` -> ``"events-1f3a..."``: names no other test on the broker uses."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:12]}"
