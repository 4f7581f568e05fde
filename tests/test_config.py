import contextlib
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from homefeed.cli.main import app
from homefeed.config import ConfigError, HomefeedConfig, load_config, render_example


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(environ={})
    assert cfg.log.backend == "local" and cfg.log.retention_hours == 48


def test_example_config_is_valid_and_equals_the_defaults(tmp_path):
    path = tmp_path / "homefeed.toml"
    path.write_text(render_example())
    assert load_config(path, environ={}) == HomefeedConfig()


def test_env_overrides_nested_keys_with_underscores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        environ={
            "HOMEFEED_LOG_BACKEND": "kafka",
            "HOMEFEED_LOG_KAFKA_BOOTSTRAP_SERVERS": "b1:9092",
            "HOMEFEED_LOG_RETENTION_HOURS": "12",
            "HOMEFEED_PERSISTER_LATE_DELAY_MINUTES": "5",
        }
    )
    assert cfg.log.backend == "kafka" and cfg.log.kafka.bootstrap_servers == "b1:9092"
    assert cfg.log.retention_hours == 12 and cfg.persister.late_delay_minutes == 5


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[log]\nbackend = 'kafak'\n", "log.backend = 'kafak'"),
        ("[log]\npartitons = 3\n", "log.partitons"),
        ("[lake]\nuri = 3\n", "lake.uri = 3"),
        ("[sdk]\nbatch_size = 0\n", "sdk.batch_size = 0"),
        ("[log\n", "invalid TOML"),
    ],
)
def test_invalid_file_names_file_key_and_value(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_unknown_environment_variable_is_refused():
    with pytest.raises(ConfigError, match="HOMEFEED_LOG_BAKCEND"):
        load_config(environ={"HOMEFEED_LOG_BAKCEND": "kafka"})


def test_invalid_environment_value_names_the_key():
    with pytest.raises(ConfigError, match=r"log\.partitions"):
        load_config(environ={"HOMEFEED_LOG_PARTITIONS": "many"})


def test_cli_reports_bad_config_and_init_writes_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert tomllib.loads((tmp_path / "homefeed.toml").read_text())["log"]["backend"] == "local"
    assert runner.invoke(app, ["init"]).exit_code == 2  # refuses to overwrite
    (tmp_path / "homefeed.toml").write_text("[log]\nbackend = 'nope'\n")
    result = runner.invoke(app, ["topics"])
    assert result.exit_code == 2 and "log.backend" in result.output


@given(st.text(max_size=200))
def test_config_parser_never_crashes_otherwise(text):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.toml"
        path.write_text(text, encoding="utf-8")
        with contextlib.suppress(ConfigError):
            load_config(path, environ={})
