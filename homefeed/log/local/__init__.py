"""The embedded log: durable segment files on a local path, no server to run."""

from homefeed.log.local.log import LocalConsumer, LocalLog, LocalProducer

__all__ = ["LocalConsumer", "LocalLog", "LocalProducer"]
