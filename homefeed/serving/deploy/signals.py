"""What users did with each arm's feeds: the event log, read as consumer group ``deploy-judge``.

``DeploySignals`` follows ``events.impression``, ``events.click`` and ``events.save``. It keeps
the impressions of the deploy being judged (their ``model_version`` names the arm) and the
clicks and saves since the deploy started, bounded in number (the oldest go first), and joins
them on demand (``judge.attribute``: same user and pin, within the attribution window).

Offsets are committed after each poll is absorbed, so the judge does not re-read the log; what
it keeps lives in memory, so a restarted judge starts counting again from where it committed
(it waits longer; it never double-counts).
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import orjson

from homefeed.events.registry import TOPIC_PREFIX
from homefeed.log.base import EventLog, Record, TopicPartition, TopicSpec
from homefeed.serving.deploy.judge import attribute, per_user

log = logging.getLogger(__name__)

GROUP = "deploy-judge"
TOPICS = tuple(TOPIC_PREFIX + name for name in ("impression", "click", "save"))


class _Ring:
    """The latest ``capacity`` rows of (user, pin, time_ms, arm) as int64 columns."""

    def __init__(self, capacity: int) -> None:
        self.rows = np.zeros((capacity, 4), dtype=np.int64)
        self.count = 0

    def append(self, user: int, pin: int, time_ms: int, arm: int = 0) -> None:
        self.rows[self.count % len(self.rows)] = (user, pin, time_ms, arm)
        self.count += 1

    def columns(self) -> np.ndarray:
        return self.rows[: min(self.count, len(self.rows))]

    def clear(self) -> None:
        self.count = 0


class DeploySignals:
    """Impressions and engagements of one deploy, from the event log; see the module docstring."""

    def __init__(
        self,
        event_log: EventLog,
        *,
        group: str = GROUP,
        max_events: int = 2_000_000,
        partitions: int = 4,
        max_records: int = 20_000,
    ) -> None:
        self.event_log = event_log
        for topic in TOPICS:  # a fresh log has no topics yet; the SDK makes the same ones
            event_log.ensure_topic(TopicSpec(topic, partitions))
        self._consumer = event_log.consumer(group, TOPICS)
        self.max_records = max_records
        self._impressions = _Ring(max_events)  # arm: index into self._versions
        self._engagements = _Ring(max_events)
        self._deploy: tuple[str | None, int, tuple[str, ...]] = (None, 0, ())
        self.malformed = 0

    def follow(self, deploy_id: str | None, started_ms: int, versions: set[str]) -> None:
        """Count for this deploy from now on; a different deploy starts from nothing."""
        wanted = (deploy_id, started_ms, tuple(sorted(versions)))
        if wanted != self._deploy:
            self._impressions.clear()
            self._engagements.clear()
            self._deploy = wanted

    def poll(self, timeout_s: float = 0.0) -> int:
        """Read everything the log has now (committing as it goes); returns the records read."""
        total = 0
        while True:
            records = self._consumer.poll(self.max_records, timeout_s if not total else 0.0)
            if not records:
                return total
            for record in records:
                self._absorb(record)
            self._consumer.commit(_next_offsets(records))
            total += len(records)

    def per_user(self, window_ms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per arm version: per-user (impressions, attributed saves + clicks), aligned."""
        imp, eng = self._impressions.columns(), self._engagements.columns()
        impressions = {"user": imp[:, 0], "pin": imp[:, 1], "time_ms": imp[:, 2]}
        engagements = {"user": eng[:, 0], "pin": eng[:, 1], "time_ms": eng[:, 2]}
        hit = attribute(impressions, engagements, window_ms)
        hit = hit[hit >= 0]
        users, arm = imp[:, 0], imp[:, 3]
        return {
            v: per_user(users[arm == i], users[hit][arm[hit] == i])
            for i, v in enumerate(self._deploy[2])
        }

    def close(self) -> None:
        self._consumer.close()

    def _absorb(self, record: Record) -> None:
        deploy_id, started_ms, versions = self._deploy
        if deploy_id is None:
            return
        try:
            event = orjson.loads(record.value)
            kind, time_ms = event["event_type"], _epoch_ms(event["event_time"])
            user, pin = int(event["user_id"]), int(event["pin_id"])
        except Exception as e:  # validated by the SDK upstream; anything else is counted
            self.malformed += 1
            log.warning("skipping malformed record %s[%d]@%d: %r", *_where(record), e)
            return
        if time_ms < started_ms:
            return
        if kind != "impression":
            self._engagements.append(user, pin, time_ms)
        elif (version := str(event.get("model_version"))) in versions:
            self._impressions.append(user, pin, time_ms, versions.index(version))


def _next_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        out[tp] = max(out.get(tp, 0), r.offset + 1)
    return out


def _epoch_ms(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


__all__ = ["GROUP", "TOPICS", "DeploySignals"]
