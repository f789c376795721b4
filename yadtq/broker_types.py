"""What the client and the worker need from Kafka: the record type, the producer's protocol and its
default factory, the health probe, the dead-letter message and the consumer-lag reader. No Kafka
import at module level: ``yadtq.broker`` (kafka-python) is imported only when a real producer,
admin client or probe is made, ``yadtq.broker_confluent`` (confluent-kafka) only when a producer is
made with ``kafka_client="confluent"``; tests pass ``yadtq.testing.FakeBroker.producer`` instead."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from yadtq.errors import BrokerError, ServiceUnavailable, YadtqError
from yadtq.keys import topic_queue, topic_route

if TYPE_CHECKING:
    from yadtq.settings import Settings
    from yadtq.wire import Envelope

log = logging.getLogger("yadtq.broker")

SLOT_STRIDE = 100_000
"""A worker consumes the topics of its queues as one set of numbered partitions ("slots"):
partition ``p`` of its ``i``-th queue's topic is slot ``i * SLOT_STRIDE + p`` (``slot``), so a
worker of the one ``default`` queue sees its partitions' own numbers. Slots exist only inside one
consumer: what Kafka stores (commits) is always by topic and partition."""


def slot(index: int, partition: int) -> int:
    """The slot of ``partition`` of the ``index``-th topic (``ValueError`` past the stride)."""
    if not 0 <= partition < SLOT_STRIDE:
        raise ValueError(f"partition {partition} is beyond the {SLOT_STRIDE} a topic may have here")
    return index * SLOT_STRIDE + partition


def unslot(number: int) -> tuple[int, int]:
    """``slot`` inverted: (topic index, partition)."""
    return divmod(number, SLOT_STRIDE)


class SlotTopics:
    """A consumer's topics (``Settings.worker_topics``) and the slots of their partitions."""

    def __init__(self, settings: Settings) -> None:
        self.names = settings.worker_topics()
        self._index = {t: i for i, t in enumerate(self.names)}

    def slot(self, topic: str, partition: int) -> int:
        return slot(self._index[topic], partition)

    def slots(self, pairs: Iterable[tuple[str, int]]) -> set[int]:
        """The slots of (topic, partition) pairs; other topics' pairs are left out."""
        return {slot(self._index[t], p) for t, p in pairs if t in self._index}

    def of(self, number: int) -> tuple[str, int]:
        """The (topic, partition) of a slot."""
        index, partition = unslot(number)
        return self.names[index], partition


