"""The container stack, checked without a Docker engine: docker-compose.yml parses and is
consistent (profiles, healthchecks, depends_on, host ports), every homefeed command it runs
exists in the CLI, every HOMEFEED_* variable names a config key with a valid value, the
Dockerfile copies files that exist, ports agree with the config defaults, and the health-check
script works against real sockets."""

from __future__ import annotations

import http.server
import importlib.util
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from homefeed.cli.main import app
from homefeed.config import ConfigError, KafkaLogConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROFILES = {"kafka", "s3", "redis", "spark", "trino", "app", "jobs"}

# Commands the compose file runs that other engineers are writing now. The test asserts this
# is exactly the missing set, so it fails (and this list must be emptied) once they land.
PENDING_COMMANDS: set[str] = set()
# HOMEFEED_* variables of config sections not yet mounted on HomefeedConfig (serving.api):
# likewise asserted to be exactly the set the config rejects today.
PENDING_ENV: set[str] = set()
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def homefeed_services() -> dict[str, dict[str, Any]]:
    """Services that run the homefeed image (built from docker/Dockerfile)."""
    return {
        name: s
        for name, s in SERVICES.items()
        if s.get("build", {}).get("dockerfile") == "docker/Dockerfile"
    }


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the variable unset: the default."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    tokens = shlex.split(command) if isinstance(command, str) else list(command)
    return [interpolate(t) for t in tokens]


# ---- compose structure ---------------------------------------------------------------------


def test_compose_has_the_basic_shape():
    assert set(COMPOSE) - {"name", "services", "volumes", "networks"} <= {
        k for k in COMPOSE if k.startswith("x-")
    }
    for name, service in SERVICES.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name), name
        assert "image" in service or "build" in service, name
        assert service.get("profiles"), f"{name} has no profile: it would start by default"
        assert set(service["profiles"]) <= PROFILES, (name, service["profiles"])
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"
    wanted = {"kafka", "minio", "minio-init", "redis", "spark-master", "spark-worker", "trino"}
    assert wanted | {"feed", "ranker", "persister", "jobs"} <= set(SERVICES)
    assert {p for s in SERVICES.values() for p in s["profiles"]} == PROFILES


def test_every_service_has_a_healthcheck():
    duration = re.compile(r"^\d+(ms|s|m)$")
    for name, service in SERVICES.items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                assert duration.match(check[key]), (name, key, check[key])


