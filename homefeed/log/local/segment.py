"""The on-disk record frame of the embedded log, and scanning a segment file.

A segment is named after the offset of its first record (``00000000000000012345.log``) and is a
sequence of frames::

    crc32 u32 | length u32 | offset i64 | timestamp_ms i64 | key_len i32 | key | value

``length`` counts the bytes after the 8-byte crc+length prefix; ``crc32`` covers them. A frame
that is short or fails its CRC can only be the tail a writer was killed in the middle of: it was
never acknowledged, readers stop before it and the next writer truncates it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from homefeed.log.base import Record

PREFIX = struct.Struct("<II")
BODY = struct.Struct("<qqi")
HEADER_SIZE = PREFIX.size + BODY.size
SUFFIX = ".log"


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{SUFFIX}"


def segment_base(path: Path) -> int:
    return int(path.name[: -len(SUFFIX)])


def list_segments(partition_dir: Path) -> list[Path]:
    return sorted(partition_dir.glob("*" + SUFFIX))


def encode(offset: int, timestamp_ms: int, key: bytes | None, value: bytes) -> bytes:
    key_bytes = key or b""
    body = (
        BODY.pack(offset, timestamp_ms, -1 if key is None else len(key_bytes)) + key_bytes + value
    )
    return PREFIX.pack(zlib.crc32(body), len(body)) + body


@dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    end: int  # byte position just past this frame in the buffer it came from


def decode_records(
    buf: bytes, topic: str, partition: int, max_records: int
) -> tuple[list[Record], int]:
    """Up to ``max_records`` complete, valid frames of ``buf`` as Records, and the bytes used.

    The hot read path: frames are decoded straight into Records from one bytes object.
    """
    out: list[Record] = []
    pos, size = 0, len(buf)
    unpack_prefix, unpack_body = PREFIX.unpack_from, BODY.unpack_from
    crc32 = zlib.crc32
    view = memoryview(buf)
    while pos + HEADER_SIZE <= size and len(out) < max_records:
        crc, length = unpack_prefix(buf, pos)
        body_start = pos + 8
        end = body_start + length
        if length < BODY.size or end > size or crc32(view[body_start:end]) != crc:
            break
        offset, timestamp_ms, key_len = unpack_body(buf, body_start)
        value_start = body_start + 20 + max(key_len, 0)
        key = None if key_len < 0 else buf[body_start + 20 : value_start]
        out.append(Record(topic, partition, offset, timestamp_ms, key, buf[value_start:end]))
        pos = end
    return out, pos


def decode_all(buf: bytes | memoryview, start: int = 0) -> Iterator[Frame]:
    """Complete, valid frames from ``start``; stops at the first short or corrupt one."""
    view = memoryview(buf)
    pos, size = start, len(view)
    while pos + HEADER_SIZE <= size:
        crc, length = PREFIX.unpack_from(view, pos)
        body_start = pos + PREFIX.size
        end = body_start + length
        if length < BODY.size or end > size or zlib.crc32(view[body_start:end]) != crc:
            return
        offset, timestamp_ms, key_len = BODY.unpack_from(view, body_start)
        key_start = body_start + BODY.size
        value_start = key_start + max(key_len, 0)
        key = None if key_len < 0 else bytes(view[key_start:value_start])
        yield Frame(offset, timestamp_ms, key, bytes(view[value_start:end]), end)
        pos = end


@dataclass(frozen=True, slots=True)
class ScanResult:
    valid_bytes: int  # length of the valid prefix of the file
    next_offset: int  # offset after the last valid frame (the base offset if none)
    records: int


_scan_cache: dict[tuple[int, int], ScanResult] = {}


def scan_cached(path: Path, base_offset: int) -> ScanResult:
    """``scan`` that resumes from where the last scan of this file ended (segments only grow).

    Keyed by device and inode, not by name: a path can be relative, or name a new file.
    """
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino)
    known = _scan_cache.get(key)
    if known is None or stat.st_size < known.valid_bytes or known.next_offset < base_offset:
        known = ScanResult(0, base_offset, 0)
    result = scan(path, base_offset, start=known)
    _scan_cache[key] = result
    return result


def scan(
    path: Path, base_offset: int, chunk_bytes: int = 8 << 20, start: ScanResult | None = None
) -> ScanResult:
    """Walk a segment's frames to find where its valid data ends."""
    start = start or ScanResult(0, base_offset, 0)
    pos, next_offset, records = start.valid_bytes, start.next_offset, start.records
    with path.open("rb") as f:
        while True:
            f.seek(pos)
            buf = f.read(chunk_bytes)
            moved = False
            for frame in decode_all(buf):
                next_offset, records, moved = frame.offset + 1, records + 1, True
                last_end = frame.end
            if not moved:
                return ScanResult(pos, next_offset, records)
            pos += last_end
            if len(buf) < chunk_bytes:
                # Read to EOF: whatever followed the last frame is a torn tail.
                return ScanResult(pos, next_offset, records)


def find_position(path: Path, offset: int, chunk_bytes: int = 8 << 20) -> int:
    """Byte position of the first frame with offset >= ``offset`` (or the valid end)."""
    pos = 0
    with path.open("rb") as f:
        while True:
            f.seek(pos)
            buf = f.read(chunk_bytes)
            last_end = 0
            for frame in decode_all(buf):
                if frame.offset >= offset:
                    return pos + last_end
                last_end = frame.end
            if last_end == 0 or len(buf) < chunk_bytes:
                return pos + last_end
            pos += last_end