class QueueTopics:
    """A producer's topic for an envelope (its queue's, at its level), made by ``ensure_topics``
    the first time this producer uses it (a bad queue name is refused by ``encode`` before)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready = {settings.topic}  # topics known to exist

    def of(self, env: Envelope) -> str:
        topic = self.settings.queue_topic(env.queue, env.priority)
        if topic not in self._ready:
            from yadtq.broker import ensure_topics  # the admin client is kafka-python's

            ensure_topics(self.settings.with_(topic=topic), timeout=10.0)
            self._ready.add(topic)
        return topic


C = TypeVar("C")
T = TypeVar("T")


class Renewing(Generic[C]):
    """A client that ``get`` replaces with a new one once it was marked ``stale`` (the old one is
    closed in a background thread). If making the new one raises, it stays stale: tried again at
    the next ``get``."""

    def __init__(self, new: Callable[[], C], close: Callable[[C], None], why: str) -> None:
        self._new, self._close, self._why = new, close, why
        self._lock = threading.Lock()
        self._stale = False
        self.current = new()

    def stale(self) -> None:
        self._stale = True

    def get(self) -> C:
        with self._lock:
            if not self._stale:
                return self.current
            old, self.current = self.current, self._new()
            self._stale = False
        log.warning("%s", self._why)
        threading.Thread(target=self._close, args=(old,), name="yadtq-client-close",
                         daemon=True).start()
        return self.current


@dataclass(frozen=True)
class Record:
    """One message taken from a tasks topic, with where it came from (``partition`` is the
    consumer's slot: see ``SLOT_STRIDE``)."""

    partition: int
    offset: int
    value: bytes | None
    topic: str = ""


class Producer(Protocol):
    """Sends to Kafka (``yadtq.broker.TaskProducer`` or ``yadtq.testing.FakeProducer``).

    ``send`` waits for the acknowledgements; ``meanwhile`` (which must not raise) runs once the
    envelopes are handed to the client, before that wait: the caller's Redis write overlaps the
    Kafka round trip."""

    def send(self, envelopes: Sequence[Envelope], timeout: float = ...,
             meanwhile: Callable[[], None] | None = None) -> list[Exception | None]: ...
    def send_async(self, envelopes: Sequence[Envelope],
                   on_error: Callable[[Envelope, Exception], None]) -> None: ...
    def flush(self, timeout: float = ...) -> None: ...
    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None: ...
    def close(self) -> None: ...


ProducerFactory = Callable[..., Producer]
"""``factory(settings, linger_ms=N)`` -> a producer."""


def kafka_producer(settings: Settings, linger_ms: int = 0) -> Producer:
    """A producer on the client ``settings.kafka_client`` names, once the topics exist."""
    from yadtq.broker import TaskProducer, ensure_topics

    ensure_topics(settings, timeout=10.0)
    if settings.kafka_client == "confluent":
        return confluent_module().ConfluentProducer(settings, linger_ms=linger_ms)  # type: ignore[no-any-return]
    return TaskProducer(settings, linger_ms=linger_ms)


def confluent_module() -> Any:
    """``yadtq.broker_confluent``, or ``BrokerError`` saying how to install confluent-kafka."""
    try:
        import yadtq.broker_confluent as module
    except ImportError as exc:
        raise BrokerError("YADTQ_KAFKA_CLIENT=confluent needs confluent-kafka: "
                          f"pip install 'yadtq[confluent]' ({exc})") from None
    return module


def kafka_offsets(settings: Settings) -> Any:
    """The tasks topic's end offsets and the group's commits, on kafka-python
    (``yadtq.broker.KafkaAdmin``: ``worker.interfaces.Offsets``)."""
    from yadtq.broker import KafkaAdmin

    return KafkaAdmin(settings)


_probes: dict[tuple[str, str], Any] = {}
_probe_lock = threading.Lock()


def kafka_ping(settings: Settings, timeout: float = 3.0) -> None:
    """Raise ``ServiceUnavailable`` unless Kafka answers a metadata request.

    The admin client (``yadtq.broker.KafkaAdmin``) is kept between calls (a health check every
    few seconds costs one request on an open connection, not a new client); it is dropped after
    a failure."""
    from yadtq.broker import KafkaAdmin

    key = (settings.kafka_bootstrap, settings.kafka_security_protocol)
    with _probe_lock:
        admin = _probes.get(key)
        try:
            if admin is None:
                admin = _probes[key] = KafkaAdmin(settings, timeout)
            admin.list_topics()
        except YadtqError as exc:  # any failure means "not reachable now"
            _probes.pop(key, None)
            if admin is not None:
                admin.close()
            if isinstance(exc, ServiceUnavailable):
                raise
            raise ServiceUnavailable(f"Kafka unreachable at {settings.kafka_bootstrap}: {exc}") from None


def log_failed_commit(offsets: Any, response: Any) -> None:
    """The callback of an asynchronous commit: a failure is logged (the tasks are done)."""
    if isinstance(response, Exception):
        log.warning(
            "asynchronous commit failed (the tasks are done; a redelivery skips them): %s", response)


def dead_letter_body(record: Record, reason: str, worker_id: str) -> bytes:
    """The dead-letter message for an undecodable or invalid record: the reason, where the record
    was, and its first 64 KiB as text."""
    return json.dumps({
        "reason": reason, "worker": worker_id, "topic": record.topic,
        "partition": unslot(record.partition)[1], "offset": record.offset, "at": time.time(),
        "value": None if record.value is None
        else record.value[:65536].decode("utf-8", "backslashreplace"),
    }).encode("utf-8", "backslashreplace")


class LagReader:
    """The consumer group's lag per topic and partition: end offset minus committed offset (a
    partition never committed counts whole). One offsets reader (``factory(settings)``, e.g.
    ``yadtq.broker.KafkaAdmin``) is kept between reads and dropped after a failure. Thread-safe;
    used by the client's health check and dashboard (``by_queue``) and the worker's metrics
    (``by_topic``)."""

    def __init__(self, settings: Settings, factory: Callable[[Settings], Any]) -> None:
        self._settings, self._factory = settings, factory
        self._offsets: Any = None
        self._lock = threading.Lock()

    def read(self) -> dict[int, int]:
        """partition -> lag of the tasks topic; raises ``YadtqError`` when Kafka cannot say."""
        return self._with_offsets(lambda offsets: _topic_lag(offsets, None))

    def by_topic(self, topics: Iterable[str] | None = None) -> dict[str, dict[int, int]]:
        """topic -> partition -> lag for each of ``topics`` (default: every queue's topic at every
        level, ``yadtq.keys.topic_route``) that exists: a topic missing from Kafka's metadata (a
        queue or level never used) is left out, not made. All or nothing: raises ``YadtqError``
        when Kafka cannot say for one of them."""
        base, dead = self._settings.topic, self._settings.dead_letter_topic

        def lags(offsets: Any) -> dict[str, dict[int, int]]:
            existing = offsets.list_topics()
            wanted = (sorted(t for t in existing if t != dead and topic_route(base, t))
                      if topics is None else [t for t in topics if t in existing])
            return {t: _topic_lag(offsets, t) for t in wanted}

        return self._with_offsets(lags)

    def by_queue(self) -> dict[str, int]:
        """queue -> its topics' lag over all their partitions and levels, for every queue whose
        topic exists (``by_topic``); raises ``YadtqError`` when Kafka cannot say."""
        out: dict[str, int] = {}
        for topic, lags in self.by_topic().items():
            queue = topic_queue(self._settings.topic, topic)
            if queue is not None:
                out[queue] = out.get(queue, 0) + sum(lags.values())
        return out

    def _with_offsets(self, read: Callable[[Any], T]) -> T:
        with self._lock:
            try:
                if self._offsets is None:
                    self._offsets = self._factory(self._settings)
                return read(self._offsets)
            except YadtqError:
                self._close()
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None


def _topic_lag(offsets: Any, topic: str | None) -> dict[int, int]:
    """partition -> lag of ``topic`` (None: the tasks topic), read with ``offsets``."""
    ends = offsets.end_offsets(offsets.partitions(topic), topic)
    committed = offsets.committed(topic)
    return {p: max(0, int(end) - int(committed.get(p, 0))) for p, end in sorted(ends.items())}
