"""One typed configuration tree: ``homefeed.toml`` plus ``HOMEFEED_SECTION_KEY`` overrides.

Every section rejects unknown keys, and every error names the file (or variable), the key
and the reason, so a typo fails at start instead of being ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from homefeed.experiments.settings import ExperimentsConfig
from homefeed.section import Section
from homefeed.serving.settings import ServingConfig

ENV_PREFIX = "HOMEFEED_"
DEFAULT_FILE = "homefeed.toml"


class ConfigError(Exception):
    """The configuration is invalid; the message names source, key and reason."""


class LocalLogConfig(Section):
    path: str = Field("homefeed-data/log", description="Directory of the embedded log.")
    segment_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Roll a partition's segment file past this size."
    )
    fsync: Literal["always", "interval", "never"] = Field(
        "interval",
        description=(
            "always: fsync before acknowledging (survives power loss); interval: fsync at most "
            "every fsync_interval_ms (acknowledged records survive a killed process, not a "
            "power loss in the interval); never: leave it to the OS."
        ),
    )
    fsync_interval_ms: int = Field(1000, ge=0, description="Interval for fsync = 'interval'.")


class KafkaLogConfig(Section):
    bootstrap_servers: str = Field("localhost:9092", description="Kafka bootstrap servers.")
    replication_factor: int = Field(1, ge=1, description="Replication of topics homefeed creates.")
    client_id: str = Field("homefeed", description="Client id sent to the brokers.")
    producer: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Extra librdkafka producer settings."
    )
    consumer: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Extra librdkafka consumer settings."
    )


class LogConfig(Section):
    backend: Literal["local", "kafka"] = Field("local", description="Event log backend.")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of topics homefeed creates.")
    retention_hours: float = Field(48.0, gt=0, description="Time-based retention of topics.")
    local: LocalLogConfig = Field(default_factory=LocalLogConfig)  # type: ignore[arg-type]
    kafka: KafkaLogConfig = Field(default_factory=KafkaLogConfig)  # type: ignore[arg-type]


class S3Config(Section):
    endpoint_url: str | None = Field(None, description="S3 API endpoint; None means AWS.")
    region: str = Field("us-east-1", description="Bucket region.")
    access_key_id: str | None = Field(None, description="Falls back to the AWS environment.")
    secret_access_key: str | None = Field(
        None, description="Secret; falls back to the AWS environment.", repr=False
    )


class LakeConfig(Section):
    uri: str = Field(
        "homefeed-data/lake", description="Lake root: a local path or s3://bucket/prefix."
    )
    s3: S3Config = Field(default_factory=S3Config)  # type: ignore[arg-type]


class SdkConfig(Section):
    batch_size: int = Field(5000, ge=1, description="Records buffered before a send.")
    linger_ms: int = Field(200, ge=0, description="Longest a record waits in the buffer.")
    max_event_bytes: int = Field(
        64 * 1024, ge=256, description="Larger events are dead-lettered as oversized."
    )


class PersisterConfig(Section):
    group: str = Field("lake-persister", description="Consumer group of the persister.")
    batch_records: int = Field(
        50_000,
        ge=1,
        description=(
            "Records per batch: batch k of a partition holds offsets [k*N, (k+1)*N). Memory "
            "holds at most one batch per partition."
        ),
    )
    flush_interval_s: float = Field(
        30.0, gt=0, description="When following, write unfinished batches at least this often."
    )
    late_delay_minutes: float = Field(
        10.0, ge=0, description="How long past an hour's end its _SUCCESS marker waits."
    )
    poll_interval_s: float = Field(1.0, gt=0, description="Idle wait when following the log.")


class SimulatorConfig(Section):
    users: int = Field(2000, ge=1)
    pins: int = Field(20000, ge=1)
    days: float = Field(2.0, gt=0)
    seed: int = Field(7)
    topics: int = Field(32, ge=2, le=1000, description="Interest topics in the synthetic world.")
    start: str = Field("2026-11-01T00:00:00Z", description="Simulated time of day 0 (UTC).")


_SIZE = r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"  # DuckDB's size syntax


class DuckDBConfig(Section):
    memory_limit: str = Field(
        "3GB", pattern=_SIZE, description="DuckDB memory limit; larger work spills to disk."
    )
    threads: int | None = Field(None, ge=1, description="Threads; None means all cores.")
    temp_directory: str | None = Field(None, description="Spill directory; None: DuckDB's default.")
    max_temp_directory_size: str | None = Field(
        "20GB", pattern=_SIZE, description="Most a query may spill; past it the query fails "
        "instead of filling a shared disk (None: DuckDB's default, 90% of the free space).",
    )  # fmt: skip


class SparkConfig(Section):
    master: str = Field("local[*]", description="Spark master URL, e.g. spark://host:7077.")
    driver_memory: str = Field("2g", description="spark.driver.memory.")
    shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions.")
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings.")


class EngineConfig(Section):
    default: Literal["duckdb", "spark"] = Field("duckdb", description="Engine for jobs and SQL.")
    duckdb: DuckDBConfig = Field(default_factory=DuckDBConfig)  # type: ignore[arg-type]
    spark: SparkConfig = Field(default_factory=SparkConfig)  # type: ignore[arg-type]


class JobsConfig(Section):
    lake_retention_days: int = Field(90, ge=1, description="`homefeed lake gc` drops older hours.")
    label_window_hours: float = Field(
        24.0, gt=0, description="A click/save/hide within this long after an impression labels it."
    )
    interest_half_life_days: float = Field(
        7.0, gt=0, description="Half-life of the time decay in user-topic interest profiles."
    )
    smoothing_impressions: float = Field(
        100.0, ge=0, description="Prior weight (in impressions) of Bayesian-smoothed pin rates."
    )


class SourceConfig(Section):
    enabled: bool = Field(True, description="Use this candidate source.")
    k: int = Field(200, ge=1, le=10_000, description="Candidates this source gives per user.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Constructor parameters of the source (see its class)."
    )


def _default_sources() -> dict[str, SourceConfig]:
    names = ("following", "als", "item_item", "pixie", "content", "trending")
    return {name: SourceConfig() for name in names}  # type: ignore[call-arg]


class RankerConfig(Section):
    head_weights: dict[str, float] = Field(
        default_factory=lambda: {"save": 1.0, "click": 0.3, "hide": -2.0},
        description="Final score = sum of weight x calibrated probability of each head.",
    )
    num_leaves: int = Field(31, ge=2, description="LightGBM num_leaves.")
    learning_rate: float = Field(0.05, gt=0, le=1, description="LightGBM learning_rate.")
    rounds: int = Field(300, ge=1, description="Boosting rounds (early stopping may stop sooner).")
    min_data_in_leaf: int = Field(50, ge=1, description="LightGBM min_data_in_leaf.")
    negatives_per_positive: int = Field(
        4, ge=1, description="Without impressions (imported ratings): sampled unengaged pins."
    )
    calibration: Literal["isotonic", "platt", "none"] = Field(
        "isotonic", description="How raw head scores become probabilities."
    )
    seed: int = Field(42, description="Seed of sampling and LightGBM.")
    negative_rate: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Lake mode: share of impressions without any label (no click, save or hide) "
        "kept as ranker rows; every labelled impression is kept. Kept unlabelled rows weigh "
        "1 / rate in training and calibration, so probabilities stay calibrated (negative "
        "downsampling, He et al. 2014). 1 keeps them all.",
    )
    max_rows: int | None = Field(
        100_000,
        ge=1000,
        description="Lake mode: at most this many ranker rows after negative sampling, by "
        "sampling whole users (a user's rows stay together; feature cost follows users: "
        "each one's candidates are retrieved from every source). None: no cap.",
    )
    num_threads: int = Field(
        1,
        ge=1,
        description="LightGBM threads while training (scoring always uses one). More than the "
        "idle cores is much slower, not faster: OpenMP threads spin waiting for each other.",
    )


class ModelsConfig(Section):
    name: str = Field("homefeed", pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="Model name.")
    sources: dict[str, SourceConfig] = Field(
        default_factory=_default_sources, description="Candidate sources by name."
    )
    ranker: RankerConfig = Field(default_factory=RankerConfig)  # type: ignore[arg-type]
    train_days: int = Field(14, ge=1, description="Days of events the sources fit on.")
    ranker_days: int = Field(
        1, ge=1, description="Latest days of impressions the ranker trains on (sources fit before)."
    )


class HomefeedConfig(Section):
    log: LogConfig = Field(default_factory=LogConfig)  # type: ignore[arg-type]
    lake: LakeConfig = Field(default_factory=LakeConfig)  # type: ignore[arg-type]
    sdk: SdkConfig = Field(default_factory=SdkConfig)  # type: ignore[arg-type]
    persister: PersisterConfig = Field(default_factory=PersisterConfig)  # type: ignore[arg-type]
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)  # type: ignore[arg-type]
    engine: EngineConfig = Field(default_factory=EngineConfig)  # type: ignore[arg-type]
    jobs: JobsConfig = Field(default_factory=JobsConfig)  # type: ignore[arg-type]
    models: ModelsConfig = Field(default_factory=ModelsConfig)  # type: ignore[arg-type]
    serving: ServingConfig = Field(default_factory=ServingConfig)
    experiments: ExperimentsConfig = Field(default_factory=ExperimentsConfig)  # type: ignore[arg-type]


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        value = e.get("input")
        lines.append(f"  {key} = {value!r}: {e['msg']}")
    return "\n".join(lines)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Map HOMEFEED_LOG_LOCAL_PATH to {"log": {"local": {"path": ...}}} by walking the models.

    Keys contain underscores too (retention_hours), so the variable is matched greedily against
    the model tree instead of split on every underscore.
    """
    tree: dict[str, Any] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var == "HOMEFEED_CONFIG":
            continue
        path = _resolve_env_path(var[len(ENV_PREFIX) :].lower(), HomefeedConfig)
        if path is None:
            raise ConfigError(f"environment variable {var} names no configuration key")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = raw
    return tree


