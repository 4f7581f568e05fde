"""One partition of the embedded log: a directory of segment files.

Writers in several processes may append to the same partition: each append holds an exclusive
``flock`` on the partition's lock file, re-reads the tail if another process moved it, truncates
a torn tail left by a killed writer, then writes its frames with one ``write`` call. The data is
in the kernel when ``append`` returns, so it survives the writing process being killed; the
fsync policy decides whether it also survives a power loss.

Readers take no lock: they only ever return complete frames whose CRC checks.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from homefeed.log.base import Record
from homefeed.log.local import segment as seg

log = logging.getLogger(__name__)


class PartitionWriter:
    def __init__(self, directory: Path, segment_bytes: int, fsync: str, fsync_interval_ms: int):
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_ms / 1000
        self._lock_fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._segment: Path | None = None
        self._size = 0  # valid bytes of _segment as this writer last knew them
        self._next_offset = 0
        self._last_fsync = 0.0
        self._fd: int | None = None

    def append(self, frames_of: list[tuple[bytes | None, bytes]]) -> tuple[int, int]:
        """Append (key, value) records; returns (first offset, timestamp). Durable on return."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._sync_tail()
            if self._segment is None or self._size >= self.segment_bytes:
                self._roll()
            now_ms = int(time.time() * 1000)
            first = self._next_offset
            encode = seg.encode_parts
            data = b"".join(
                [
                    part
                    for i, (k, v) in enumerate(frames_of)
                    for part in encode(first + i, now_ms, k, v)
                ]
            )
            assert self._fd is not None
            written = os.pwrite(self._fd, data, self._size)
            if written != len(data):
                raise OSError(f"short write to {self._segment}: {written} of {len(data)} bytes")
            self._size += len(data)
            self._next_offset += len(frames_of)
            self._maybe_fsync()
            return first, now_ms
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _sync_tail(self) -> None:
        """Catch up with appends by other processes and cut any torn tail (lock held)."""
        segments = seg.list_segments(self.directory)
        if not segments:
            self._segment = None
            return
        last = segments[-1]
        if last != self._segment or last.stat().st_size != self._size:
            result = seg.scan(last, seg.segment_base(last))
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(last, os.O_RDWR)
            if result.valid_bytes < os.fstat(self._fd).st_size:
                log.warning("truncating torn tail of %s at byte %d", last, result.valid_bytes)
                os.ftruncate(self._fd, result.valid_bytes)
            self._segment, self._size, self._next_offset = (
                last,
                result.valid_bytes,
                result.next_offset,
            )

    def _roll(self) -> None:
        path = self.directory / seg.segment_name(self._next_offset)
        if self._fd is not None:
            os.fsync(self._fd)  # a closed segment is complete on disk
            os.close(self._fd)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        _fsync_dir(self.directory)
        self._segment, self._size = path, 0

    def _maybe_fsync(self) -> None:
        assert self._fd is not None
        now = time.monotonic()
        if self.fsync == "always" or (
            self.fsync == "interval" and now - self._last_fsync >= self.fsync_interval_s
        ):
            os.fdatasync(self._fd)
            self._last_fsync = now

    def next_offset(self) -> int:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._sync_tail()
            return self._next_offset
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        os.close(self._lock_fd)


class PartitionReader:
    """Sequential reads from one partition, from any offset still retained."""

    def __init__(self, topic: str, partition: int, directory: Path, offset: int = 0):
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self._segment: Path | None = None
        self._fd = -1  # the open segment: a poll costs a pread, not an open
        self._dir_mtime_ns = -1  # the directory's mtime when it last had no segment
        self._pos = 0
        self.offset = offset
        self.seek(offset)

    def seek(self, offset: int) -> None:
        segments = seg.list_segments(self.directory)
        start = seg.segment_base(segments[0]) if segments else 0
        if offset < start:
            log.warning(
                "%s[%d]: offset %d is past retention; resuming at %d",
                self.topic,
                self.partition,
                offset,
                start,
            )
            offset = start
        candidates = [s for s in segments if seg.segment_base(s) <= offset]
        self._open(candidates[-1] if candidates else (segments[0] if segments else None))
        self._pos = seg.find_position(self._segment, offset) if self._segment else 0
        self.offset = offset

    def read(self, max_records: int, max_bytes: int = 16 << 20) -> list[Record]:
        out: list[Record] = []
        while len(out) < max_records:
            batch = self._read_segment(max_records - len(out), max_bytes)
            if batch:
                out += batch
            elif not self._next_segment():
                break
        return out

    def close(self) -> None:
        self._open(None)

    def _open(self, segment: Path | None) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._segment, self._fd = segment, -1
        if segment is not None:
            try:
                self._fd = os.open(segment, os.O_RDONLY)
            except FileNotFoundError:  # removed by retention: the next read seeks again
                self._segment = None

    def _first_segment(self) -> bool:
        """Open the partition's first segment once it has one (empty partitions poll often)."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return False
        # Unchanged since it had no segment: skip the listing. A recent mtime is listed
        # anyway, as a file created within the clock's granularity would not change it.
        if mtime == self._dir_mtime_ns and time.time_ns() - mtime > 1_000_000_000:
            return False
        self._dir_mtime_ns = mtime
        self._open(next(iter(seg.list_segments(self.directory)), None))
        return self._segment is not None

    def _read_segment(self, max_records: int, max_bytes: int) -> list[Record]:
        if self._fd < 0 and not self._first_segment():
            return []
        # A segment retention removed stays readable through our handle: its records are
        # still the right ones, and _next_segment moves on (or resumes at the oldest kept).
        # Enough for the records asked for at a generous 2 KiB each, not a whole segment.
        buf = os.pread(self._fd, min(max_bytes, max(max_records, 16) * 2048), self._pos)
        out, end = seg.decode_records(buf, self.topic, self.partition, max_records)
        if out:
            self._pos += end
            self.offset = out[-1].offset + 1
        return out

    def _next_segment(self) -> bool:
        """Move to the segment that starts at our offset, if the writer rolled to one."""
        following = self.directory / seg.segment_name(self.offset)
        if following.exists() and following != self._segment:
            self._open(following)
            self._pos = 0
            return self._segment is not None
        if self._segment is not None and not self._segment.exists():
            # Retention removed our segment and the one after it: resume at the oldest kept.
            self.seek(self.offset)
            return self._segment is not None
        return False


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
