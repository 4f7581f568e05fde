"""The lake: atomic whole-file storage on a local path or S3, read back with pyarrow/DuckDB."""

from homefeed.lake.base import FileInfo, LakeStore
from homefeed.lake.factory import open_lake

__all__ = ["FileInfo", "LakeStore", "open_lake"]
