"""The model registry: trained bundles as numbered versions in the lake, and which one serves.

Layout (all through the ``LakeStore`` API, so it works on a local lake and on S3)::

    models/<name>/v0001/<bundle files>      uploaded as they are in the bundle directory
    models/<name>/v0001/manifest.json       written last: metrics, data range, created time,
                                            code version, every file with its size and sha256
    models/<name>/_state.json               production version, promotion stack, history

A version exists once its manifest does: a registration that crashed part-way leaves files
without a manifest, which ``list`` ignores and the next registration skips over (version
numbers are never reused). ``_state.json`` is replaced by one atomic put per change.

Not a lock service: two processes registering or promoting at the same instant may race (the
later write wins). Training runs are scheduled one at a time, which is what this relies on.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homefeed.lake.base import LakeStore

MODELS = "models"
MANIFEST = "manifest.json"
STATE = "_state.json"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^v(\d{4,})$")


class RegistryError(Exception):
    """A registry operation cannot be done; the message says why (unknown version, ...)."""


class UnknownVersion(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CorruptModel(RegistryError):
    """A fetched file does not match its manifest (size or sha256)."""


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the version directory, '/'-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as its manifest describes it."""

    name: str
    version: str
    created_at: str
    code_version: str
    data_range: dict[str, str]
    metrics: dict[str, Any]
    files: tuple[ModelFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "code_version": self.code_version,
            "data_range": self.data_range,
            "metrics": self.metrics,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ModelVersion:
        return cls(
            name=doc["name"],
            version=doc["version"],
            created_at=doc["created_at"],
            code_version=doc["code_version"],
            data_range=dict(doc["data_range"]),
            metrics=dict(doc["metrics"]),
            files=tuple(ModelFile(f["path"], int(f["size"]), f["sha256"]) for f in doc["files"]),
        )


class ModelRegistry:
    """Versions of the model ``name`` in ``lake``; see the module docstring for the layout."""

    def __init__(self, lake: LakeStore, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"model name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        self.lake = lake
        self.name = name
        self.root = f"{MODELS}/{name}"

    # ---- versions ----------------------------------------------------------------------------

    def register(
        self,
        bundle_dir: str | os.PathLike[str],
        metrics: Mapping[str, Any],
        data_range: tuple[datetime, datetime] | Mapping[str, str],
        code_version: str | None = None,
    ) -> str:
        """Upload every file of ``bundle_dir`` as a new version; returns it (``v0001``, ...)."""
        directory = Path(bundle_dir)
        files = _bundle_files(directory)
        checked_metrics, checked_range = _metrics_json(metrics), _range_json(data_range)
        version = self._next_version()
        described = []
        for rel, local in files:
            data = local.read_bytes()
            self.lake.put_bytes(f"{self.root}/{version}/{rel}", data)
            described.append(ModelFile(rel, len(data), hashlib.sha256(data).hexdigest()))
        manifest = ModelVersion(
            name=self.name,
            version=version,
            created_at=_now(),
            code_version=code_version or current_code_version(),
            data_range=checked_range,
            metrics=checked_metrics,
            files=tuple(described),
        )
        self.lake.put_bytes(self._manifest_path(version), _dumps(manifest.to_json()))
        return version

    def list(self) -> list[ModelVersion]:
        """Every complete version (one with a manifest), oldest first."""
        names = sorted(self._version_dirs(with_manifest=True), key=_version_number)
        return [self.show(v) for v in names]

    def show(self, version: str) -> ModelVersion:
        """The manifest of ``version``; ``UnknownVersion`` if there is none."""
        _check_version(version)
        try:
            doc = json.loads(self.lake.get_bytes(self._manifest_path(version)))
        except FileNotFoundError:
            raise self._unknown(version) from None
        return ModelVersion.from_json(doc)

    def fetch(self, version: str, local_dir: str | os.PathLike[str]) -> Path:
        """Download ``version`` into ``local_dir`` (created; must not hold files) and verify it.

        Files land in a temporary sibling directory first and are checked against the
        manifest's sizes and sha256; only a complete, verified copy is renamed to
        ``local_dir``. A mismatch raises ``CorruptModel`` naming the file.
        """
        model = self.show(version)
        target = Path(local_dir)
        if target.exists() and any(target.iterdir()):
            raise RegistryError(f"fetch {self.name} {version}: {target} exists and is not empty")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-fetch-{uuid.uuid4().hex}"
        try:
            for f in model.files:
                self._download(model, f, tmp)
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _download(self, model: ModelVersion, f: ModelFile, into: Path) -> None:
        data = self.lake.get_bytes(f"{self.root}/{model.version}/{f.path}")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != f.size or digest != f.sha256:
            raise CorruptModel(
                f"{self.name} {model.version}: file {f.path} is corrupt in "
                f"{self.lake.location(f'{self.root}/{model.version}/{f.path}')}: expected "
                f"{f.size} bytes sha256 {f.sha256}, got {len(data)} bytes sha256 {digest}"
            )
        out = into / f.path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)

    # ---- production pointer ------------------------------------------------------------------

    def production(self) -> str | None:
        """The promoted version, or None if nothing was ever promoted (or all rolled back)."""
        stack = self._state()["stack"]
        return stack[-1] if stack else None

    def promote(self, version: str) -> str | None:
        """Make ``version`` the production version; returns the one it replaced."""
        self.show(version)  # it must exist
        state = self._state()
        previous = state["stack"][-1] if state["stack"] else None
        if previous != version:
            state["stack"].append(version)
        self._write_state(state, "promote", version, previous)
        return previous

    def rollback(self) -> str:
        """Back to the version promoted before the current one; returns it.

        Promotions form a stack: promote v1, v2, v3 then rollback gives v2, again gives v1.
        """
        state = self._state()
        if len(state["stack"]) < 2:
            current = state["stack"][-1] if state["stack"] else "none"
            raise RegistryError(
                f"{self.name}: nothing to roll back to (production is {current}, "
                "no earlier promotion)"
            )
        previous = state["stack"].pop()
        self._write_state(state, "rollback", state["stack"][-1], previous)
        return str(state["stack"][-1])

    def history(self) -> builtins.list[dict[str, Any]]:
        """Every promotion and rollback, oldest first: action, version, previous, at."""
        return builtins.list(self._state()["history"])

    # ---- internals ---------------------------------------------------------------------------

    def _manifest_path(self, version: str) -> str:
        return f"{self.root}/{version}/{MANIFEST}"

    def _version_dirs(self, with_manifest: bool) -> set[str]:
        found = set()
        for info in self.lake.list(self.root):
            parts = info.path[len(self.root) + 1 :].split("/")
            complete = not with_manifest or parts[1:] == [MANIFEST]
            if len(parts) > 1 and _VERSION.match(parts[0]) and complete:
                found.add(parts[0])
        return found

    def _next_version(self) -> str:
        # Directories without a manifest count too: a crashed upload's number is not reused.
        numbers = [_version_number(v) for v in self._version_dirs(with_manifest=False)]
        return f"v{max(numbers, default=0) + 1:04d}"

    def _unknown(self, version: str) -> UnknownVersion:
        known = sorted(self._version_dirs(with_manifest=True), key=_version_number)
        listed = ", ".join(known) if known else "none registered"
        return UnknownVersion(
            f"model {self.name} has no version {version} in {self.lake.location(self.root)} "
            f"(versions: {listed})"
        )

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.lake.get_bytes(f"{self.root}/{STATE}"))
        except FileNotFoundError:
            return {"stack": [], "history": []}
        return {"stack": list(state["stack"]), "history": list(state["history"])}

    def _write_state(
        self, state: dict[str, Any], action: str, version: str, previous: str | None
    ) -> None:
        state["history"].append(
            {"action": action, "version": version, "previous": previous, "at": _now()}
        )
        doc = {"name": self.name, "production": version, **state}
        self.lake.put_bytes(f"{self.root}/{STATE}", _dumps(doc))


