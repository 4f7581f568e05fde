"""What the operations console shows, as plain JSON-ready dicts: read-only views of the event
log, the lake, the job ledger, the model registry and the experiments.

Every function tolerates an empty log or lake (it returns empty lists, never raises for
absence), so a console on a fresh install says "nothing yet" instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson

from homefeed.config import HomefeedConfig
from homefeed.lake.base import LakeStore
from homefeed.log.base import EventLog

_PARTITION = re.compile(r"^(?P<table>[^/]+)/(?P<part>dt=[0-9-]{10}(?:/hr=\d\d)?)/(?P<name>[^/]+)$")
LAKE_PREFIXES = ("events", "tables")
DEPLOY = "deploy"


# ---- event log ---------------------------------------------------------------------------------


def topics_status(event_log: EventLog, group: str, group_topics: Sequence[str]) -> list[dict]:
    """Each topic with partitions, start/end offsets and the lag of ``group``.

    ``lag`` is None for a topic the group does not read (``group_topics``) and has no commits
    on: a number there would read as a backlog nobody is meant to drain.
    """
    specs = event_log.topics()
    infos = event_log.partitions_of([s.name for s in specs]) if specs else []
    out = []
    for spec in specs:
        parts = sorted((i for i in infos if i.topic == spec.name), key=lambda i: i.partition)
        committed = event_log.group_offsets(group, spec.name)
        reads = spec.name in group_topics or bool(committed)
        # A partition the group never committed is read from its start: all of it is lag.
        lags = [i.end_offset - committed.get(i.partition, i.start_offset) for i in parts]
        rows: list[dict[str, int | None]] = [
            {"partition": i.partition, "start": i.start_offset, "end": i.end_offset} for i in parts
        ]
        for row, lag in zip(rows, lags, strict=True):
            row["lag"] = lag if reads else None
        out.append(
            {
                "topic": spec.name,
                "partitions": rows,
                "retention_hours": spec.retention_ms / 3_600_000,
                "end": sum(i.end_offset for i in parts),
                "records": sum(i.end_offset - i.start_offset for i in parts),
                "lag": sum(lags) if reads else None,
            }
        )
    return out


# ---- lake ----------------------------------------------------------------------------------------


@dataclass
class _Table:
    prefix: str
    table: str
    files: int = 0
    bytes: int = 0
    partitions: set[str] = field(default_factory=set)
    complete: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        latest = max(self.partitions | self.complete, default=None)
        return {
            "prefix": self.prefix,
            "table": self.table,
            "files": self.files,
            "bytes": self.bytes,
            "partitions": len(self.partitions),
            "complete": len(self.complete),
            "latest": latest,
            "latest_complete": latest is not None and latest in self.complete,
        }


def lake_status(lake: LakeStore, prefixes: Sequence[str] = LAKE_PREFIXES) -> list[dict]:
    """Per table under ``prefixes``: partitions (``dt=`` or ``dt=/hr=``), files, bytes, how many
    partitions carry ``_SUCCESS`` and whether the latest one does."""
    tables: dict[tuple[str, str], _Table] = {}
    for prefix in prefixes:
        for info in lake.list(prefix):
            m = _PARTITION.match(info.path[len(prefix) + 1 :])
            if not m:
                continue
            key = (prefix, m["table"])
            t = tables.setdefault(key, _Table(prefix, m["table"]))
            if m["name"] == "_SUCCESS":
                t.complete.add(m["part"])
            elif m["name"].endswith(".parquet"):
                t.files += 1
                t.bytes += info.size
                t.partitions.add(m["part"])
    return [tables[k].to_json() for k in sorted(tables)]


# ---- jobs ----------------------------------------------------------------------------------------


def job_runs(lake: LakeStore, limit: int) -> list[dict]:
    """The latest ``limit`` runs of the job ledger, newest first."""
    from homefeed.jobs.runner import read_ledger

    return [asdict(r) for r in reversed(read_ledger(lake, limit=limit))]


# ---- models --------------------------------------------------------------------------------------


def model_names(lake: LakeStore, configured: str) -> list[str]:
    """The configured model name first, then every other name with files under ``models/``."""
    from homefeed.models.registry import MODELS

    found = {f.path.split("/")[1] for f in lake.list(MODELS) if f.path.count("/") >= 2}
    return [configured, *sorted(found - {configured})]


def models_status(lake: LakeStore, configured: str) -> list[dict]:
    """Per model name: its versions (oldest first, production marked) and the deploy state."""
    from homefeed.models.registry import ModelRegistry, RegistryError

    out = []
    for name in model_names(lake, configured):
        entry: dict[str, Any] = {"name": name, "versions": [], "production": None, "error": None}
        try:
            registry = ModelRegistry(lake, name)
            entry["production"] = registry.production()
            entry["versions"] = [_version_json(v) for v in registry.list()]
        except (RegistryError, ValueError, KeyError) as e:  # a corrupt entry must not hide others
            entry["error"] = f"{type(e).__name__}: {e}"
        for v in entry["versions"]:
            v["production"] = v["version"] == entry["production"]
        entry["deploy"] = deploy_state(lake, name)
        out.append(entry)
    return [e for e in out if e["versions"] or e["deploy"] or e["error"]]


def _version_json(version: Any) -> dict[str, Any]:
    return {
        "version": version.version,
        "created_at": version.created_at,
        "code_version": version.code_version,
        "metrics": _finite(version.metrics),
        "bytes": version.size,
    }


def deploy_state(lake: LakeStore, name: str) -> dict[str, Any] | None:
    """``deploy/<name>/state.json`` as written by the deployer, or None if there is none.

    Unreadable JSON is reported, not raised: the console must still show the rest."""
    path = f"{DEPLOY}/{name}/state.json"
    try:
        raw = lake.get_bytes(path)
    except FileNotFoundError:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return {"error": f"{path}: invalid JSON ({e})"}
    return doc if isinstance(doc, dict) else {"value": doc}


def _finite(value: Any) -> Any:
    """JSON can carry no NaN or infinity: they become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


