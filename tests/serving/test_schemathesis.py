"""Schemathesis against the OpenAPI document: no input gives a 5xx or breaks the spec."""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from homefeed.config import LocalLogConfig
from homefeed.events.sdk import EventLogger
from homefeed.log.local import LocalLog
from homefeed.models.sources import make_source
from homefeed.serving.api.app import create_app
from homefeed.serving.api.backend import SimpleBackend
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.testing.models import simulated_training_data


def _app():
    # Built at import: schemathesis reads the schema when the module is collected.
    data = simulated_training_data()
    trending = make_source("trending")
    trending.fit(data)
    backend = SimpleBackend(data, {"trending": trending}, candidates_per_source=100)
    log_dir = tempfile.mkdtemp(prefix="homefeed-schemathesis-")
    event_log = LocalLog(LocalLogConfig(path=log_dir, fsync="never"))
    logger = EventLogger(event_log, on_reject=lambda _: None)
    config = FeedServiceConfig(session_items=60, max_body_bytes=64 * 1024)  # type: ignore[call-arg]
    return create_app(backend, logger, config)


# A cursor is any string to the schema, but only the ones this service issued are valid: a
# schema-valid cursor may rightly get 400 (not ours) or 410 (expired). The schema cannot say
# "carries our checksum", so the positive-data check is told, for this operation only.
CONFIG = SchemathesisConfig.from_str(
    """
[[operations]]
include-path = "/v1/users/{user_id}/feed"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "410"]
"""
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case):
    case.call_and_validate()
