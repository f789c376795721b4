"""What the worker needs from Kafka (its consumer and a producer for dead letters), and the
default factories that build them on kafka-python through ``yadtq.broker``. Tests pass
``yadtq.testing.FakeBroker`` methods instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from yadtq.broker_types import Record
from yadtq.settings import Settings


class Consumer(Protocol):
    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]: ...
    def assignment(self) -> set[int]: ...
    def joined(self) -> bool: ...
    def pause(self, partitions: set[int]) -> None: ...
    def resume(self, partitions: set[int]) -> None: ...
    def commit(self, offsets: dict[int, int], wait: bool = True) -> None: ...
    def close(self) -> None: ...


class Producer(Protocol):
    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None: ...
    def close(self) -> None: ...


ConsumerFactory = Callable[[Settings, str, Callable[[set[int]], None], Callable[[set[int]], None]],
                           Consumer]
ProducerFactory = Callable[[Settings], Producer]


def kafka_consumer(settings: Settings, worker_id: str, on_revoked: Callable[[set[int]], None],
                    on_assigned: Callable[[set[int]], None]) -> Consumer:
    from yadtq.broker import TaskConsumer, ensure_topics

    ensure_topics(settings)
    return TaskConsumer(settings, worker_id, on_revoked, on_assigned)


def kafka_producer(settings: Settings) -> Producer:
    from yadtq.broker import TaskProducer

    return TaskProducer(settings)