# ---- experiments ---------------------------------------------------------------------------------


def has_exposures(lake: LakeStore) -> bool:
    return any(f.path.endswith(".parquet") for f in lake.list("events/exposure"))


def experiments_status(config: HomefeedConfig, lake: LakeStore) -> dict[str, Any]:
    """Configured experiments, and whether the lake has exposures to report on."""
    exposures = has_exposures(lake)
    experiments = [
        {
            "name": name,
            "salt": e.salt,
            "start": e.start.isoformat(),
            "end": e.end.isoformat() if e.end else None,
            "metrics": list(e.metrics),
            "control": e.control_name,
            "variants": [
                {"name": v.name, "weight": v.weight, "target": v.target} for v in e.variants
            ],
        }
        for name, e in sorted(config.experiments.definitions.items())
    ]
    return {"experiments": experiments, "has_exposures": exposures}


def experiment_report(config: HomefeedConfig, lake: LakeStore, name: str) -> dict[str, Any]:
    """The report of experiment ``name`` over the lake (DuckDB in process), as JSON.

    KeyError (naming the configured experiments) if ``name`` is not configured."""
    from homefeed.experiments.analysis import experiment_report as report_of
    from homefeed.jobs.catalog import register_lake
    from homefeed.jobs.engines import open_engine

    config.experiments.get(name)
    engine = open_engine(config.engine, "duckdb")
    try:
        register_lake(engine, lake)
        return report_of(engine, name, config.experiments).to_dict()
    finally:
        engine.close()


# ---- users ---------------------------------------------------------------------------------------


def active_users(backend: Any, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` users with the most engagements in the backend's snapshot, most first.

    Only backends built on ``TrainingData`` (``SimpleBackend`` and its subclasses) know their
    users; any other backend gives an empty list, and the UI then asks for an id."""
    data = getattr(backend, "data", None)
    if data is None or not len(data.engagements.user_id):
        return []
    users, counts = np.unique(data.engagements.user_id, return_counts=True)
    top = np.argsort(-counts, kind="stable")[:limit]
    return [user_json(backend, int(users[i])) or {} for i in top]


def boards_of(backend: Any, user_id: int) -> list[int]:
    """The boards ``user_id`` owns, by id (empty if the backend has no board data)."""
    data = getattr(backend, "data", None)
    if data is None:
        return []
    owner = data.board_owner
    return sorted(int(b) for b in np.unique(owner.src[owner.dst == user_id]))


def user_json(backend: Any, user_id: int) -> dict[str, Any] | None:
    """The backend's view of a user plus their boards; None for an unknown user."""
    info = backend.user(user_id)
    if info is None:
        return None
    doc = asdict(info) | {"top_topics": list(info.top_topics)}
    return doc | {"boards": boards_of(backend, user_id)}
