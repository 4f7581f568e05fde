"""Settings of the feed HTTP service (``[serving.api]`` once the lead wires it into config.py)."""

from __future__ import annotations

from pydantic import Field

from homefeed.section import Section


def _default_quotas() -> dict[str, float]:
    # Trending is the fallback, not the feed: it may fill at most a third of a page unless
    # nothing else is left (new users get all of it, see blending.apply_quotas).
    return {"trending": 0.34}


class FeedServiceConfig(Section):
    host: str = Field("127.0.0.1", description="Interface the feed service listens on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the feed service.")
    page_size: int = Field(25, ge=1, le=1000, description="Pins per page when no limit is given.")
    max_limit: int = Field(100, ge=1, le=1000, description="Largest limit a client may ask for.")
    session_items: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Pins ranked once per feed session; pages are slices of this list.",
    )
    candidates_per_source: int = Field(
        300, ge=1, le=10_000, description="Candidates asked of each source per request."
    )
    source_quotas: dict[str, float] = Field(
        default_factory=_default_quotas,
        description=(
            "Largest share of a session's pins one source may fill, by source name (0..1]. "
            "Sources not named have no cap."
        ),
    )
    max_same_topic_in_row: int = Field(
        2, ge=1, le=100, description="Longest run of pins of one topic in a feed."
    )
    session_ttl_s: float = Field(
        900.0, gt=0, description="A feed session (and its cursors) expires after this long."
    )
    max_sessions: int = Field(
        10_000, ge=1, description="Sessions kept in memory; the least recently used go first."
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Larger request bodies are refused with 413."
    )
    max_events_per_request: int = Field(
        1000, ge=1, le=100_000, description="Events one POST /v1/events may carry."
    )
    recent_window_hours: float = Field(
        24.0, ge=0, description="Pins the user saw or engaged with this recently are not shown."
    )
    candidate_cache_ttl_s: float = Field(
        300.0, ge=0, description="A user's retrieved candidates are reused by their sessions for "
        "this long (0: retrieve on every first page); ranking always runs per request.",
    )  # fmt: skip
    candidate_cache_users: int = Field(
        10_000, ge=1, description="Users whose candidates are cached (LRU; ~80 KB each with six "
        "sources of 200).",
    )  # fmt: skip
    compile_ranker: bool = Field(
        True, description="Compile the ranker's trees to native code at start (lleaves; "
        "checked against LightGBM, which scores instead if compiling fails).",
    )  # fmt: skip
    access_log: bool = Field(
        False, description="Log a line per request (uvicorn's access log); /metrics counts "
        "requests by route and status either way.",
    )  # fmt: skip
    workers: int = Field(
        1, ge=1, le=32, description="Server processes on the port (`serve --workers`); each "
        "loads the model, and sessions are shared through `sessions_path`.",
    )  # fmt: skip
    sessions_path: str | None = Field(
        None, description="SQLite file of the workers' shared feed sessions; None: a new "
        "temporary file per start (sessions do not outlive the service).",
    )  # fmt: skip
    feed_threads: int = Field(
        0, ge=0, le=64, description="0: feed pages are computed on the event loop, one at a "
        "time (fastest when the page is CPU work: embedded ranker, local store). N: on N "
        "threads, so other requests go on while a page waits on Redis or a remote ranker.",
    )  # fmt: skip
