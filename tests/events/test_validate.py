from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.events.registry import SchemaRegistry
from homefeed.events.validate import EventValidator, Rejection
from homefeed.testing.events import valid_event

REGISTRY = SchemaRegistry()
VALIDATOR = EventValidator(REGISTRY, max_event_bytes=4096)


def test_valid_events_of_every_type_are_accepted_and_canonical():
    for event_type in REGISTRY.event_types:
        event = valid_event(event_type, event_time="2026-11-21T13:05:01.5+00:00")
        result = VALIDATOR.check(event)
        assert not isinstance(result, Rejection), result
        accepted, encoded = result
        assert accepted["event_time"] == "2026-11-21T13:05:01.500Z"
        assert orjson.loads(encoded) == accepted
        assert accepted["schema_version"] == 1 and accepted["event_id"]


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"event_type": "unicorn"}, "unknown_type", "event_type"),
        ({"pin_id": None}, "invalid_field", "pin_id"),
        ({"pin_id": "12"}, "invalid_field", "pin_id"),
        ({"pin_id": 3.0}, "invalid_field", "pin_id"),
        ({"pin_id": True}, "invalid_field", "pin_id"),
        ({"pin_id": -1}, "invalid_field", "pin_id"),
        ({"surface": "tv"}, "invalid_field", "surface"),
        ({"client": {"platform": "fax"}}, "invalid_field", "client.platform"),
        ({"colour": "red"}, "unknown_field", "colour"),
        ({"event_time": "yesterday"}, "bad_timestamp", "event_time"),
        ({"event_time": "2026-11-21T13:05:01"}, "bad_timestamp", "event_time"),
        ({"event_time": "2026-11-21T13:05:01+02:00"}, "bad_timestamp", "event_time"),
        ({"event_time": "1970-01-21T13:05:01Z"}, "bad_timestamp", "event_time"),
        ({"event_time": "2999-01-01T00:00:00Z"}, "bad_timestamp", "event_time"),
        ({"event_time": 1763730000}, "bad_timestamp", "event_time"),
    ],
)
def test_rejections_name_the_field_and_value(change, reason, field):
    event = valid_event("click") | change
    result = VALIDATOR.check(event)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field)
    assert field in result.message


def test_missing_field_is_named():
    event = valid_event("save")
    del event["board_id"]
    result = VALIDATOR.check(event)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == ("missing_field", "board_id")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"event_type": "click", "pad": "' + b"x" * 5000 + b'"}', "oversized"),
    ],
)
def test_raw_payload_rejections(raw, reason):
    result = VALIDATOR.parse(raw)
    assert isinstance(result, Rejection) and result.reason == reason


def test_dead_letter_keeps_the_raw_payload():
    import base64

    rejection = VALIDATOR.parse(b"\xff oops")
    assert isinstance(rejection, Rejection)
    doc = orjson.loads(rejection.dead_letter(b"\xff oops", "test"))
    assert base64.b64decode(doc["payload_b64"]) == b"\xff oops"
    assert doc["reason"] == "not_utf8" and doc["source"] == "test"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_never_raises_on_arbitrary_bytes(raw):
    result = VALIDATOR.parse(raw)
    assert isinstance(result, Rejection | tuple)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(REGISTRY.event_types)),
    st.sampled_from(
        ["user_id", "pin_id", "event_time", "surface", "client", "board_id", "position", "extra"]
    ),
    json_values,
)
def test_any_mutation_is_accepted_canonically_or_rejected_with_a_reason(event_type, field, value):
    event = valid_event(event_type) | {field: value}
    result = VALIDATOR.check(event)
    if isinstance(result, Rejection):
        assert result.reason and result.message
    else:
        accepted, encoded = result
        # Whatever is accepted parses back to the same event and has a canonical UTC time.
        assert orjson.loads(encoded) == accepted
        parsed = datetime.fromisoformat(accepted["event_time"])
        assert parsed.tzinfo is not None and parsed.utcoffset().total_seconds() == 0
        assert accepted["event_time"].endswith("Z")
        assert datetime(1990, 1, 1, tzinfo=UTC) <= parsed


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1991, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
    )
)
def test_any_utc_datetime_round_trips_to_millisecond_precision(when):
    result = VALIDATOR.check(valid_event("click", event_time=when.isoformat()))
    assert not isinstance(result, Rejection)
    back = datetime.fromisoformat(result[0]["event_time"])
    assert abs((back - when).total_seconds()) < 0.001


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(REGISTRY.event_types)),
    st.sampled_from(
        [
            "user_id",
            "pin_id",
            "surface",
            "client",
            "board_id",
            "position",
            "topics",
            "title",
            "action",
            "schema_version",
            "request_id",
            "extra",
        ]
    ),
    json_values,
)
def test_fast_check_never_accepts_what_the_full_validator_refuses(event_type, field, value):
    import fastjsonschema

    from homefeed.events.fastcheck import compile_check

    schema = REGISTRY.latest(event_type).document
    full = fastjsonschema.compile(schema, formats={"date-time": lambda _v: True})
    fast = compile_check(schema)
    event = valid_event(event_type, event_id="x", schema_version=1) | {field: value}
    try:
        full(event)
        full_ok = True
    except fastjsonschema.JsonSchemaValueException:
        full_ok = False
    if fast(event):
        assert full_ok
    # ...and the two agree except on JSON Schema's loose integers (3.0, True), which fast refuses.
    elif full_ok:
        assert any(isinstance(v, bool | float) for v in _leaves(event))


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value