def test_depends_on_names_services_that_are_up_whenever_the_dependent_is():
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        deps = service.get("depends_on", {})
        deps = (
            {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        )
        for dep, spec in deps.items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            assert spec["condition"] in conditions, (name, dep, spec)
            # Compose refuses to start a service whose dependency's profiles are all inactive.
            missing = set(service["profiles"]) - set(SERVICES[dep]["profiles"])
            assert not missing, f"{name} in {missing} but its dependency {dep} is not"
            if spec["condition"] == "service_completed_successfully":
                assert SERVICES[dep].get("restart") == "no", f"{dep} is one-shot"


def host_ports() -> list[tuple[str, int, int]]:
    found = []
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            parts = str(mapping).split(":")
            assert len(parts) == 2, f"{name}: write ports as HOST:CONTAINER, got {mapping}"
            found.append((name, int(parts[0]), int(parts[1])))
    return found


def test_no_two_services_publish_the_same_host_port():
    seen: dict[int, str] = {}
    for name, host, _ in host_ports():
        assert host not in seen, f"host port {host}: {seen.get(host)} and {name}"
        seen[host] = name


# ---- homefeed commands and configuration ---------------------------------------------------


def _is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def missing_command(tokens: list[str]) -> str | None:
    """The subcommand path of ``tokens`` if the CLI lacks it; checks options of found ones."""
    command: Any = typer.main.get_command(app)  # typer's own (vendored) click classes
    path: list[str] = []
    rest = list(tokens)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        path.append(rest.pop(0))
        sub = command.commands.get(path[-1])
        if sub is None:
            missing = " ".join(path)
            while rest and not rest[0].startswith("-"):
                missing += " " + rest.pop(0)  # "ranker serve" when "ranker" is missing
            return missing
        command = sub
    assert not _is_group(command), f"{tokens}: names a group, not a command"
    options = {o for p in command.params for o in getattr(p, "opts", [])}
    for token in rest:
        if token.startswith("--"):
            assert token.split("=")[0] in options, f"{' '.join(path)}: unknown option {token}"
    return None


def test_every_homefeed_command_exists_or_is_pending():
    commands = {name: argv(s) for name, s in homefeed_services().items()}
    assert {"feed", "ranker", "persister", "jobs"} <= set(commands)
    missing = {m for tokens in commands.values() if (m := missing_command(tokens)) is not None}
    assert missing == PENDING_COMMANDS, (
        f"missing now: {sorted(missing)}; update PENDING_COMMANDS in {__file__}"
    )
    assert commands["persister"] == ["persist", "--follow"]
    assert commands["feed"] == ["serve"] and commands["ranker"] == ["ranker", "serve"]
    assert commands["jobs"][0] == "backfill"


@pytest.fixture
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./homefeed.toml: defaults plus the variables only
    monkeypatch.delenv("HOMEFEED_CONFIG", raising=False)


def test_every_homefeed_variable_names_a_config_key_with_a_valid_value(no_config_file):
    unknown: set[str] = set()
    for name, service in SERVICES.items():
        env = {k: v for k, v in environment(service).items() if k.startswith("HOMEFEED_")}
        for var, value in env.items():
            try:
                load_config(environ={var: value})
            except ConfigError as e:
                assert "names no configuration key" in str(e), f"{name}: {e}"
                unknown.add(var)
        known = {k: v for k, v in env.items() if k not in PENDING_ENV}
        config = load_config(environ=known)  # all together: values valid, no conflicts
        if name in homefeed_services():
            assert config.log.backend == "kafka" and config.lake.uri == "s3://homefeed/lake"
            assert config.lake.s3.endpoint_url == "http://minio:9000"
    assert unknown == PENDING_ENV, (
        f"unknown now: {sorted(unknown)}; update PENDING_ENV in {__file__}"
    )


# ---- ports ----------------------------------------------------------------------------------


def container_port(service: str) -> int:
    ports = [c for name, _, c in host_ports() if name == service]
    assert len(ports) == 1, (service, ports)
    return ports[0]


def test_ports_agree_with_the_config_defaults():
    from homefeed.serving.api.settings import FeedServiceConfig
    from homefeed.serving.settings import OnlineStoreConfig, RankerServiceConfig

    feed_port, ranker_port = FeedServiceConfig().port, RankerServiceConfig().port
    assert container_port("feed") == feed_port
    assert environment(SERVICES["feed"])["HOMEFEED_SERVING_API_PORT"] == str(feed_port)
    assert f"127.0.0.1:{feed_port}/healthz" in " ".join(SERVICES["feed"]["healthcheck"]["test"])
    assert container_port("ranker") == ranker_port
    for name in ("feed", "ranker"):
        assert environment(SERVICES[name])["HOMEFEED_SERVING_RANKER_PORT"] == str(ranker_port)
    assert f"127.0.0.1:{ranker_port}" in SERVICES["ranker"]["healthcheck"]["test"]
    kafka_port = int(KafkaLogConfig().bootstrap_servers.rsplit(":", 1)[1])
    assert f"INTERNAL://:{kafka_port}" in SERVICES["kafka"]["environment"]["KAFKA_LISTENERS"]
    assert environment(SERVICES["feed"])["HOMEFEED_LOG_KAFKA_BOOTSTRAP_SERVERS"] == (
        f"kafka:{kafka_port}"
    )
    redis_port = urlsplit(OnlineStoreConfig().redis_url).port
    assert container_port("redis") == redis_port
    assert urlsplit(environment(SERVICES["feed"])["HOMEFEED_SERVING_ONLINE_REDIS_URL"]).port == (
        redis_port
    )
    exposed = re.search(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), re.M)
    assert exposed and {int(p) for p in exposed.group(1).split()} == {feed_port, ranker_port}


# ---- Dockerfile -----------------------------------------------------------------------------


