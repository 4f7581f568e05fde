"""Settings of the serving internals: the online feature store and the ranking service.

They live beside the code they configure; ``homefeed/config.py`` mounts them on the tree as
``[serving.online]`` and ``[serving.ranker]``. Unknown keys are rejected like everywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from homefeed.section import Section
from homefeed.serving.api.settings import FeedServiceConfig
from homefeed.serving.deploy.settings import DeployConfig


class OnlineStoreConfig(Section):
    backend: Literal["local", "redis"] = Field(
        "local",
        description="local: in-process dicts (one process only, not for production); redis.",
    )
    redis_url: str = Field("redis://localhost:6379/0", description="Redis URL (redis backend).")
    key_prefix: str = Field(
        "homefeed:", max_length=64, description="Prefix of every Redis key homefeed writes."
    )
    ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="Redis keys of a user or pin expire this long after "
        "their last write.",
    )  # fmt: skip
    recent_capacity: int = Field(
        200, ge=1, le=10_000, description="Recent engagements kept per user (a ring)."
    )
    seen_capacity: int = Field(
        1000, ge=1, le=100_000, description="Seen pins kept per user, the latest by time."
    )
    dedup_capacity: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="Event ids remembered per user, so a redelivered event counts once.",
    )
    affinity_half_life_hours: float = Field(
        12.0, gt=0, description="Half-life of the per-user topic-affinity deltas."
    )
    counter_window_hours: int = Field(
        48, ge=1, le=24 * 30, description="Hourly pin counters kept (fresh trending)."
    )
    snapshot_path: str | None = Field(
        None, description="local backend: load from / save to this file (None: memory only)."
    )
    redis_timeout_s: float = Field(2.0, gt=0, description="Socket timeout of Redis calls.")


class RankerServiceConfig(Section):
    host: str = Field("127.0.0.1", description="Address the ranking service binds.")
    port: int = Field(9090, ge=0, le=65535, description="Port of the ranking service.")
    timeout_ms: int = Field(
        1000, ge=1, description="Client socket timeout of one call (connect, send, receive)."
    )
    pool_size: int = Field(8, ge=1, le=1024, description="Connections a client keeps open.")
    mode: Literal["in_process", "thrift"] = Field(
        "in_process",
        description="in_process: score in the feed service (no network hop); thrift: call "
        "the ranking service at host:port.",
    )


class ServingConfig(Section):
    api: FeedServiceConfig = Field(default_factory=FeedServiceConfig)  # type: ignore[arg-type]
    deploy: DeployConfig = Field(default_factory=DeployConfig)  # type: ignore[arg-type]
    online: OnlineStoreConfig = Field(default_factory=OnlineStoreConfig)  # type: ignore[arg-type]
    ranker: RankerServiceConfig = Field(
        default_factory=RankerServiceConfig  # type: ignore[arg-type]
    )
