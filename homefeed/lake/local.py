"""``LocalLake``: the lake as a directory on a local (POSIX) filesystem.

A write goes to ``.tmp-<random>`` in the target's directory, is flushed and fsynced, renamed
over the final name with ``os.replace`` (atomic on POSIX) and the directory is fsynced, so the
rename itself survives a power loss. A writer killed before the rename leaves only the temp
file, which ``list``/``exists``/``get_bytes`` never see (paths may not start with ``.tmp-``) and
pyarrow datasets skip (their default ``ignore_prefixes`` includes '.'); ``delete_prefix``
removes leftovers along with everything else.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from homefeed.lake.base import (
    TMP_PREFIX,
    FileInfo,
    LakeStore,
    check_path,
    check_prefix,
    not_found,
)


class LocalLake(LakeStore):
    """A lake rooted at ``root`` (created on the first write; relative roots are made absolute
    against the current directory once, at construction)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    @property
    def uri(self) -> str:
        return str(self.root)

    def _full(self, path: str) -> Path:
        return self.root / check_path(path)

    def put_bytes(self, path: str, data: bytes) -> None:
        final = self._full(path)
        if not final.parent.is_dir():
            _make_dirs(final.parent)
        tmp = final.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            _write_durably(tmp, data)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)

    def get_bytes(self, path: str) -> bytes:
        full = self._full(path)
        try:
            return full.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise not_found(str(full)) from None

    def exists(self, path: str) -> bool:
        return self._full(path).is_file()

    def list(self, prefix: str = "") -> list[FileInfo]:
        prefix = check_prefix(prefix)
        top = self.root / prefix if prefix else self.root
        found: list[FileInfo] = []
        pending = [(top, prefix)]
        while pending:
            directory, rel = pending.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue  # a missing prefix, or a file named like the prefix: nothing below
            for entry in entries:
                if entry.name.startswith(TMP_PREFIX):
                    continue
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir():
                    pending.append((Path(entry.path), child))
                elif entry.is_file():
                    found.append(FileInfo(child, entry.stat().st_size))
        return sorted(found, key=lambda f: f.path)

    def delete(self, path: str) -> None:
        full = self._full(path)
        try:
            full.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(full.parent)

    def delete_prefix(self, prefix: str) -> int:
        prefix = check_prefix(prefix)
        count = len(self.list(prefix))
        top = self.root / prefix if prefix else self.root
        if not top.is_dir():
            return 0
        if prefix:
            shutil.rmtree(top)
            _fsync_dir(top.parent)
        else:  # keep the root itself: it may be a mount point or have chosen permissions
            for entry in os.scandir(top):
                _remove(Path(entry.path))
            _fsync_dir(top)
        return count

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return pafs.LocalFileSystem(), self.root.as_posix()


def _write_durably(tmp: Path, data: bytes) -> None:
    # "x": a fresh random name, never someone else's file.
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    """Persist a directory's entries (a rename or new name in it) across a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> None:
    """``mkdir -p`` that also fsyncs each new directory's parent, so the path survives a crash."""
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():  # a file is in the way: the caller's paths collide
                raise
        _fsync_dir(d.parent)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
