"""What the client and the worker need from Kafka: the record type, the producer's protocol and its
default factory, and the consumer-lag reader. No Kafka import at module level: ``yadtq.broker``
(kafka-python) is imported only when a real producer is made; tests pass
``yadtq.testing.FakeBroker.producer`` instead."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from yadtq.errors import YadtqError

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


def kafka_offsets(settings: Settings) -> Any:
    """The tasks topic's end offsets and the group's commits, on kafka-python
    (``yadtq.broker.OffsetReader``: ``worker.interfaces.Offsets``)."""
    from yadtq.broker import OffsetReader

    return OffsetReader(settings)


def kafka_ping(settings: Settings) -> None:
    """Raises ``ServiceUnavailable`` unless Kafka answers (``yadtq.broker.kafka_ping``)."""
    from yadtq.broker import kafka_ping as ping

    ping(settings)


class LagReader:
    """The consumer group's lag on the tasks topic, per partition: end offset minus committed
    offset (a partition never committed counts whole). One offsets reader (``factory(settings)``,
    e.g. ``yadtq.broker.OffsetReader``) is kept between reads and dropped after a failure.
    Thread-safe; used by the client's health check and the worker's metrics."""

    def __init__(self, settings: Settings, factory: Callable[[Settings], Any]) -> None:
        self._settings, self._factory = settings, factory
        self._offsets: Any = None
        self._lock = threading.Lock()

    def read(self) -> dict[int, int]:
        """partition -> lag; raises ``YadtqError`` when Kafka cannot say."""
        with self._lock:
            try:
                if self._offsets is None:
                    self._offsets = self._factory(self._settings)
                ends = self._offsets.end_offsets(self._offsets.partitions())
                committed = self._offsets.committed()
            except YadtqError:
                self._close()
                raise
        return {p: max(0, int(end) - int(committed.get(p, 0))) for p, end in sorted(ends.items())}

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None
