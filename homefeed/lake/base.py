"""The lake interface: a narrow store of whole files under one root (a directory or S3 prefix).

The contract every store honours (tests/lake/test_contract.py runs it on each):

* **Paths** are relative to the lake root, ``/``-separated, with no leading or trailing ``/``
  and no empty, ``.`` or ``..`` segments, e.g. ``events/click/dt=2026-11-21/hr=13/_SUCCESS``.
  A segment is 1..255 UTF-8 bytes without control characters or ``\\``, and may not start
  with ``.tmp-`` (reserved for a store's in-flight writes); a path is at most 1024 UTF-8 bytes.
  Anything else raises ``ValueError`` before any I/O. Never make a path both a file and a
  directory of other files (``a/b`` and ``a/b/c``): local disks refuse it.
* **Atomic writes.** ``put_bytes`` and ``write_parquet`` make the new content visible all at
  once: a reader, or a crash of the writer at any moment, sees either the previous file (or
  none) or the complete new one, never a prefix of it.
* **Overwrite replaces.** Writing an existing path replaces its content; writing the same
  bytes twice is harmless, which is what makes rewriting a batch idempotent.
* **Listing is consistent.** Once a write returns, ``exists``, ``get_bytes`` and ``list`` see
  it; once ``delete`` or ``delete_prefix`` returns, they no longer do (local rename semantics;
  S3 has been strongly read-after-write consistent since 2020).
* **Prefixes are directories.** ``list("a/b")`` and ``delete_prefix("a/b")`` cover the files
  below the directory ``a/b`` (``a/b/x``, ``a/b/c/y``), never ``a/bc/x`` nor a file named
  ``a/b`` itself. ``""`` is the whole lake. A trailing ``/`` is ignored.
* Missing things are not errors where the intent is already met: ``delete`` of a missing path
  and ``list`` / ``delete_prefix`` of a missing prefix succeed. ``get_bytes`` of a missing
  path raises ``FileNotFoundError`` naming the full location.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"
MAX_SEGMENT_BYTES = 255  # NAME_MAX of common local filesystems
MAX_PATH_BYTES = 1024  # S3 key limit (the store's own prefix comes on top)
DEFAULT_PARQUET_COMPRESSION = "zstd"


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str  # relative to the lake root
    size: int  # bytes


def check_path(path: str) -> str:
    """Return ``path`` if it is a valid lake path (see the module docstring), else ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"lake path must be a non-empty string, got {path!r}")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"lake path {path!r} is not valid Unicode text") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise ValueError(f"lake path {path[:80]!r}... is longer than {MAX_PATH_BYTES} bytes")
    for segment in path.split("/"):
        _check_segment(path, segment)
    return path


def _check_segment(path: str, segment: str) -> None:
    if segment in ("", ".", ".."):
        raise ValueError(
            f"lake path {path!r} must be relative, '/'-separated, without empty, '.' or '..' "
            "segments"
        )
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise ValueError(f"lake path {path!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    if segment.startswith(TMP_PREFIX):
        raise ValueError(f"lake path {path!r}: names starting {TMP_PREFIX!r} are reserved")
    if "\\" in segment or any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
        raise ValueError(f"lake path {path!r} contains '\\' or a control character")


def check_prefix(prefix: str) -> str:
    """A directory prefix: ``""`` (the whole lake) or a valid path; a trailing '/' is dropped."""
    prefix = prefix.rstrip("/") if isinstance(prefix, str) else prefix
    return "" if prefix == "" else check_path(prefix)


def not_found(location: str) -> FileNotFoundError:
    """The error every store raises for a missing file; ``str()`` names the full location."""
    return FileNotFoundError(errno.ENOENT, "no such file in the lake", location)


class LakeStore(ABC):
    """Whole files under one lake root; see the module docstring for the contract."""

    @property
    @abstractmethod
    def uri(self) -> str:
        """Human-readable root for logs and errors: ``/abs/path/lake`` or ``s3://bucket/pfx``."""

    def location(self, path: str) -> str:
        """Human-readable full location of a lake path (``uri`` + ``/`` + path)."""
        return f"{self.uri.rstrip('/')}/{path}" if path else self.uri

    @abstractmethod
    def put_bytes(self, path: str, data: bytes) -> None:
        """Atomically create or replace the file at ``path`` with ``data``."""

    @abstractmethod
    def get_bytes(self, path: str) -> bytes:
        """The whole file; ``FileNotFoundError`` (naming the full location) if it is missing."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """True if a file (not a directory) is at ``path``."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[FileInfo]:
        """Every file below the directory ``prefix``, recursively, sorted by path.

        Files only (no directories or markers), never a store's in-flight temporary files;
        an empty list if the prefix does not exist.
        """

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove the file at ``path``; a missing file is fine."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every file below the directory ``prefix``; returns how many files were listed.

        Not atomic: a crash part-way leaves some files. ``""`` empties the whole lake.
        """

    @abstractmethod
    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        """``(filesystem, base)`` for pyarrow.dataset / DuckDB: lake path ``p`` is ``base/p``.

        ``base`` never ends with '/'. Datasets ignore names starting with '.' or '_' by default,
        so in-flight temporary files and ``_SUCCESS`` markers stay out of reads.
        """

    def write_parquet(self, path: str, table: pa.Table, **options: Any) -> int:
        """Atomically write ``table`` as one Parquet file; returns the bytes written.

        ``options`` go to ``pyarrow.parquet.write_table`` (zstd compression unless given). The
        file is serialised in memory first, so a failing write never touches the lake.
        """
        options.setdefault("compression", DEFAULT_PARQUET_COMPRESSION)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **options)
        data = sink.getvalue().to_pybytes()
        self.put_bytes(path, data)
        return len(data)

    def read_parquet(self, path: str) -> pa.Table:
        """The whole Parquet file at ``path``; ``FileNotFoundError`` if it is missing."""
        return pq.read_table(pa.BufferReader(self.get_bytes(path)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
