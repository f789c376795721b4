"""Topic administration: the tasks and dead-letter topics, created durable and checked.

The rules, without a Kafka import: ``yadtq.broker.ensure_topics`` runs ``ensure_topics`` below
with its kafka-python admin client (``TopicAdmin``; tests pass a fake). The replication
factor and ``min.insync.replicas`` come from the settings; left unset they follow the cluster:
replication 3 and min ISR 2 when it has at least 3 live brokers, else 1 and 1 (a development
broker). Topics that already exist are never changed, only checked: one weaker than configured
gets a warning that says what to do. ``ensure_topics`` needs the topics' metadata, not a leader
for every partition, so a client or worker starts while a broker is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from yadtq.errors import ServiceUnavailable, YadtqError
from yadtq.settings import Settings

log = logging.getLogger("yadtq.topics")

CLUSTER_SIZE = 3
"""Live brokers from which the automatic replication factor is 3 (below: 1)."""


@dataclass(frozen=True)
class Durability:
    """What the topics should have: replication factor, ``min.insync.replicas`` and why."""

    replication_factor: int
    min_insync_replicas: int
    reason: str


def durability(settings: Settings, live_brokers: int) -> Durability:
    """The replication factor and min ISR for these settings on a cluster of ``live_brokers``."""
    if settings.replication_factor is not None:
        rf = settings.replication_factor
        why = "YADTQ_REPLICATION_FACTOR"
    elif live_brokers >= CLUSTER_SIZE:
        rf, why = CLUSTER_SIZE, f"automatic: the cluster has {live_brokers} live brokers"
    else:
        rf, why = 1, f"automatic: the cluster has {live_brokers} live broker(s), fewer than 3"
    if settings.min_insync_replicas is not None:
        isr = settings.min_insync_replicas
    else:
        isr = max(1, min(2, rf - 1))
    return Durability(rf, isr, why)


def weaknesses(topic: str, replicas: int, min_isr: int | None, wanted: Durability) -> list[str]:
    """What makes an existing topic weaker than ``wanted``, one sentence each (empty: fine)."""
    found = []
    if replicas < wanted.replication_factor:
        found.append(
            f"topic {topic} has replication factor {replicas}, configured "
            f"{wanted.replication_factor}: one broker failure can lose acknowledged tasks or stop "
            "the queue. YADTQ never changes an existing topic: add replicas with "
            "kafka-reassign-partitions, or create the topic anew")
    if min_isr is not None and min_isr < wanted.min_insync_replicas:
        found.append(
            f"topic {topic} has min.insync.replicas {min_isr}, configured "
            f"{wanted.min_insync_replicas}: a write acknowledged by fewer replicas can be lost "
            f"with its leader. Raise it: kafka-configs --alter --entity-type topics --entity-name "
            f"{topic} --add-config min.insync.replicas={wanted.min_insync_replicas}")
    return found


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create."""

    name: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int


class TopicAdmin(Protocol):
    """The admin requests the rules need (``yadtq.broker.KafkaAdmin``); each raises
    ``YadtqError`` on failure."""

    def live_brokers(self) -> int: ...
    def list_topics(self) -> set[str]: ...
    def create_topics(self, specs: list[TopicSpec]) -> bool: ...
    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]: ...
    def min_isr(self, topics: list[str]) -> dict[str, int]: ...
    def close(self) -> None: ...


def _check(admin: TopicAdmin, described: list[dict[str, Any]], created: set[str],
           wanted: Durability) -> None:
    existing = [d for d in described if d["name"] not in created]
    if not existing:
        return
    isr = admin.min_isr([d["name"] for d in existing])
    for d in existing:
        replicas = min(len(p.get("replica_nodes") or []) for p in d["partitions"])
        for problem in weaknesses(d["name"], replicas, isr.get(d["name"]), wanted):
            log.warning("%s", problem)


def partition_count(admin: TopicAdmin, name: str) -> int:
    """How many partitions topic ``name`` has (``ServiceUnavailable`` while it has none yet)."""
    described = admin.describe_topics([name])
    parts = described[0].get("partitions") if described else None
    if not parts:
        raise ServiceUnavailable(f"Kafka: topic {name} has no partitions yet")
    return len(parts)


def _ready(described: list[dict[str, Any]]) -> bool:
    """Every topic is known with its partitions (leaders are not needed: a broker may be down)."""
    return all(d.get("error_code", 0) == 0 and d.get("partitions") for d in described)


def ensure_topics(settings: Settings, open_admin: Callable[[], TopicAdmin],
                  timeout: float = 30.0) -> None:
    """Create the tasks and dead-letter topics if missing, with the configured durability, and
    warn about existing ones that are weaker; return once both topics are in the metadata.
    Failures are retried with a new admin client until ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    names = [settings.topic, settings.dead_letter_topic]
    while time.monotonic() < deadline:
        try:
            admin = open_admin()
        except YadtqError as exc:  # retried until the deadline
            last = exc
            time.sleep(0.5)
            continue
        try:
            wanted = durability(settings, admin.live_brokers())
            created = _create(admin, settings, wanted, admin.list_topics())
            described = admin.describe_topics(names)
            if _ready(described):
                _check(admin, described, created, wanted)
                return
        except YadtqError as exc:  # retried until the deadline
            last = exc
        finally:
            admin.close()
        time.sleep(0.2)
    raise ServiceUnavailable(f"Kafka at {settings.kafka_bootstrap}: topics not ready ({last})")


def _create(admin: TopicAdmin, settings: Settings, wanted: Durability,
            existing: set[str]) -> set[str]:
    missing = [TopicSpec(name, parts, wanted.replication_factor, wanted.min_insync_replicas)
               for name, parts in ((settings.topic, settings.partitions),
                                   (settings.dead_letter_topic, 1))
               if name not in existing]
    if not missing or not admin.create_topics(missing):
        return set()  # none missing, or another client created them first: checked as existing
    log.info("created %s with replication factor %d (%s), min.insync.replicas %d",
             " and ".join(t.name for t in missing), wanted.replication_factor, wanted.reason,
             wanted.min_insync_replicas)
    return {t.name for t in missing}
