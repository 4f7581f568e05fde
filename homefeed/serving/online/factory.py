"""Pick the online store backend named in the config; redis-py loads only when chosen."""

from __future__ import annotations

from homefeed.serving.online.base import OnlineStore
from homefeed.serving.settings import OnlineStoreConfig


def open_online_store(config: OnlineStoreConfig | None = None) -> OnlineStore:
    config = config or OnlineStoreConfig()  # type: ignore[call-arg]
    if config.backend == "local":
        from homefeed.serving.online.local import LocalOnlineStore

        return LocalOnlineStore(config)
    if config.backend == "redis":
        from homefeed.serving.online.redis import RedisOnlineStore

        return RedisOnlineStore(config)
    raise ValueError(f"serving.online.backend = {config.backend!r}: expected 'local' or 'redis'")
