"""What is in the lake: per table, the hours, how many are marked complete, files, rows, bytes."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow.dataset as ds

from homefeed.lake.base import LakeStore
from homefeed.lake.layout import EVENTS

_HOUR_DIR = re.compile(r"^(?P<table>.+)/dt=(?P<dt>[0-9-]{10})/hr=(?P<hr>\d\d)/(?P<name>[^/]+)$")


@dataclass
class TableSummary:
    table: str
    files: int = 0
    bytes: int = 0
    rows: int = 0
    hours: set[str] = field(default_factory=set)
    complete_hours: set[str] = field(default_factory=set)

    @property
    def first_hour(self) -> str:
        return min(self.hours, default="")

    @property
    def last_hour(self) -> str:
        return max(self.hours, default="")


def summarize(lake: LakeStore, prefix: str = EVENTS) -> list[TableSummary]:
    tables: dict[str, TableSummary] = defaultdict(lambda: TableSummary(""))
    for info in lake.list(prefix):
        m = _HOUR_DIR.match(info.path)
        if not m:
            continue
        summary = tables[m["table"]]
        summary.table = m["table"]
        hour = f"{m['dt']}T{m['hr']}"
        if m["name"] == "_SUCCESS":
            summary.complete_hours.add(hour)
        elif m["name"].endswith(".parquet"):
            summary.files += 1
            summary.bytes += info.size
            summary.hours.add(hour)
    fs, base = lake.arrow_filesystem()
    for summary in tables.values():
        if summary.files:
            path = f"{base}/{summary.table}" if base else summary.table
            dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
            summary.rows = dataset.count_rows()
    return sorted(tables.values(), key=lambda s: s.table)
