"""Event topics to the lake as Parquet, exactly once (see persister.py for how)."""

from homefeed.persister.persister import Persister, PersistReport

__all__ = ["PersistReport", "Persister"]
