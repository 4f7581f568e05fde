"""The schema registry: versioned JSON Schemas kept in the repository.

Layout: ``schemas/<event_type>/v<N>.json``. A published version never changes in place
(``schemas.lock`` holds each version's fingerprint); a change is a new version, and it must be
backward compatible with the one before it: no field removed, none retyped, no new required
field. That is the rule Confluent's registry calls BACKWARD for JSON Schema, and it lets the
lake's tables grow columns without breaking a reader of older partitions.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

SCHEMA_DIR = Path(__file__).parent / "schemas"
LOCK_FILE = Path(__file__).parent / "schemas.lock"
TOPIC_PREFIX = "events."
DEAD_LETTER_TOPIC = "events.dead_letter"


class SchemaError(Exception):
    """The registry itself is invalid or an incompatible change was made."""


@dataclass(frozen=True)
class EventSchema:
    event_type: str
    version: int
    document: dict[str, Any] = field(repr=False)

    @property
    def topic(self) -> str:
        return TOPIC_PREFIX + self.event_type

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        props: dict[str, dict[str, Any]] = self.document["properties"]
        return props

    @property
    def required(self) -> frozenset[str]:
        return frozenset(self.document.get("required", ()))

    def fingerprint(self) -> str:
        canonical = json.dumps(self.document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The lake table's columns, in schema order; absent optional fields become nulls."""
        return pa.schema(
            [
                pa.field(name, arrow_type(spec), nullable=name not in self.required)
                for name, spec in self.properties.items()
            ]
        )


def arrow_type(spec: dict[str, Any]) -> pa.DataType:
    kind = spec.get("type")
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "string":
        return pa.timestamp("ms", tz="UTC") if spec.get("format") == "date-time" else pa.string()
    if kind == "array":
        return pa.list_(arrow_type(spec["items"]))
    if kind == "object":
        required = set(spec.get("required", ()))
        return pa.struct(
            [
                pa.field(k, arrow_type(v), nullable=k not in required)
                for k, v in spec["properties"].items()
            ]
        )
    raise SchemaError(f"no lake column type for JSON Schema type {kind!r}")


def _type_signature(spec: dict[str, Any]) -> Any:
    """What 'retyping a field' compares: the JSON type, format and nested shape."""
    kind = spec.get("type")
    if kind == "array":
        return ("array", _type_signature(spec["items"]))
    if kind == "object":
        return ("object", {k: _type_signature(v) for k, v in spec.get("properties", {}).items()})
    return (kind, spec.get("format"))


def compatibility_problems(old: EventSchema, new: EventSchema) -> list[str]:
    """Why ``new`` cannot follow ``old``; empty when the change is backward compatible."""
    problems = []
    where = f"{new.event_type} v{old.version} -> v{new.version}"
    for name, spec in old.properties.items():
        if name not in new.properties:
            problems.append(f"{where}: field {name!r} removed")
        elif _type_signature(spec) != _type_signature(new.properties[name]):
            problems.append(
                f"{where}: field {name!r} retyped from {_type_signature(spec)} "
                f"to {_type_signature(new.properties[name])}"
            )
    for name in sorted(new.required - old.required):
        if name != "schema_version":
            problems.append(f"{where}: new required field {name!r} (old events lack it)")
    return problems


class SchemaRegistry:
    """All versions of all event types; the newest version of each is the one producers use."""

    def __init__(self, root: Path = SCHEMA_DIR, lock_file: Path | None = LOCK_FILE) -> None:
        self.root = root
        self.lock_file = lock_file
        self.versions: dict[str, list[EventSchema]] = {}
        if not root.is_dir():
            raise SchemaError(f"schema directory {root} does not exist")
        for type_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            self.versions[type_dir.name] = self._load_type(type_dir)

    @staticmethod
    def _load_type(type_dir: Path) -> list[EventSchema]:
        found = []
        for file in type_dir.glob("v*.json"):
            try:
                version = int(file.stem[1:])
                doc = json.loads(file.read_text(encoding="utf-8"))
            except (ValueError, json.JSONDecodeError) as e:
                raise SchemaError(f"{file}: {e}") from e
            if doc.get("properties", {}).get("event_type", {}).get("const") != type_dir.name:
                raise SchemaError(f"{file}: event_type const must be {type_dir.name!r}")
            found.append(EventSchema(type_dir.name, version, doc))
        found.sort(key=lambda s: s.version)
        if [s.version for s in found] != list(range(1, len(found) + 1)):
            raise SchemaError(f"{type_dir}: versions must be v1.json, v2.json, ... without gaps")
        return found

    @property
    def event_types(self) -> list[str]:
        return sorted(self.versions)

    def latest(self, event_type: str) -> EventSchema:
        return self.versions[event_type][-1]

    def get(self, event_type: str, version: int) -> EventSchema:
        return self.versions[event_type][version - 1]

    def topics(self) -> list[str]:
        return [TOPIC_PREFIX + t for t in self.event_types]

    def check(self) -> list[str]:
        """Every problem in the registry: incompatible versions and edited published versions."""
        problems: list[str] = []
        for versions in self.versions.values():
            for old, new in itertools.pairwise(versions):
                problems += compatibility_problems(old, new)
        lock = self._read_lock()
        for key, fingerprint in lock.items():
            event_type, _, v = key.partition("/v")
            if event_type not in self.versions or int(v) > len(self.versions[event_type]):
                problems.append(f"{key}: published version was deleted")
            elif self.get(event_type, int(v)).fingerprint() != fingerprint:
                problems.append(f"{key}: published version was edited; add a new version instead")
        return problems

    def check_against(self, baseline: SchemaRegistry) -> list[str]:
        """Problems of this registry as a successor of ``baseline`` (e.g. the main branch's)."""
        problems: list[str] = []
        for event_type, old_versions in baseline.versions.items():
            if event_type not in self.versions:
                problems.append(f"{event_type}: event type removed")
                continue
            problems += compatibility_problems(old_versions[-1], self.latest(event_type))
        return problems

    def _read_lock(self) -> dict[str, str]:
        if self.lock_file is None or not self.lock_file.exists():
            return {}
        lock: dict[str, str] = json.loads(self.lock_file.read_text(encoding="utf-8"))
        return lock

    def write_lock(self) -> None:
        """Record every version as published (run after ``check`` passes)."""
        if self.lock_file is None:
            raise SchemaError("this registry has no lock file")
        lock = {
            f"{s.event_type}/v{s.version}": s.fingerprint()
            for versions in self.versions.values()
            for s in versions
        }
        self.lock_file.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
