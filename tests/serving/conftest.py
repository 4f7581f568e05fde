"""Fixtures of the feed API tests: a SimpleBackend on a small simulated world, a local log."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from homefeed.config import LocalLogConfig, ModelsConfig, RankerConfig, SourceConfig
from homefeed.events.sdk import EventLogger
from homefeed.log.base import EventLog
from homefeed.log.local import LocalLog
from homefeed.models.bundle import ModelBundle
from homefeed.models.data import TrainingData
from homefeed.models.pipeline import train_bundle
from homefeed.models.sources import CandidateSource, make_source
from homefeed.serving.api.app import create_app
from homefeed.serving.api.backend import SimpleBackend
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.testing.models import simulated_training_data

with warnings.catch_warnings():
    # starlette.testclient warns once, at import, that it prefers httpx2 to httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

SOURCES = ("following", "pixie", "trending")  # the sources that fit in well under a second


@pytest.fixture(scope="session")
def data() -> TrainingData:
    return simulated_training_data()


@pytest.fixture(scope="session")
def bundle(data: TrainingData) -> ModelBundle:
    """A small trained bundle (following and trending, a 5-round ranker) on ``data``."""
    config = ModelsConfig(
        sources={"following": SourceConfig(k=60), "trending": SourceConfig(k=60)},
        ranker=RankerConfig(rounds=5, min_data_in_leaf=20, learning_rate=0.1),
    )
    return train_bundle(data, config)


@pytest.fixture(scope="session")
def sources(data: TrainingData) -> dict[str, CandidateSource]:
    fitted = {}
    for name in SOURCES:
        fitted[name] = source = make_source(name)
        source.fit(data)
    return fitted


@pytest.fixture
def backend(data: TrainingData, sources: dict[str, CandidateSource]) -> SimpleBackend:
    return SimpleBackend(data, sources, candidates_per_source=200)


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[EventLog]:
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "log"), fsync="never"))
    yield log
    log.close()


@pytest.fixture
def logger(event_log: EventLog) -> Iterator[EventLogger]:
    """A logger on a fresh log, for tests that read back what was logged."""
    with EventLogger(event_log, source="feed-api", on_reject=lambda _: None) as logger:
        yield logger


@pytest.fixture(scope="module")
def shared_logger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventLogger]:
    """One logger per module for tests that do not read the log (creating topics is slow)."""
    path = tmp_path_factory.mktemp("shared-log")
    log = LocalLog(LocalLogConfig(path=str(path), fsync="never"))
    with EventLogger(log, source="feed-api", on_reject=lambda _: None) as logger:
        yield logger
    log.close()


@pytest.fixture
def config() -> FeedServiceConfig:
    return FeedServiceConfig(session_items=120, max_limit=50)  # type: ignore[call-arg]


@pytest.fixture
def client(
    backend: SimpleBackend, shared_logger: EventLogger, config: FeedServiceConfig
) -> TestClient:
    return TestClient(create_app(backend, shared_logger, config))


def read_topic(event_log: EventLog, topic: str) -> list[dict]:
    """Every record of ``topic``, decoded, in partition then offset order."""
    with event_log.consumer(f"check-{topic}", [topic]) as consumer:
        out: list[dict] = []
        while batch := consumer.poll(10_000, 0.05):
            out += [orjson.loads(r.value) for r in batch]
    return out