def current_code_version() -> str:
    """``git rev-parse HEAD`` of the source tree when it is a checkout, else the package version."""
    import homefeed

    source = Path(homefeed.__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    return f"homefeed {homefeed.__version__}"


def _bundle_files(directory: Path) -> list[tuple[str, Path]]:
    if not directory.is_dir():
        raise RegistryError(f"bundle directory {directory} does not exist or is not a directory")
    files = sorted(
        (p.relative_to(directory).as_posix(), p) for p in directory.rglob("*") if p.is_file()
    )
    if not files:
        raise RegistryError(f"bundle directory {directory} has no files")
    if any(rel == MANIFEST for rel, _ in files):
        raise RegistryError(f"bundle directory {directory} has a file named {MANIFEST}: reserved")
    return files


def _check_version(version: str) -> None:
    if not isinstance(version, str) or not _VERSION.match(version):
        raise UnknownVersion(f"version {version!r} is not of the form v0001")


def _version_number(version: str) -> int:
    match = _VERSION.match(version)
    assert match, version
    return int(match.group(1))


def _range_json(data_range: tuple[datetime, datetime] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(data_range, Mapping):
        return {"start": str(data_range["start"]), "end": str(data_range["end"])}
    start, end = data_range
    return {"start": start.isoformat(), "end": end.isoformat()}


def _metrics_json(metrics: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(metrics), allow_nan=False)))
    except (TypeError, ValueError) as e:
        raise RegistryError(f"metrics must be JSON numbers, strings or objects: {e}") from None


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = [
    "CorruptModel",
    "ModelFile",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "UnknownVersion",
    "current_code_version",
]