def _resolve_env_path(rest: str, model: type[BaseModel]) -> list[str] | None:
    for name, field in model.model_fields.items():
        sub = field.annotation
        if rest == name:
            return [name]
        if rest.startswith(name + "_") and isinstance(sub, type) and issubclass(sub, BaseModel):
            tail = _resolve_env_path(rest[len(name) + 1 :], sub)
            if tail is not None:
                return [name, *tail]
    return None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> HomefeedConfig:
    """Load the file (``path``, ``$HOMEFEED_CONFIG`` or ./homefeed.toml if present) and env."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get("HOMEFEED_CONFIG")
    file = Path(explicit) if explicit else Path(DEFAULT_FILE)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"invalid TOML in {file}: {e}") from e
    elif explicit:
        raise ConfigError(f"config file {file} does not exist")
    source = str(file) if file.exists() else "defaults"
    try:
        HomefeedConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(source, e)) from None
    env = _env_overrides(environ)
    try:
        return HomefeedConfig.model_validate(_merge(data, env))
    except ValidationError as e:
        raise ConfigError(_format_errors(f"{source} + HOMEFEED_* environment", e)) from None


def render_example(model: type[BaseModel] = HomefeedConfig, prefix: str = "") -> str:
    """A commented homefeed.toml with every key at its default (``homefeed init`` writes it)."""
    lines: list[str] = []
    if not prefix:
        lines += [
            "# homefeed configuration. Every key is shown at its default; delete what you keep.",
            "# Any key can be overridden by HOMEFEED_<SECTION>_<KEY>,",
            "# e.g. HOMEFEED_LOG_BACKEND=kafka.",
            "",
        ]
    scalars = {k: f for k, f in model.model_fields.items() if not _is_section(f.annotation)}
    sections = {k: f for k, f in model.model_fields.items() if _is_section(f.annotation)}
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    for name, field in scalars.items():
        if field.description:
            lines.append(f"# {field.description}")
        default = field.get_default(call_default_factory=True)
        lines.append(f"{name} = {_toml_value(default)}" if default is not None else f"# {name} =")
    if scalars:
        lines.append("")
    for name, field in sections.items():
        assert isinstance(field.annotation, type)
        lines.append(render_example(field.annotation, f"{prefix}.{name}" if prefix else name))
    return "\n".join(lines)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, BaseModel):  # a section inside a mapping, e.g. models.sources
        value = value.model_dump()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
