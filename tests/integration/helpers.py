"""Helpers for tests against the real services."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tests.polling import wait_until
from yadtq import Client, Settings
from yadtq.broker_types import SLOT_STRIDE
from yadtq.models import TaskState


def wait_balanced(client: Client, n_workers: int, partitions: int, timeout: float = 60.0,
                  logs: Callable[[], str] | None = None) -> None:
    """Until ``n_workers`` alive workers each own partitions of the tasks topic and together own
    all of them (its ``normal`` level: slots below ``SLOT_STRIDE``; the other levels' topics are
    shared the same way, ``tests/integration/test_assignor.py``)."""
    def balanced() -> bool:
        alive = [w for w in client.workers() if w.status.value == "alive"]
        mine = [[p for p in w.partitions if p < SLOT_STRIDE] for w in alive]
        return (len(alive) == n_workers and all(mine)
                and sorted(p for ps in mine for p in ps) == list(range(partitions)))
    try:
        wait_until(balanced, timeout, f"{n_workers} workers to share {partitions} partitions")
    except AssertionError as exc:
        seen = [(w.id, w.status.value, w.partitions) for w in client.workers()]
        raise AssertionError(f"{exc}; workers: {seen}\n{logs() if logs else ''}") from None


def wait_all_final(client: Client, total: int, timeout: float) -> None:
    def done() -> bool:
        c = client.counts()
        return c[TaskState.COMPLETED] + c[TaskState.FAILED] >= total
    wait_until(done, timeout, f"{total} tasks to finish (now {client.counts()})", interval=0.2)


# ---------------------------------------------------------------- raw Kafka access (hostile tests)
def send_raw(settings: Settings, values: Sequence[bytes | None],
             partitions: Iterable[int]) -> list[tuple[int, int, bytes | None]]:
    """Send each raw value (``None`` = a message with a null value) to each partition, bypassing the
    client (each with a key: kafka-python sends no message without both); returns
    ``(partition, offset, value)`` per message sent, in order."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                             max_request_size=2 * 1024 * 1024)
    try:
        futures = [(producer.send(settings.topic, key=f"hostile-{i}".encode(), value=value,
                                  partition=p), value)
                   for p in partitions for i, value in enumerate(values)]
        producer.flush(timeout=20)
        out = []
        for fut, value in futures:
            meta = fut.get(timeout=20)
            out.append((meta.partition, meta.offset, value))
        return out
    finally:
        producer.close(timeout=5)


def read_dead_letters(settings: Settings, expected: int, timeout: float) -> list[Any]:
    """The dead-letter topic's messages (each parsed as JSON, or the raw bytes when it is not
    JSON), read until ``expected`` arrived or ``timeout`` passed."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    out: list[Any] = []
    try:
        consumer.subscribe([settings.dead_letter_topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(out) < expected:
            for records in consumer.poll(timeout_ms=300).values():
                for rec in records:
                    try:
                        out.append(json.loads(rec.value))
                    except (ValueError, TypeError):
                        out.append(rec.value)
    finally:
        consumer.close()
    return out


def dead_letter_at(letters: Sequence[Any], partition: int, offset: int) -> dict[str, Any] | None:
    """The dead letter written for the tasks-topic message at ``partition``/``offset``."""
    for letter in letters:
        if (isinstance(letter, dict) and letter.get("partition") == partition
                and letter.get("offset") == offset):
            return letter
    return None


class TopicSize:
    """How many messages the tasks topic (or ``topic`` with its ``partitions``) holds in all (the
    sum of its partitions' end offsets); one consumer kept open, so each call is one quick request."""

    def __init__(self, settings: Settings, topic: str | None = None,
                 partitions: int | None = None) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
        self._parts = [TopicPartition(topic or settings.topic, p)
                       for p in range(partitions or settings.partitions)]

    def __call__(self) -> int:
        return int(sum(self._consumer.end_offsets(self._parts).values()))

    def close(self) -> None:
        self._consumer.close()


def states_of(client: Client, ids: Sequence[str]) -> dict[str, str | None]:
    """The raw ``state`` field of each task's hash (one pipelined round trip, no parsing)."""
    pipe = client.store.r.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(client.store.keys.task(task_id), "state")
    return dict(zip(ids, pipe.execute(), strict=True))


def wait_ids_final(client: Client, ids: Sequence[str], timeout: float,
                   logs: Callable[[], str] | None = None) -> None:
    """Until every task in ``ids`` is completed or failed. On a timeout the error says how many
    are in which state (and the worker logs)."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while True:
        states = states_of(client, pending)
        pending = [i for i, s in states.items() if s not in ("completed", "failed")]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(pending)} of {len(ids)} tasks not final after {timeout}s: "
                f"{dict(Counter(states[i] for i in pending))}\n{logs() if logs else ''}")
        time.sleep(0.2)


__all__ = ["wait_until"]
