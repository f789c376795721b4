"""Rebalances with each Kafka client: the drain with scale-up and a warm stop
(``test_self_healing``) once per client, and confluent-kafka's pause state across a re-assign.
librdkafka keeps a partition's pause through a revoke and a re-assign to the same member; the
worker (as with kafka-python) counts a new assignment as unpaused and resumes only what it paused,
so ``ConfluentConsumer`` resumes what it is assigned (a drain once stalled for good without)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from tests.integration.test_self_healing import (
    test_scale_up_and_warm_stop_during_a_drain_run_each_task_once as test_drain_with_rebalances,
)
from yadtq.broker import ensure_topics
from yadtq.broker_types import SLOT_STRIDE
from yadtq.settings import Settings

pytestmark = pytest.mark.integration

__all__ = ["test_drain_with_rebalances"]


def _poll_until(consumer: object, pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        consumer.poll(100)  # type: ignore[attr-defined]
    assert pred(), "timed out"


def test_a_reassigned_partition_comes_back_unpaused(settings_factory) -> None:
    settings: Settings = settings_factory(partitions=4)
    ensure_topics(settings)
    from worker.interfaces import kafka_consumer

    def normal(slots: set[int]) -> set[int]:  # the tasks topic's own partitions (level normal)
        return {p for p in slots if p < SLOT_STRIDE}

    a = kafka_consumer(settings, "member-a", lambda _p: None, lambda _p: None)
    _poll_until(a, lambda: normal(a.assignment()) == {0, 1, 2, 3}, 30)
    a.pause(a.assignment())
    b = kafka_consumer(settings, "member-b", lambda _p: None, lambda _p: None)
    deadline = time.monotonic() + 30
    while not normal(b.assignment()) and time.monotonic() < deadline:
        a.poll(100)
        b.poll(100)
    moved = normal(b.assignment())
    assert moved, "the second member got nothing"
    b.close()
    _poll_until(a, lambda: normal(a.assignment()) == {0, 1, 2, 3}, 30)
    from kafka import KafkaProducer  # test-only writer to chosen partitions

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for p in range(4):
        producer.send(settings.topic, value=b"x", partition=p).get(timeout=10)
    producer.close()
    got: set[int] = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got |= {r.partition for r in a.poll(200)}
    a.close()
    # the re-assigned ones read; the ones kept stay paused (cooperative, kafka-python); with
    # librdkafka's round-robin every partition is re-assigned (eager), so every one reads
    expected = moved if settings.kafka_client == "kafka-python" else {0, 1, 2, 3}
    assert got == expected, (got, moved)
