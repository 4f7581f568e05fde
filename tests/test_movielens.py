"""MovieLens import on a small hand-made directory in u.data / u.item / u.genre format."""

import pytest
from typer.testing import CliRunner

from homefeed.cli.main import app
from homefeed.config import LocalLogConfig
from homefeed.events import EventLogger
from homefeed.importers.movielens import MovieLensFormatError, import_movielens
from homefeed.log.local import LocalLog

GENRES = "unknown|0\nAction|1\nChildren's|2\nSci-Fi|3\n"
ITEMS = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0\n"
    "2|Alien (1979)|01-Jan-1979||http://y|0|1|0|1\n"
)
RATINGS = "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t2\t4\t881251000\n"


@pytest.fixture
def movielens(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.genre").write_text(GENRES)
    (d / "u.item").write_text(ITEMS)
    (d / "u.data").write_text(RATINGS)
    return d


def _events(log, topic):
    import orjson

    with log.consumer("check", [topic]) as c:
        return [orjson.loads(r.value) for r in c.poll(1000, 0.3)]


def test_ratings_become_saves_and_clicks_at_their_own_times(tmp_path, movielens):
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "log")))
    with EventLogger(log) as logger:
        report = import_movielens(movielens, logger)
    assert (report.ratings, report.saves, report.clicks, report.movies, report.users) == (
        3,
        2,
        1,
        2,
        2,
    )
    assert report.rejected == 0
    saves = sorted(_events(log, "events.save"), key=lambda e: e["event_time"])
    assert [(e["user_id"], e["pin_id"], e["board_id"]) for e in saves] == [(1, 1, 1), (2, 2, 2)]
    assert saves[0]["event_time"] == "1997-12-04T15:55:49.000Z"
    pins = {e["pin_id"]: e for e in _events(log, "events.pin_create")}
    assert pins[1]["topics"] == ["childrens"] and pins[2]["topics"] == ["action", "sci-fi"]
    assert [e["pin_id"] for e in _events(log, "events.click")] == [2]


def test_a_malformed_line_is_reported_with_file_and_line(tmp_path, movielens):
    (movielens / "u.data").write_text(RATINGS + "3\tnot-an-id\t4\t881251000\n")
    log = LocalLog(LocalLogConfig(path=str(tmp_path / "log")))
    with EventLogger(log) as logger, pytest.raises(MovieLensFormatError, match=r"u\.data:4"):
        import_movielens(movielens, logger)


def test_cli_import_then_persist(tmp_path, movielens, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    result = runner.invoke(app, ["import", "movielens", str(movielens)])
    assert result.exit_code == 0, result.output
    assert "3 ratings from 2 users" in result.output
    result = runner.invoke(app, ["persist"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["lake", "summary"])
    assert "events/save" in result.output
    assert runner.invoke(app, ["import", "movielens", str(tmp_path / "nope")]).exit_code == 2
