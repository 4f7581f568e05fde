"""Reading a lake back in tests and checks: every event row with where it came from."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds

from homefeed.lake.base import LakeStore
from homefeed.lake.layout import event_table


def read_event_table(
    lake: LakeStore, event_type: str, columns: list[str] | None = None
) -> pa.Table:
    """All rows of one event table, with ``dt`` and ``hr`` from the partition directories."""
    fs, base = lake.arrow_filesystem()
    path = f"{base}/{event_table(event_type)}" if base else event_table(event_type)
    try:
        info = fs.get_file_info(path)
    except OSError:
        info = None
    if info is None or info.type.name == "NotFound":
        return pa.table({})
    dataset = ds.dataset(
        path,
        filesystem=fs,
        format="parquet",
        partitioning="hive",
        exclude_invalid_files=True,
        ignore_prefixes=[".", "_"],
    )
    return dataset.to_table(columns=columns)
