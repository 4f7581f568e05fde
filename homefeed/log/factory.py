"""Pick the event log backend named in the config; heavy clients load only when chosen."""

from __future__ import annotations

from homefeed.config import LogConfig
from homefeed.log.base import EventLog


def open_log(config: LogConfig | None = None) -> EventLog:
    config = config or LogConfig()  # type: ignore[call-arg]
    if config.backend == "local":
        from homefeed.log.local import LocalLog

        return LocalLog(config.local)
    if config.backend == "kafka":
        try:
            from homefeed.log.kafka import KafkaLog
        except ImportError as e:  # pragma: no cover - confluent-kafka is a core dependency
            raise ImportError(
                "the kafka backend needs confluent-kafka: pip install confluent-kafka"
            ) from e
        return KafkaLog(config.kafka)
    raise ValueError(f"log.backend = {config.backend!r}: expected 'local' or 'kafka'")
