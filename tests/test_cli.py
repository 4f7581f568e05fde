"""The command line: help everywhere, clear errors, and the event file door."""

import orjson
import pytest
import typer
from typer.testing import CliRunner

from homefeed.cli.main import app
from homefeed.testing.events import valid_event


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def _all_commands(group, prefix: list[str]):
    yield prefix
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            yield from _all_commands(command, [*prefix, name])
        else:
            yield [*prefix, name]


def test_every_command_has_help(runner):
    root = typer.main.get_command(app)
    commands = list(_all_commands(root, []))
    assert len(commands) > 12
    for path in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_events_produce_reports_each_bad_line_and_keeps_the_good_ones(runner, tmp_path):
    lines = [
        orjson.dumps(valid_event("click")),
        b'{"event_type": "click", "user_id": 1}',
        b"not json at all",
        orjson.dumps(valid_event("save", board_id=-5)),
        b"",
        orjson.dumps(valid_event("hide")),
    ]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = runner.invoke(app, ["events", "produce", "events.jsonl"])
    assert result.exit_code == 1
    out = result.output
    assert "line 2 rejected (missing_field) field" in out
    assert "line 3 rejected (not_json)" in out
    assert "line 4 rejected (invalid_field) field board_id" in out and "-5" in out
    assert "2 accepted, 3 rejected to events.dead_letter" in out
    dead = runner.invoke(app, ["events", "dead-letters"])
    assert dead.exit_code == 0 and "3 dead letters" in dead.output and "board_id" in dead.output
    topics = runner.invoke(app, ["topics"])
    assert topics.exit_code == 0
    assert "events.click" in topics.output and "48 h" in topics.output


def test_produce_of_a_missing_file_is_a_clear_error(runner):
    result = runner.invoke(app, ["events", "produce", "nope.jsonl"])
    assert result.exit_code == 2 and "nope.jsonl: no such file" in result.output


def test_topics_show_persister_lag(runner, tmp_path):
    (tmp_path / "e.jsonl").write_bytes(
        b"\n".join(orjson.dumps(valid_event("click", pin_id=i)) for i in range(7))
    )
    assert runner.invoke(app, ["events", "produce", "e.jsonl"]).exit_code == 0
    before = runner.invoke(app, ["topics"]).output
    assert (
        next(line for line in before.splitlines() if "events.click" in line)
        .rstrip(" │")
        .endswith("7")
    )
    assert runner.invoke(app, ["persist"]).exit_code == 0
    after = runner.invoke(app, ["topics"]).output
    assert (
        next(line for line in after.splitlines() if "events.click" in line)
        .rstrip(" │")
        .endswith("0")
    )
