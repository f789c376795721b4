"""What the client and the worker need from Kafka: the record type, the producer's protocol and its
default factory. No Kafka import at module level: ``yadtq.broker`` (kafka-python) is imported only
when a real producer is made; tests pass ``yadtq.testing.FakeBroker.producer`` instead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from yadtq.settings import Settings
    from yadtq.wire import Envelope


@dataclass(frozen=True)
class Record:
    """One message taken from the tasks topic, with where it came from."""

    partition: int
    offset: int
    value: bytes | None
    topic: str = ""


class Producer(Protocol):
    """Sends to Kafka (``yadtq.broker.TaskProducer`` or ``yadtq.testing.FakeProducer``)."""

    def send(self, envelopes: Sequence[Envelope], timeout: float = ...) -> list[Exception | None]: ...
    def send_async(self, envelopes: Sequence[Envelope],
                   on_error: Callable[[Envelope, Exception], None]) -> None: ...
    def flush(self, timeout: float = ...) -> None: ...
    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None: ...
    def close(self) -> None: ...


ProducerFactory = Callable[..., Producer]
"""``factory(settings, linger_ms=N)`` -> a producer."""


def kafka_producer(settings: Settings, linger_ms: int = 0) -> Producer:
    """A producer on kafka-python, once the topics exist."""
    from yadtq.broker import TaskProducer, ensure_topics

    ensure_topics(settings, timeout=10.0)
    return TaskProducer(settings, linger_ms=linger_ms)
