"""Serving: the online feature store, the reaction consumer and the ranking service.

Importing this package stays light: redis-py and thriftpy2 load only in the modules that use
them (``homefeed.serving.online.redis``, ``homefeed.serving.ranking``).
"""

from homefeed.serving.settings import OnlineStoreConfig, RankerServiceConfig, ServingConfig

__all__ = ["OnlineStoreConfig", "RankerServiceConfig", "ServingConfig"]
