"""The model registry on every lake store: versions, manifests, fetch checks, promotions."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from homefeed.lake.base import LakeStore
from homefeed.models.registry import (
    CorruptModel,
    ModelRegistry,
    RegistryError,
    UnknownVersion,
    current_code_version,
)
from tests.conftest import LAKE_BACKENDS, make_lake

RANGE = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC))


@pytest.fixture(params=LAKE_BACKENDS)
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> LakeStore:
    return make_lake(request, tmp_path, request.param)


def _bundle(root: Path, seed: int) -> Path:
    """A bundle-shaped directory: bundle.json, arrays, a nested file, a binary one."""
    root.mkdir(parents=True)
    (root / "bundle.json").write_text(json.dumps({"seed": seed}))
    (root / "ranker.txt").write_text(f"tree {seed}\n" * 50)
    (root / "sources").mkdir()
    (root / "sources" / "embeddings.npy").write_bytes(bytes(range(256)) * (seed + 1))
    return root


def test_register_uploads_files_and_a_manifest(lake: LakeStore, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, "homefeed")
    bundle = _bundle(tmp_path / "b1", seed=1)
    version = registry.register(bundle, {"recall@100": 0.31, "auc": 0.7}, RANGE, "abc123")
    assert version == "v0001"
    stored = {f.path for f in lake.list("models/homefeed/v0001")}
    assert stored == {
        "models/homefeed/v0001/bundle.json",
        "models/homefeed/v0001/ranker.txt",
        "models/homefeed/v0001/sources/embeddings.npy",
        "models/homefeed/v0001/manifest.json",
    }
    model = registry.show("v0001")
    assert model.metrics == {"recall@100": 0.31, "auc": 0.7}
    assert model.data_range == {"start": RANGE[0].isoformat(), "end": RANGE[1].isoformat()}
    assert model.code_version == "abc123"
    data = (bundle / "sources" / "embeddings.npy").read_bytes()
    by_path = {f.path: f for f in model.files}
    assert by_path["sources/embeddings.npy"].size == len(data)
    assert by_path["sources/embeddings.npy"].sha256 == hashlib.sha256(data).hexdigest()
    assert datetime.fromisoformat(model.created_at).tzinfo is not None


def test_versions_count_up_and_list_in_order(lake: LakeStore, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, "homefeed")
    versions = [
        registry.register(_bundle(tmp_path / f"b{i}", i), {"i": i}, RANGE) for i in range(3)
    ]
    assert versions == ["v0001", "v0002", "v0003"]
    assert [m.version for m in registry.list()] == versions
    assert [m.metrics["i"] for m in registry.list()] == [0, 1, 2]
    # Another model name is another namespace.
    assert ModelRegistry(lake, "other").list() == []


def test_a_crashed_registration_is_invisible_and_its_number_not_reused(
    lake: LakeStore, tmp_path: Path
) -> None:
    registry = ModelRegistry(lake, "homefeed")
    registry.register(_bundle(tmp_path / "b1", 1), {}, RANGE)
    lake.put_bytes("models/homefeed/v0002/ranker.txt", b"half an upload")  # no manifest
    assert [m.version for m in registry.list()] == ["v0001"]
    assert registry.register(_bundle(tmp_path / "b3", 3), {}, RANGE) == "v0003"


def test_fetch_round_trips_every_byte(lake: LakeStore, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, "homefeed")
    bundle = _bundle(tmp_path / "b1", seed=2)
    version = registry.register(bundle, {}, RANGE)
    out = registry.fetch(version, tmp_path / "fetched" / version)
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == ["bundle.json", "ranker.txt", "sources/embeddings.npy"]
    for rel in got:
        assert (out / rel).read_bytes() == (bundle / rel).read_bytes()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


def test_fetch_detects_a_corrupted_file_and_leaves_nothing(lake: LakeStore, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, "homefeed")
    version = registry.register(_bundle(tmp_path / "b1", seed=1), {}, RANGE)
    path = "models/homefeed/v0001/ranker.txt"
    good = lake.get_bytes(path)
    lake.put_bytes(path, good[:-2] + b"X\n")  # same size, other bytes
    target = tmp_path / "fetched"
    with pytest.raises(CorruptModel, match=r"ranker\.txt is corrupt.*sha256"):
        registry.fetch(version, target)
    assert not target.exists()
    assert not list(tmp_path.glob(".tmp-fetch-*"))
    lake.put_bytes(path, good[:10])  # truncated
    with pytest.raises(CorruptModel, match=r"expected \d+ bytes"):
        registry.fetch(version, target)


def test_fetch_refuses_a_directory_with_files(lake: LakeStore, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, "homefeed")
    version = registry.register(_bundle(tmp_path / "b1", seed=1), {}, RANGE)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("mine")
    with pytest.raises(RegistryError, match="not empty"):
        registry.fetch(version, tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "mine"


def test_promote_and_rollback_follow_a_stack_with_history(lake: LakeStore, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, "homefeed")
    v1, v2, v3 = (registry.register(_bundle(tmp_path / f"b{i}", i), {}, RANGE) for i in range(3))
    assert registry.production() is None
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    assert registry.promote(v1) is None
    assert registry.promote(v2) == v1
    assert registry.promote(v3) == v2
    assert registry.production() == v3
    assert registry.rollback() == v2
    assert registry.production() == v2
    assert registry.rollback() == v1
    with pytest.raises(RegistryError, match="production is v0001"):
        registry.rollback()
    assert registry.production() == v1
    registry.promote(v3)
    assert registry.rollback() == v1
    history = registry.history()
    assert [(h["action"], h["version"], h["previous"]) for h in history] == [
        ("promote", v1, None),
        ("promote", v2, v1),
        ("promote", v3, v2),
        ("rollback", v2, v3),
        ("rollback", v1, v2),
        ("promote", v3, v1),
        ("rollback", v1, v3),
    ]
    # The state is one JSON file a reader elsewhere can use as is.
    state = json.loads(lake.get_bytes("models/homefeed/_state.json"))
    assert state["production"] == v1 and len(state["history"]) == 7
    # A fresh registry object (another process) sees the same pointer.
    assert ModelRegistry(lake, "homefeed").production() == v1


def test_unknown_versions_are_named(lake: LakeStore, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, "homefeed")
    registry.register(_bundle(tmp_path / "b1", seed=1), {}, RANGE)
    for call in (registry.show, registry.promote):
        with pytest.raises(UnknownVersion, match=r"no version v0009 .*versions: v0001"):
            call("v0009")
    with pytest.raises(UnknownVersion, match="not of the form"):
        registry.show("latest")
    with pytest.raises(UnknownVersion, match="no version v0009"):
        registry.fetch("v0009", tmp_path / "out")


def test_bad_input_is_refused_with_the_value(lake: LakeStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'Bad Name'"):
        ModelRegistry(lake, "Bad Name")
    registry = ModelRegistry(lake, "homefeed")
    with pytest.raises(RegistryError, match="does not exist"):
        registry.register(tmp_path / "nowhere", {}, RANGE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="has no files"):
        registry.register(tmp_path / "empty", {}, RANGE)
    with pytest.raises(RegistryError, match="metrics"):
        registry.register(_bundle(tmp_path / "b1", 1), {"auc": float("nan")}, RANGE)
    assert registry.list() == [] and lake.list("models") == []


def test_code_version_is_a_commit_or_the_package_version() -> None:
    version = current_code_version()
    assert len(version) == 40 or version.startswith("homefeed ")
