"""What the worker needs from Kafka besides the core's producer (``yadtq.broker_types``): its
consumer and the reconciler's offset reader, and the default factories that build them on
kafka-python through ``yadtq.broker``. Tests pass ``yadtq.testing.FakeBroker`` methods instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from yadtq.broker_types import (
    Producer,
    ProducerFactory,
    Record,
    confluent_module,
    kafka_offsets,
    kafka_producer,
)
from yadtq.settings import Settings


class Consumer(Protocol):
    keeps_paused_fetches: bool
    """Whether what was fetched for a partition before it was paused is returned by a poll after
    it is resumed (kafka-python) or dropped and fetched again (librdkafka)."""

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]: ...
    def assignment(self) -> set[int]: ...
    def joined(self) -> bool: ...
    def pause(self, partitions: set[int]) -> None: ...
    def resume(self, partitions: set[int]) -> None: ...
    def seek(self, partition: int, offset: int) -> None: ...
    def lags(self, partitions: set[int]) -> dict[int, int] | None: ...
    def commit(self, offsets: dict[int, int], wait: bool = True) -> None: ...
    def close(self) -> None: ...


class Offsets(Protocol):
    """A tasks topic's end offsets and the group's committed offsets (for the reconciler and the
    lag metric); the topic is the tasks topic unless given (a named queue's,
    ``yadtq.keys.queue_topic``). ``list_topics``: the topics that exist (the lag metric reads
    only those)."""

    def partitions(self, topic: str | None = None) -> int: ...
    def end_offsets(self, partitions: int, topic: str | None = None) -> dict[int, int]: ...
    def committed(self, topic: str | None = None) -> dict[int, int]: ...
    def partition_of(self, task_id: str, partitions: int) -> int: ...
    def list_topics(self) -> set[str]: ...
    def close(self) -> None: ...


ConsumerFactory = Callable[[Settings, str, Callable[[set[int]], None], Callable[[set[int]], None]],
                           Consumer]
OffsetsFactory = Callable[[Settings], Offsets]


def kafka_consumer(settings: Settings, worker_id: str, on_revoked: Callable[[set[int]], None],
                   on_assigned: Callable[[set[int]], None]) -> Consumer:
    """The worker's consumer on the client ``settings.kafka_client`` names, once the topics exist."""
    from yadtq.broker import TaskConsumer, ensure_topics

    for topic in settings.worker_topics():  # subscribed to once they exist: no wait for a refresh
        ensure_topics(settings.with_(topic=topic))
    if settings.kafka_client == "confluent":
        consumer: Consumer = confluent_module().ConfluentConsumer(settings, worker_id, on_revoked,
                                                                  on_assigned)
        return consumer
    return TaskConsumer(settings, worker_id, on_revoked, on_assigned)


__all__ = ["Consumer", "ConsumerFactory", "Offsets", "OffsetsFactory", "Producer", "ProducerFactory",
           "kafka_consumer", "kafka_offsets", "kafka_producer"]
