"""The ranking service: a Thrift IDL (ranker.thrift), the server (service.py), clients.

The IDL is loaded here, once, by thriftpy2; ``ranker_thrift`` holds its structs and service.
"""

from __future__ import annotations

from pathlib import Path

try:
    import thriftpy2
except ImportError as e:  # pragma: no cover - thriftpy2 is a dependency of serving
    raise ImportError("the ranking service needs thriftpy2: pip install thriftpy2") from e

IDL = Path(__file__).with_name("ranker.thrift")
ranker_thrift = thriftpy2.load(str(IDL), module_name="ranker_thrift")

__all__ = ["IDL", "ranker_thrift"]
