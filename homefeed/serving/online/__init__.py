"""The online feature store: one interface (base.py), in-process (local.py) and Redis."""

from homefeed.serving.online.base import (
    OnlineStore,
    OnlineStoreError,
    Reaction,
    UserOnlineState,
)
from homefeed.serving.online.factory import open_online_store

__all__ = ["OnlineStore", "OnlineStoreError", "Reaction", "UserOnlineState", "open_online_store"]
