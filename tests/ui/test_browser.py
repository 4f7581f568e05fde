"""The web UI in a real browser: Debian's Chromium driven by Playwright against the feed API
served by uvicorn on a free port, over a small simulated backend, a local log and a local lake
holding a few persisted events, a job run, a registered model and an experiment's exposures.

A missing /usr/bin/chromium fails these tests (it never skips). With HOMEFEED_SCREENSHOTS=1 they
also write docs/images/feed.png and docs/images/console.png.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from homefeed.config import HomefeedConfig, LocalLogConfig
from homefeed.events.sdk import EventLogger
from homefeed.experiments.exposure import exposure_event
from homefeed.jobs.definitions import get_job
from homefeed.jobs.engines import open_engine
from homefeed.jobs.runner import run_job
from homefeed.lake.layout import parse_hour
from homefeed.lake.local import LocalLake
from homefeed.log.base import EventLog
from homefeed.log.local import LocalLog
from homefeed.models.registry import ModelRegistry
from homefeed.models.sources import make_source
from homefeed.persister.persister import Persister
from homefeed.serving.api.app import create_app
from homefeed.serving.api.backend import SimpleBackend
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.testing.events import valid_event
from homefeed.testing.models import simulated_training_data

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
EXPERIMENT = "ranker_v2"
PAGE = 25


@dataclass
class Site:
    url: str
    event_log: EventLog
    logger: EventLogger
    lake: LocalLake


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed_events(logger: EventLogger, users: list[int]) -> None:
    """Engagements over two hours (so the first hour gets its _SUCCESS) and exposures."""
    events = []
    for i, user in enumerate(users):
        for hour in (13, 14):
            when = f"2026-11-21T{hour}:{i % 60:02d}:00.000Z"
            events.append(valid_event("impression", user_id=user, pin_id=100 + i, event_time=when))
            events.append(valid_event("click", user_id=user, pin_id=100 + i, event_time=when))
            events.append(valid_event("save", user_id=user, pin_id=200 + i, event_time=when))
        variant = "control" if i % 2 else "treatment"
        exposed = f"2026-11-21T13:{i % 60:02d}:00.000Z"
        events.append(exposure_event(user, EXPERIMENT, variant, exposed, platform="web"))
    assert not logger.log_many(events)
    logger.flush()


def _build_lake(event_log: EventLog, lake: LocalLake, config: HomefeedConfig, tmp: Path) -> None:
    """Persist the log, run one real job over the first hour, register and promote a model."""
    Persister(event_log, lake, config=config.persister).run()
    engine = open_engine(config.engine, "duckdb")
    try:
        spec = get_job("pin_engagement_hourly")
        run_job(engine, lake, spec, parse_hour("2026-11-21T13"), config.jobs)
    finally:
        engine.close()
    bundle = tmp / "bundle"
    bundle.mkdir()
    (bundle / "weights.bin").write_bytes(b"\x00" * 1024)
    registry = ModelRegistry(lake, config.models.name)
    span = (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
    version = registry.register(bundle, {"recall_at_100": 0.31}, span, code_version="test")
    registry.promote(version)
    registry.register(bundle, {"recall_at_100": 0.33}, span, code_version="test")


def _config(tmp: Path) -> HomefeedConfig:
    experiment = {
        "salt": "s1",
        "start": "2026-11-01T00:00:00Z",
        "variants": [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
        "metrics": ["saves", "clicks"],
    }
    return HomefeedConfig.model_validate(
        {
            "log": {"local": {"path": str(tmp / "log"), "fsync": "never"}},
            "lake": {"uri": str(tmp / "lake")},
            "persister": {"late_delay_minutes": 0},
            "experiments": {"definitions": {EXPERIMENT: experiment}},
        }
    )


def _serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, name="ui-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    return server, thread


@contextmanager
def _served(app: FastAPI) -> Iterator[str]:
    """``app`` on a free loopback port, in a thread, until the block ends; yields its URL."""
    port = _free_port()
    server, thread = _serve(app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def backend() -> SimpleBackend:
    data = simulated_training_data()
    sources = {name: make_source(name) for name in ("following", "pixie", "trending")}
    for source in sources.values():
        source.fit(data)
    return SimpleBackend(data, sources, candidates_per_source=200)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, backend: SimpleBackend) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("ui")
    config = _config(tmp)
    event_log = LocalLog(config.log.local)
    lake = LocalLake(tmp / "lake")
    with EventLogger(event_log, source="feed-api", on_reject=lambda _: None) as logger:
        _seed_events(logger, [int(u) for u in backend.data.engagements.user_id[:12]])
        _build_lake(event_log, lake, config, tmp)
        app = create_app(backend, logger, FeedServiceConfig(session_items=200))  # type: ignore[call-arg]
        app.state.homefeed_config = config
        with _served(app) as url:
            yield Site(url, event_log, logger, lake)
    event_log.close()


@pytest.fixture(scope="module")
def empty_site(tmp_path_factory: pytest.TempPathFactory, backend: SimpleBackend) -> Iterator[str]:
    """The console of a fresh install: no topics in its log, nothing in its lake, no
    experiment. (The feed API logs to a log of its own, so its topics stay out of view.)"""
    tmp = tmp_path_factory.mktemp("ui-empty")
    config = HomefeedConfig.model_validate(
        {"log": {"local": {"path": str(tmp / "log")}}, "lake": {"uri": str(tmp / "lake")}}
    )
    api_log = LocalLog(LocalLogConfig(path=str(tmp / "api-log"), fsync="never"))  # type: ignore[call-arg]
    with EventLogger(api_log, source="feed-api", on_reject=lambda _: None) as logger:
        app = create_app(backend, logger)
        app.state.homefeed_config = config
        with _served(app) as url:
            yield url
    api_log.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page and the JavaScript errors it reports (console errors, uncaught exceptions)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page, errors
    context.close()


def _open_feed(page: Page, site: Site, chip: int) -> int:
    """Load /ui/, pick the chip-th suggested user, wait for page 1; returns the user id."""
    page.goto(f"{site.url}/ui/")
    button = page.locator("#suggested .chip").nth(chip)
    user = int(button.get_attribute("data-user") or "-1")
    with page.expect_response(lambda r: f"/v1/users/{user}/feed" in r.url) as response:
        button.click()
    assert response.value.ok
    page.wait_for_selector("#grid .pin")
    return user


def _read_topic(event_log: EventLog, topic: str) -> list[dict]:
    with event_log.consumer(f"check-{topic}-{time.monotonic_ns()}", [topic]) as consumer:
        out: list[dict] = []
        while batch := consumer.poll(10_000, 0.05):
            out += [orjson.loads(r.value) for r in batch]
    return out


def _from_ui(event: dict) -> bool:
    """Sent by the page (the seeded events carry an app_version, the page sends none)."""
    return bool(event["client"] == {"platform": "web"} and event["surface"] == "home_feed")


def _screenshot(page: Page, name: str, full_page: bool = False) -> None:
    if os.environ.get("HOMEFEED_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / name), full_page=full_page)


def test_feed_renders_a_page_of_pins(site: Site, page: tuple[Page, list[str]]) -> None:
    tab, errors = page
    user = _open_feed(tab, site, 0)
    pins = tab.locator("#grid .pin")
    assert pins.count() == PAGE
    first = pins.first
    assert first.locator(".badge").inner_text() in {"following", "pixie", "trending"}
    assert f"pin {first.get_attribute('data-pin')}" in first.locator(".meta").inner_text()
    assert str(user) in tab.locator("#who").inner_text()
    _screenshot(tab, "feed.png")
    assert errors == []


def test_hide_removes_the_pin_and_logs_a_hide(site: Site, page: tuple[Page, list[str]]) -> None:
    tab, errors = page
    user = _open_feed(tab, site, 1)
    pin = tab.locator("#grid .pin").nth(2)
    pin_id = int(pin.get_attribute("data-pin") or "-1")
    with tab.expect_response(lambda r: r.url.endswith("/v1/events")) as response:
        pin.locator("button.hide").click()
    assert response.value.json() == {"accepted": 1, "rejected": []}
    assert tab.locator(f'#grid .pin[data-pin="{pin_id}"]').count() == 0
    assert tab.locator("#grid .pin").count() == PAGE - 1
    site.logger.flush()
    hides = [e for e in _read_topic(site.event_log, "events.hide") if e["user_id"] == user]
    assert [(e["pin_id"], e["surface"], _from_ui(e)) for e in hides] == [
        (pin_id, "home_feed", True)
    ]
    assert errors == []


def test_save_logs_a_save_to_the_users_board(site: Site, page: tuple[Page, list[str]]) -> None:
    tab, errors = page
    user = _open_feed(tab, site, 2)
    boards = tab.evaluate(f"fetch('/v1/console/users/{user}').then(r => r.json())")["boards"]
    pin = tab.locator("#grid .pin").first
    pin_id = int(pin.get_attribute("data-pin") or "-1")
    with tab.expect_response(lambda r: r.url.endswith("/v1/events")):
        pin.locator("button.save").click()
    tab.wait_for_selector(f'#grid .pin.saved[data-pin="{pin_id}"]')
    assert pin.locator("button.save").inner_text() == "Saved"
    site.logger.flush()
    saves = [e for e in _read_topic(site.event_log, "events.save") if e["user_id"] == user]
    assert [(e["pin_id"], e["board_id"]) for e in saves if _from_ui(e)] == [(pin_id, boards[0])]
    other = tab.locator("#grid .pin").nth(1)
    with tab.expect_response(lambda r: r.url.endswith("/v1/events")):
        other.locator("button.click").click()
    tab.wait_for_selector("#grid .pin.clicked")
    site.logger.flush()
    clicks = [e for e in _read_topic(site.event_log, "events.click") if e["user_id"] == user]
    assert [e["pin_id"] for e in clicks if _from_ui(e)] == [
        int(other.get_attribute("data-pin") or "-1")
    ]
    assert errors == []


def test_more_loads_page_two_without_repeats(site: Site, page: tuple[Page, list[str]]) -> None:
    tab, errors = page
    _open_feed(tab, site, 3)
    first = [p.get_attribute("data-pin") for p in tab.locator("#grid .pin").all()]
    with tab.expect_response(lambda r: "cursor=" in r.url) as response:
        tab.locator("#more").click()
    second = [item["pin_id"] for item in response.value.json()["items"]]
    assert len(second) == PAGE
    assert not {str(p) for p in second} & set(first)  # the API repeats nothing
    tab.wait_for_function(f"document.querySelectorAll('#grid .pin').length === {2 * PAGE}")
    positions = [
        int(p.get_attribute("data-position") or -1) for p in tab.locator("#grid .pin").all()
    ]
    assert positions == list(range(2 * PAGE))
    assert errors == []


def test_console_renders_every_section(site: Site, page: tuple[Page, list[str]]) -> None:
    tab, errors = page
    tab.goto(f"{site.url}/ui/console.html")
    tab.wait_for_selector("#topics-table tbody tr")
    tab.wait_for_selector("#jobs-table tbody tr")
    tab.wait_for_selector(".models-table tbody tr")
    tab.wait_for_selector("#lake-table tbody tr")
    tab.wait_for_selector(f'[data-experiment="{EXPERIMENT}"] svg.chart rect.bar')
    topics = tab.locator("#topics-table tbody tr").all_inner_texts()
    assert any(row.startswith("events.click") for row in topics)
    jobs = tab.locator("#jobs-table tbody tr").all_inner_texts()
    assert len(jobs) == 1 and "pin_engagement_hourly" in jobs[0] and "ok" in jobs[0]
    models = tab.locator(".models-table tbody tr").all_inner_texts()
    assert [row.split("\t")[0] for row in models] == ["v0002", "v0001"]
    assert "production" in models[1] and "production" not in models[0]
    lake = " ".join(tab.locator("#lake-table tbody tr").all_inner_texts())
    assert "events/click" in lake and "tables/pin_engagement_hourly" in lake
    whiskers = tab.locator(f'[data-experiment="{EXPERIMENT}"] svg.chart line.whisker')
    assert whiskers.count() >= 6  # a stem and two caps per variant
    tab.wait_for_load_state("networkidle")
    _screenshot(tab, "console.png", full_page=True)
    assert errors == []


def test_console_of_an_empty_install_says_nothing_yet(
    empty_site: str, page: tuple[Page, list[str]]
) -> None:
    tab, errors = page
    tab.goto(f"{empty_site}/ui/console.html")
    for section in ("topics", "lake", "jobs", "models", "experiments"):
        empty = tab.locator(f"#{section} .body .empty")
        empty.wait_for()
        assert empty.inner_text().startswith("nothing yet")
    assert tab.locator(".error").count() == 0
    assert errors == []


def test_unknown_user_and_bad_input_show_clear_messages(
    site: Site, page: tuple[Page, list[str]]
) -> None:
    tab, errors = page
    tab.goto(f"{site.url}/ui/")
    tab.locator("#user-id").fill("999999999")
    tab.locator("#pick button[type=submit]").click()
    tab.wait_for_selector("#status.error")
    assert tab.locator("#status").inner_text() == "no user 999999999"
    assert tab.locator("#grid .pin").count() == 0
    missing = tab.evaluate("fetch('/v1/console/experiments/nope/report').then(r => r.json())")
    assert missing["error"] == "unknown_experiment" and missing["field"] == "name"
    # The page's own 404 fetch is logged by Chromium as a console error; nothing else may be.
    assert [e for e in errors if "404" not in e] == []
