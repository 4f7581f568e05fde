"""The feed API through HTTP (TestClient): pages, errors, pagination, events, impressions."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from homefeed.events.registry import DEAD_LETTER_TOPIC
from homefeed.models.data import Action, Follows
from homefeed.serving.api.app import create_app, openapi_document
from homefeed.serving.api.backend import FeedBackend, SimpleBackend
from homefeed.serving.api.bundle_backend import BundleBackend
from homefeed.serving.api.session import Cursor, CursorCodec, CursorError, SessionStore
from homefeed.testing.events import valid_event
from tests.serving.conftest import TestClient, read_topic

NEW_USER = 10**12  # follows someone, has done nothing yet


def _active_user(data) -> int:
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    return int(users[np.argmax(counts)])


def _walk(client: TestClient, user: int, limit: int) -> list[dict]:
    pages, cursor = [], None
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = client.get(f"/v1/users/{user}/feed", params=params)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages


def test_backend_satisfies_the_protocol(backend):
    assert isinstance(backend, FeedBackend)


def test_feed_page_lists_ranked_pins_with_their_sources(client, data, sources):
    body = client.get(f"/v1/users/{_active_user(data)}/feed").json()
    assert len(body["items"]) == 25 and body["next_cursor"]
    assert [i["position"] for i in body["items"]] == list(range(25))
    assert {i["source"] for i in body["items"]} <= set(sources)
    assert len({i["source"] for i in body["items"]}) > 1, "a blend, not one source"
    assert body["model_version"].startswith("simple-") and body["request_id"]
    known = set(data.pins.pin_id.tolist())
    assert all(i["pin_id"] in known and len(i["topics"]) == 1 for i in body["items"])


def test_pages_never_repeat_and_positions_continue(client, data, config):
    pages = _walk(client, _active_user(data), limit=25)
    items = [i for page in pages for i in page["items"]]
    pins = [i["pin_id"] for i in items]
    assert len(pins) == len(set(pins)) == config.session_items
    assert [i["position"] for i in items] == list(range(len(items)))
    assert len({p["request_id"] for p in pages}) == len(pages)


def test_feed_respects_quotas_and_topic_runs(client, data, config):
    items = [i for p in _walk(client, _active_user(data), limit=50) for i in p["items"]]
    trending = sum(i["source"] == "trending" for i in items)
    assert trending <= int(config.source_quotas["trending"] * config.session_items)
    topics = [i["topics"][0] for i in items]
    for j in range(2, len(topics)):
        if topics[j] == topics[j - 1] == topics[j - 2]:
            # Only once the session holds nothing else (blending diversifies what it selected).
            assert set(topics[j:]) == {topics[j]}, f"3 pins of {topics[j]} in a row at {j}"


def test_hidden_pins_are_never_served(client, data):
    eng = data.engagements
    hiders, counts = np.unique(eng.user_id[eng.action == Action.HIDE], return_counts=True)
    user = int(hiders[np.argmax(counts)])
    hidden = set(eng.pin_id[(eng.user_id == user) & (eng.action == Action.HIDE)].tolist())
    served = {i["pin_id"] for p in _walk(client, user, 50) for i in p["items"]}
    assert hidden and not served & hidden


def test_a_new_session_skips_pins_already_served(client, data):
    user = _active_user(data)
    first = {i["pin_id"] for i in client.get(f"/v1/users/{user}/feed").json()["items"]}
    again = {i["pin_id"] for i in client.get(f"/v1/users/{user}/feed").json()["items"]}
    assert first and not first & again


def test_user_without_history_gets_trending(data, sources, shared_logger, config):
    follows = data.follows
    extra = Follows(
        np.append(follows.user_id, NEW_USER),
        np.append(follows.target_type, np.int8(0)),
        np.append(follows.target_id, follows.target_id[0]),
    )
    backend = SimpleBackend(replace(data, follows=extra), {"trending": sources["trending"]})
    client = TestClient(create_app(backend, shared_logger, config))
    response = client.get(f"/v1/users/{NEW_USER}/feed")
    assert response.status_code == 200
    assert {i["source"] for i in response.json()["items"]} == {"trending"}
    assert len(response.json()["items"]) == 25
    assert client.get(f"/v1/users/{NEW_USER}").json()["cold_start"] is True


def test_unknown_user_is_404_naming_the_id(client):
    for path in ("/v1/users/987654321/feed", "/v1/users/987654321"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_user"
        assert response.json()["field"] == "user_id" and response.json()["value"] == "987654321"


@pytest.mark.parametrize("limit", ["0", "-3", "51", "ten", "1e3"])
def test_bad_limit_is_422_naming_parameter_and_value(client, data, limit):
    response = client.get(f"/v1/users/{_active_user(data)}/feed", params={"limit": limit})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "limit" and limit in body["value"] and body["error"]


def test_bad_user_id_is_422(client):
    response = client.get("/v1/users/-1/feed")
    assert response.status_code == 422 and response.json()["field"] == "user_id"


@pytest.mark.parametrize("cursor", ["", "abc", "!!!!", "A" * 38, "x" * 500, "é"])
def test_malformed_cursor_is_400(client, data, cursor):
    response = client.get(f"/v1/users/{_active_user(data)}/feed", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_cursor" and response.json()["field"] == "cursor"


def test_tampered_or_foreign_cursor_is_400(client, data):
    user = _active_user(data)
    cursor = client.get(f"/v1/users/{user}/feed").json()["next_cursor"]
    # A middle character: the last one of base64 may carry only padding bits.
    mid = len(cursor) // 2
    flipped = cursor[:mid] + ("A" if cursor[mid] != "A" else "B") + cursor[mid + 1 :]
    assert client.get(f"/v1/users/{user}/feed", params={"cursor": flipped}).status_code == 400
    other = int(data.engagements.user_id[data.engagements.user_id != user][0])
    response = client.get(f"/v1/users/{other}/feed", params={"cursor": cursor})
    assert response.status_code == 400 and "another user" in response.json()["message"]


def test_expired_cursor_is_410(backend, shared_logger, config, data):
    client = TestClient(
        create_app(backend, shared_logger, config.model_copy(update={"session_ttl_s": 0.01}))
    )
    user = _active_user(data)
    cursor = client.get(f"/v1/users/{user}/feed").json()["next_cursor"]
    time.sleep(0.05)
    response = client.get(f"/v1/users/{user}/feed", params={"cursor": cursor})
    assert response.status_code == 410 and response.json()["error"] == "cursor_expired"


@pytest.mark.parametrize("threads", [0, 2], ids=["on-the-loop", "on-threads"])
def test_impressions_are_logged_for_every_served_pin(
    backend, config, data, logger, event_log, threads
):
    config = config.model_copy(update={"feed_threads": threads})
    client = TestClient(create_app(backend, logger, config))
    user = _active_user(data)
    pages = _walk(client, user, 40)
    logger.flush()
    logged = read_topic(event_log, "events.impression")
    served = [
        (p["request_id"], i["pin_id"], i["position"], i["source"])
        for p in pages
        for i in p["items"]
    ]
    got = [(e["request_id"], e["pin_id"], e["position"], e["candidate_source"]) for e in logged]
    assert sorted(got) == sorted(served), "one impression per served pin, nothing else"
    assert all(e["surface"] == "home_feed" and e["user_id"] == user for e in logged)
    assert {e["model_version"] for e in logged} == {pages[0]["model_version"]}
    assert not read_topic(event_log, DEAD_LETTER_TOPIC)


def test_events_are_validated_per_index_and_dead_lettered(backend, config, logger, event_log):
    client = TestClient(create_app(backend, logger, config))
    events = [
        valid_event("click", user_id=1, pin_id=2),
        valid_event("save", board_id="kitchen"),
        {"event_type": "nope"},
        7,
        valid_event("hide", user_id=3, pin_id=4),
    ]
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["reason"], r["field"]) for r in body["rejected"]] == [
        (1, "invalid_field", "board_id"),
        (2, "unknown_type", "event_type"),
        (3, "not_object", None),
    ]
    assert body["rejected"][0]["value"] == "'kitchen'"
    logger.flush()
    assert [e["pin_id"] for e in read_topic(event_log, "events.click")] == [2]
    dead = read_topic(event_log, DEAD_LETTER_TOPIC)
    assert sorted(d["reason"] for d in dead) == ["invalid_field", "not_object", "unknown_type"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"events": 3}', "events"),
        (b'{"evnts": []}', "events"),
        (b'{"events": [], "extra": 1}', "extra"),
        (b"[1, 2]", "body"),
        (b'{"events": [', "body"),
    ],
)
def test_malformed_batch_is_400_naming_the_field(client, body, field):
    response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_body" and response.json()["field"] == field


def test_too_many_events_is_400(backend, shared_logger, config):
    client = TestClient(
        create_app(backend, shared_logger, config.model_copy(update={"max_events_per_request": 2}))
    )
    response = client.post("/v1/events", json={"events": [{}, {}, {}]})
    assert response.status_code == 400 and response.json()["error"] == "too_many_events"


def test_body_over_the_limit_is_413_with_or_without_length(client, config):
    big = b'{"events": ["' + b"x" * config.max_body_bytes + b'"]}'
    response = client.post("/v1/events", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["field"] == "body"

    def chunks():
        for _ in range(big.__len__() // 65536 + 1):
            yield b"x" * 65536

    response = client.post("/v1/events", content=chunks())
    assert response.status_code == 413


def test_pin_and_user_lookups(client, data):
    pin = int(data.pins.pin_id[5])
    body = client.get(f"/v1/pins/{pin}").json()
    assert body["pin_id"] == pin and body["topics"]
    assert client.get("/v1/pins/99999999").status_code == 404
    user = client.get(f"/v1/users/{_active_user(data)}").json()
    assert user["engagements"] > 0 and user["top_topics"] and user["cold_start"] is False


def test_health_and_metrics(client, data):
    client.get(f"/v1/users/{_active_user(data)}/feed")
    client.get("/v1/users/987654321/feed")
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    for stage in ("candidates", "features", "rank", "blend", "log"):
        assert f'homefeed_feed_stage_seconds_count{{stage="{stage}"}} 1.0' in text
    assert 'homefeed_feed_candidates_total{source="trending"}' in text
    assert 'homefeed_http_errors_total{code="404",route="/v1/users/{user_id}/feed"} 1.0' in text


def test_openapi_document_is_precise():
    spec = openapi_document()
    feed = spec["paths"]["/v1/users/{user_id}/feed"]["get"]
    assert set(feed["responses"]) == {"200", "400", "404", "410", "422"}
    assert feed["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
    limit = next(p for p in feed["parameters"] if p["name"] == "limit")
    assert limit["schema"]["minimum"] == 1 and limit["schema"]["maximum"] == 100
    assert "413" in spec["paths"]["/v1/events"]["post"]["responses"]
    assert set(spec["components"]["schemas"]["FeedItem"]["required"]) == {
        "pin_id",
        "position",
        "source",
        "score",
        "topics",
    }


# Sessions and cursors below HTTP.


def test_cursor_round_trips_and_refuses_edits():
    codec = CursorCodec()
    cursor = Cursor(b"s" * 16, 75)
    text = codec.encode(cursor)
    assert codec.decode(text) == cursor
    with pytest.raises(CursorError, match="checksum"):
        CursorCodec().decode(text)  # another process's key
    with pytest.raises(CursorError, match=r"base64|length"):
        codec.decode(text[:-3])


def test_sessions_expire_and_are_bounded_lru():
    now = [0.0]
    store = SessionStore(ttl_s=10, max_sessions=2, clock=lambda: now[0])
    pins = np.arange(3, dtype=np.int64)
    scores = np.zeros(3, dtype=np.float32)
    a = store.create(1, "v", pins, ("x",) * 3, scores, ((),) * 3)
    b = store.create(1, "v", pins, ("x",) * 3, scores, ((),) * 3)
    assert store.get(a.session_id) is a  # a is now the most recent
    c = store.create(1, "v", pins, ("x",) * 3, scores, ((),) * 3)
    assert store.get(b.session_id) is None and len(store) == 2
    now[0] = 10.0
    assert store.get(a.session_id) is None and store.get(c.session_id) is None


# The trained-bundle backend.


def test_bundle_backend_serves_the_rankers_order(bundle, data, shared_logger, config):
    backend = BundleBackend(bundle, data)
    assert isinstance(backend, FeedBackend)
    user = _active_user(data)
    now = bundle.context.as_of_ms
    pool = backend.features(backend.candidates(user, now), now)
    assert pool.feature_names == bundle.spec.names and pool.features.shape[0] == len(pool)
    scores = backend.rank(pool)
    hidden = {user: backend.exclusions(user, now).hidden}
    expected = bundle.recommend(np.array([user]), 10, exclude=hidden, now_ms=now).of(0)[1]
    # The same scores as the bundle's own recommend (pins may differ only among ties).
    np.testing.assert_allclose(np.sort(scores)[::-1][:10], expected, rtol=1e-5)
    client = TestClient(create_app(backend, shared_logger, config))
    body = client.get(f"/v1/users/{user}/feed").json()
    assert len(body["items"]) == 25 and body["model_version"] == backend.model_version
    assert {i["source"] for i in body["items"]} <= {"following", "trending"}
