"""``open_lake(config)``: the lake store named by ``lake.uri``."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from homefeed.config import LakeConfig
from homefeed.lake.base import LakeStore

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_lake(config: LakeConfig) -> LakeStore:
    """``s3://bucket/prefix`` -> S3Lake; ``file:///abs/path`` or a plain path -> LocalLake.

    Any other scheme raises ``ValueError`` naming ``lake.uri`` and its value.
    """
    uri = config.uri
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    if scheme == "s3":
        from homefeed.lake.s3 import S3Lake

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"lake.uri = {uri!r}: expected s3://bucket or s3://bucket/prefix")
        return S3Lake(bucket, prefix, config.s3)

    from homefeed.lake.local import LocalLake

    if scheme == "file":
        return LocalLake(_file_uri_path(uri))
    if scheme:
        raise ValueError(
            f"lake.uri = {uri!r}: unsupported scheme {scheme!r}; use a local path, "
            "file:///path or s3://bucket/prefix"
        )
    if not uri:
        raise ValueError("lake.uri is empty; use a local path or s3://bucket/prefix")
    return LocalLake(uri)


def _file_uri_path(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise ValueError(f"lake.uri = {uri!r}: expected file:///absolute/path")
    return unquote(parts.path)
