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
_OFFSET = struct.Struct("<q")
HEADER_SIZE = PREFIX.size + BODY.size
SUFFIX = ".log"


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{SUFFIX}"


def segment_base(path: Path) -> int:
    return int(path.name[: -len(SUFFIX)])


def list_segments(partition_dir: Path) -> list[Path]:
    return sorted(partition_dir.glob("*" + SUFFIX))


def encode(offset: int, timestamp_ms: int, key: bytes | None, value: bytes) -> bytes:
    return b"".join(encode_parts(offset, timestamp_ms, key, value))


def encode_parts(
    offset: int, timestamp_ms: int, key: bytes | None, value: bytes
) -> tuple[bytes, ...]:
    """A frame as pieces to join: the CRC is chained over them, so the body is never copied."""
    key_bytes = key or b""
    head = BODY.pack(offset, timestamp_ms, -1 if key is None else len(key_bytes))
    crc = zlib.crc32(value, zlib.crc32(key_bytes, zlib.crc32(head)))
    return PREFIX.pack(crc, len(head) + len(key_bytes) + len(value)), head, key_bytes, value


def decode_records(
    buf: bytes, topic: str, partition: int, max_records: int
) -> tuple[list[Record], int]:
    """Up to ``max_records`` complete, CRC-valid frames of ``buf`` as Records, and bytes used.

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
        value_start = body_start + BODY.size + max(key_len, 0)
        key = None if key_len < 0 else buf[body_start + BODY.size : value_start]
        out.append(Record(topic, partition, offset, timestamp_ms, key, buf[value_start:end]))
        pos = end
    return out, pos


@dataclass(frozen=True, slots=True)
class ScanResult:
    valid_bytes: int  # length of the valid prefix of the file
    next_offset: int  # offset after the last valid frame (the base offset if none)
    records: int


_scan_cache: dict[tuple[int, int], ScanResult] = {}


def scan_cached(path: Path, base_offset: int) -> ScanResult:
    """``scan`` of headers only, resuming where the last scan of this file ended (segments only
    grow). For offsets; the writer's own scan verifies CRCs before it truncates anything.

    Keyed by device and inode, not by name: a path can be relative, or name a new file.
    """
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino)
    known = _scan_cache.get(key)
    if known is None or stat.st_size < known.valid_bytes or known.next_offset < base_offset:
        known = ScanResult(0, base_offset, 0)
    result = scan(path, base_offset, start=known, verify=False)
    _scan_cache[key] = result
    return result


def walk(buf: bytes, verify: bool) -> Iterator[tuple[int, int]]:
    """(offset, end position) of each complete frame of ``buf``, stopping at a short one.

    With ``verify`` every frame's CRC is checked too; without, only the headers are read,
    which is what finding offsets needs (readers check every CRC they return).
    """
    pos, size = 0, len(buf)
    view = memoryview(buf)
    unpack_prefix, unpack_offset = PREFIX.unpack_from, _OFFSET.unpack_from
    while pos + HEADER_SIZE <= size:
        crc, length = unpack_prefix(buf, pos)
        end = pos + 8 + length
        if length < BODY.size or end > size:
            return
        if verify and zlib.crc32(view[pos + 8 : end]) != crc:
            return
        yield unpack_offset(buf, pos + 8)[0], end
        pos = end


def scan(
    path: Path,
    base_offset: int,
    chunk_bytes: int = 8 << 20,
    start: ScanResult | None = None,
    verify: bool = True,
) -> ScanResult:
    """Walk a segment's frames to find where its valid data ends."""
    start = start or ScanResult(0, base_offset, 0)
    pos, next_offset, records = start.valid_bytes, start.next_offset, start.records
    with path.open("rb") as f:
        while True:
            f.seek(pos)
            buf = f.read(chunk_bytes)
            last_end = 0
            for offset, end in walk(buf, verify):
                next_offset, records, last_end = offset + 1, records + 1, end
            if not last_end:
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
            for frame_offset, end in walk(buf, verify=False):
                if frame_offset >= offset:
                    return pos + last_end
                last_end = end
            if last_end == 0 or len(buf) < chunk_bytes:
                return pos + last_end
            pos += last_end
