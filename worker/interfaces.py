"""What the worker needs from Kafka, and the default factories that build it on kafka-python
through ``yadtq.broker``. Tests pass ``yadtq.testing.FakeBroker`` methods instead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from yadtq.broker_types import Record
from yadtq.settings import Settings
from yadtq.wire import Envelope


class Consumer(Protocol):
    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]: ...
    def assignment(self) -> set[int]: ...
    def joined(self) -> bool: ...
    def pause(self, partitions: set[int]) -> None: ...
    def resume(self, partitions: set[int]) -> None: ...
    def seek(self, partition: int, offset: int) -> None: ...
    def commit(self, offsets: dict[int, int], wait: bool = True) -> None: ...
    def close(self) -> None: ...


class Producer(Protocol):
    def send(self, envelopes: Sequence[Envelope], timeout: float = ...) -> list[Exception | None]: ...
    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None: ...
    def close(self) -> None: ...


class Offsets(Protocol):
    """The tasks topic's end offsets and the group's committed offsets (for the reconciler)."""

    def partitions(self) -> int: ...
    def end_offsets(self, partitions: int) -> dict[int, int]: ...
    def committed(self) -> dict[int, int]: ...
    def partition_of(self, task_id: str, partitions: int) -> int: ...
    def close(self) -> None: ...


ConsumerFactory = Callable[[Settings, str, Callable[[set[int]], None], Callable[[set[int]], None]],
                           Consumer]
ProducerFactory = Callable[[Settings], Producer]
OffsetsFactory = Callable[[Settings], Offsets]


def kafka_consumer(settings: Settings, worker_id: str, on_revoked: Callable[[set[int]], None],
                   on_assigned: Callable[[set[int]], None]) -> Consumer:
    from yadtq.broker import TaskConsumer, ensure_topics

    ensure_topics(settings)
    return TaskConsumer(settings, worker_id, on_revoked, on_assigned)


def kafka_producer(settings: Settings) -> Producer:
    from yadtq.broker import TaskProducer

    return TaskProducer(settings)


def kafka_offsets(settings: Settings) -> Offsets:
    from yadtq.broker import OffsetReader

    return OffsetReader(settings)
