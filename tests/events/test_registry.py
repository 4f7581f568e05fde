import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from homefeed.cli.main import app
from homefeed.events.registry import SCHEMA_DIR, SchemaRegistry


def test_every_event_type_is_registered():
    registry = SchemaRegistry()
    assert registry.event_types == [
        "board_create",
        "click",
        "closeup",
        "exposure",
        "follow",
        "hide",
        "impression",
        "pin_create",
        "save",
    ]
    impression = registry.latest("impression")
    for field in [
        "event_id",
        "user_id",
        "event_time",
        "surface",
        "client",
        "request_id",
        "position",
        "candidate_source",
        "model_version",
    ]:
        assert field in impression.required


def test_repository_registry_is_compatible_and_locked():
    assert SchemaRegistry().check() == []


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, root)
    return root


def _add_version(root: Path, event_type: str, change) -> None:
    doc = json.loads((root / event_type / "v1.json").read_text())
    change(doc)
    doc["properties"]["schema_version"]["const"] = 2
    (root / event_type / "v2.json").write_text(json.dumps(doc))


def test_adding_an_optional_field_is_compatible(tmp_path):
    root = _copy(tmp_path)
    _add_version(root, "click", lambda d: d["properties"].update(dwell_ms={"type": "integer"}))
    assert SchemaRegistry(root, lock_file=None).check() == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["properties"].pop("pin_id"), "field 'pin_id' removed"),
        (lambda d: d["properties"].update(pin_id={"type": "string"}), "field 'pin_id' retyped"),
        (
            lambda d: (
                d["properties"].update(dwell_ms={"type": "integer"}),
                d["required"].append("dwell_ms"),
            ),
            "new required field 'dwell_ms'",
        ),
    ],
)
def test_incompatible_changes_are_refused(tmp_path, change, expected):
    root = _copy(tmp_path)
    _add_version(root, "click", change)
    problems = SchemaRegistry(root, lock_file=None).check()
    assert any(expected in p for p in problems), problems


def test_editing_a_published_version_is_refused(tmp_path):
    root = _copy(tmp_path)
    lock = tmp_path / "schemas.lock"
    SchemaRegistry(root, lock_file=lock).write_lock()
    doc = json.loads((root / "hide" / "v1.json").read_text())
    doc["properties"]["reason"]["enum"].append("boring")
    (root / "hide" / "v1.json").write_text(json.dumps(doc))
    assert any(
        "hide/v1: published version was edited" in p for p in SchemaRegistry(root, lock).check()
    )


def test_cli_schemas_check_against_baseline(tmp_path, monkeypatch):
    baseline = _copy(tmp_path / "base")
    result = CliRunner().invoke(app, ["schemas", "check", "--against", str(baseline)])
    assert result.exit_code == 0, result.output
    # A baseline that has a field the current registry lacks: the current one removed it.
    _add_version(baseline, "save", lambda d: d["properties"].update(note={"type": "string"}))
    result = CliRunner().invoke(app, ["schemas", "check", "--against", str(baseline)])
    assert result.exit_code == 1
    assert "field 'note' removed" in result.output