def copy_sources() -> list[str]:
    sources = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        tokens = line.split()
        if tokens[:1] == ["COPY"] and not any(t.startswith("--from") for t in tokens):
            sources += [t for t in tokens[1:-1] if not t.startswith("--")]
    return sources


def test_dockerfile_copies_files_that_exist_and_are_in_the_build_context():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert "-c requirements.lock" in text
    assert re.search(r"^USER homefeed$", text, re.M) and "HEALTHCHECK" in text
    assert re.search(r'^ENTRYPOINT \["homefeed"\]$', text, re.M)
    sources = copy_sources()
    assert {"pyproject.toml", "requirements.lock", "homefeed", "docker/healthcheck.py"} <= set(
        sources
    )
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    included = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert source in included, f"COPY {source}: excluded by Dockerfile.dockerignore"
    scripts = {'homefeed = "homefeed.cli.main:main"'}
    assert scripts <= set((ROOT / "pyproject.toml").read_text().splitlines())


def test_spark_cluster_matches_the_locked_pyspark():
    locked = re.search(r"^pyspark==(\d+\.\d+)\.", (ROOT / "requirements.lock").read_text(), re.M)
    assert locked, "pyspark is not in requirements.lock"
    for name in ("spark-master", "spark-worker"):
        image = interpolate(SERVICES[name]["image"])
        assert image.startswith(f"apache/spark:{locked.group(1)}."), (name, image)


def test_compose_builds_existing_dockerfile_targets():
    stages = set(re.findall(r"^FROM \S+ AS (\w+)$", DOCKERFILE.read_text(), re.M))
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
            assert build.get("target") in stages, (name, build.get("target"), stages)


# ---- Trino ----------------------------------------------------------------------------------


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trino_tables_match_the_schema_registry():
    from homefeed.events.registry import SchemaRegistry

    generate = load_script(ROOT / "docker" / "trino" / "generate.py")
    current = (ROOT / "docker" / "trino" / "init.sql").read_text(encoding="utf-8")
    assert current == generate.render(), "stale: run .venv/bin/python docker/trino/generate.py"
    for event_type in SchemaRegistry().event_types:
        assert f"CREATE TABLE IF NOT EXISTS lake.events.{event_type} (" in current
    properties = (ROOT / "docker" / "trino" / "catalog" / "lake.properties").read_text()
    assert "connector.name=hive" in properties and "hive.metastore=file" in properties
    for var in re.findall(r"\$\{ENV:(\w+)\}", properties):
        assert var in SERVICES["trino"]["environment"], var


# ---- the health-check script ----------------------------------------------------------------


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    return load_script(ROOT / "docker" / "healthcheck.py")


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthcheck_http_and_tcp(healthcheck, http_server):
    assert healthcheck.main(["http", f"{http_server}/healthz"]) == 0
    assert healthcheck.main(["http", f"{http_server}/broken"]) == 1
    port = int(http_server.rsplit(":", 1)[1])
    assert healthcheck.main(["tcp", f"127.0.0.1:{port}"]) == 0
    assert healthcheck.main(["tcp", f"127.0.0.1:{closed_port()}"]) == 1
    assert healthcheck.main(["bogus"]) == 2


def test_healthcheck_deps_follows_the_config(healthcheck, http_server, no_config_file, monkeypatch):
    port = int(http_server.rsplit(":", 1)[1])
    assert healthcheck.main(["deps"]) == 0  # embedded defaults: nothing to reach
    monkeypatch.setenv("HOMEFEED_LOG_BACKEND", "kafka")
    monkeypatch.setenv("HOMEFEED_LOG_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.setenv("HOMEFEED_LAKE_URI", "s3://homefeed/lake")
    monkeypatch.setenv("HOMEFEED_LAKE_S3_ENDPOINT_URL", http_server)
    assert healthcheck.dependencies() == [f"127.0.0.1:{port}", f"127.0.0.1:{port}"]
    assert healthcheck.main(["deps"]) == 0
    monkeypatch.setenv("HOMEFEED_LOG_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{closed_port()}")
    assert healthcheck.main(["deps"]) == 1
