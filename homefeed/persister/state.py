"""The persister's own records, kept in the lake beside the data they describe.

* **Progress** per partition: the newest event time persisted, for the hour markers.
* **Markers**: the last hour marked complete, so each run only looks at newer hours.

Neither is needed for exactly once: that rests on the log's committed offsets and on file
names derived from offsets (persister.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import orjson

from homefeed.lake.base import LakeStore
from homefeed.lake.layout import persister_dir


@dataclass
class Batching:
    """``batch_records`` of the current cut, and per partition ("topic/partition") the offset
    where it began: a batch never starts before that, so a change of size never re-cuts
    records an earlier size already wrote."""

    batch_records: int
    since: dict[str, int] = field(default_factory=dict)


@dataclass
class PartitionProgress:
    committed: int = 0
    min_event_ms: int | None = None
    max_event_ms: int | None = None
    late_rows: int = 0


class PersisterState:
    def __init__(self, lake: LakeStore, group: str) -> None:
        self.lake = lake
        self.root = persister_dir(group)

    def _progress_path(self, topic: str) -> str:
        return f"{self.root}/progress/{topic}.json"

    def read_progress(self, topic: str) -> dict[int, PartitionProgress]:
        path = self._progress_path(topic)
        if not self.lake.exists(path):
            return {}
        doc = orjson.loads(self.lake.get_bytes(path))
        return {int(p): PartitionProgress(**v) for p, v in doc.items()}

    def write_progress(self, topic: str, progress: dict[int, PartitionProgress]) -> None:
        doc = {str(p): asdict(v) for p, v in sorted(progress.items())}
        self.lake.put_bytes(self._progress_path(topic), orjson.dumps(doc))

    def last_marked_hour(self) -> int | None:
        path = f"{self.root}/markers.json"
        if not self.lake.exists(path):
            return None
        value: int | None = orjson.loads(self.lake.get_bytes(path))["last_marked_hour_ms"]
        return value

    def batching(self) -> Batching | None:
        """How the lake's files are cut (None: nothing written yet)."""
        path = f"{self.root}/batching.json"
        if not self.lake.exists(path):
            return None
        doc = orjson.loads(self.lake.get_bytes(path))
        return Batching(doc["batch_records"], doc.get("since", {}))

    def set_batching(self, batching: Batching) -> None:
        self.lake.put_bytes(f"{self.root}/batching.json", orjson.dumps(asdict(batching)))

    def set_last_marked_hour(self, hour_ms: int) -> None:
        self.lake.put_bytes(
            f"{self.root}/markers.json", orjson.dumps({"last_marked_hour_ms": hour_ms})
        )
