"""The second Kafka adapter, the one module that imports confluent-kafka (librdkafka): the task
producer and the worker's consumer, with the surfaces of ``yadtq.broker.TaskProducer`` and
``TaskConsumer``. Chosen with ``YADTQ_KAFKA_CLIENT=confluent`` (``pip install yadtq[confluent]``);
kafka-python stays the default, and the admin client (topics, offsets, the health probe) is
kafka-python's in both cases. Errors leave this module as the core's (``translate``):
``ServiceUnavailable`` for a transport, timeout or retriable error, ``BrokerError`` otherwise.

The settings mirror ``yadtq.broker``'s: acks=all, idempotent producer, linger 0, the murmur2
partitioner (a task lands on the partition ``yadtq.broker.partition_of`` computes, as with
kafka-python), Nagle off; manual commits, a fetch wait of 100 ms. The group uses librdkafka's
round-robin assignor: a worker consumes three topics per queue (one per priority level) and
cooperative-sticky balances only the total per member, so one worker could get every partition
of one level and none of the others; librdkafka takes no custom assignor (kafka-python's workers
use ``yadtq.assign``), and round-robin over the sorted partitions of topics all members share
splits each topic within one. Its rebalances are eager (every member pauses while the group
rebalances). Workers of one group use one client. Measured against kafka-python in
``bench/bench_kafka_clients.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from yadtq.broker_types import QueueTopics, Record, SlotTopics, dead_letter_body
from yadtq.errors import BrokerError, ServiceUnavailable, YadtqError
from yadtq.kafka_conn import DELIVERY_TIMEOUT_SECONDS, heartbeat_interval_ms
from yadtq.settings import Settings
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.broker")

__all__ = ["ConfluentConsumer", "ConfluentProducer", "confluent_config", "translate"]

_TRANSIENT = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
              KafkaError._MSG_TIMED_OUT, KafkaError._RESOLVE, KafkaError.REQUEST_TIMED_OUT,
              KafkaError._TIMED_OUT_QUEUE, KafkaError.NETWORK_EXCEPTION,
              KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
              KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
              KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.REBALANCE_IN_PROGRESS}
"""Codes that mean "not now" (kafka-python's retriable errors) besides librdkafka's own flag."""


def confluent_config(settings: Settings, client_id: str = "yadtq") -> dict[str, Any]:
    """``yadtq.kafka_conn.client_config`` in librdkafka's names; librdkafka's own log lines go to
    the ``yadtq.broker.librdkafka`` logger (served by ``poll``), not to stderr."""
    cfg: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "client.id": client_id,
                           "security.protocol": settings.kafka_security_protocol,
                           "reconnect.backoff.max.ms": 1000, "socket.nagle.disable": True,
                           "logger": logging.getLogger("yadtq.broker.librdkafka")}
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg["sasl.mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        cfg["sasl.username"] = settings.kafka_sasl_username or ""
        cfg["sasl.password"] = settings.sasl_password() or ""
    if settings.kafka_ssl_cafile:
        cfg["ssl.ca.location"] = settings.kafka_ssl_cafile
    return cfg


def translate(exc: BaseException | KafkaError, bootstrap: str, what: str) -> YadtqError:
    """The core's error for a confluent-kafka failure (an exception or a ``KafkaError``)."""
    if isinstance(exc, YadtqError):
        return exc
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if isinstance(err, KafkaError):
        text = f"{err.name()}: {err.str()}"
        if err.code() in _TRANSIENT or err.retriable():
            return ServiceUnavailable(f"Kafka unreachable at {bootstrap} ({what}): {text}")
        return BrokerError(f"Kafka refused {what}: {text}")
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (BufferError, OSError, TimeoutError)):  # BufferError: local queue full
        return ServiceUnavailable(f"Kafka unreachable at {bootstrap} ({what}): {text}")
    return BrokerError(f"Kafka refused {what}: {text}")


_FAILURES: tuple[type[Exception], ...] = (KafkaException, BufferError, OSError, ValueError,
                                          TypeError, RuntimeError)
"""What confluent-kafka raises: its exception, a full local queue, bad arguments, a closed client."""


@contextmanager
def _errors(bootstrap: str, what: str) -> Iterator[None]:
    try:
        yield
    except YadtqError:
        raise
    except _FAILURES as exc:  # the translation point: every failure of the client
        raise translate(exc, bootstrap, what) from None


class _Pending:
    """The delivery reports of one ``send`` call: ``done`` once every message has one."""

    def __init__(self, n: int) -> None:
        self.errors: list[Exception | None] = [None] * n
        self.reported = [False] * n
        self.left = n
        self.done = threading.Event()
        self._lock = threading.Lock()
        if n == 0:
            self.done.set()

    def report(self, i: int, err: Exception | None) -> None:
        with self._lock:
            self.errors[i], self.reported[i] = err, True
            self.left -= 1
            if self.left == 0:
                self.done.set()

    def outcome(self) -> list[Exception | None]:
        """Per message its error or None; one without a report yet has failed (timed out)."""
        with self._lock:
            return [err if seen else ServiceUnavailable("Kafka did not acknowledge the task in time")
                    for err, seen in zip(self.errors, self.reported, strict=True)]


class ConfluentProducer:
    """Sends task envelopes through librdkafka and waits for the broker's acknowledgement.

    One background thread serves the delivery reports (``Producer.poll``): a waiting ``send``
    wakes when its last report is in; ``send_async``'s ``on_error`` runs in that thread."""

    def __init__(self, settings: Settings, linger_ms: int = 0) -> None:
        self.settings = settings
        self._topics = QueueTopics(settings)
        with _errors(settings.kafka_bootstrap, "a producer"):
            self._p = Producer({
                **confluent_config(settings), "acks": "all", "linger.ms": linger_ms,
                "enable.idempotence": True, "max.in.flight.requests.per.connection": 5,
                "request.timeout.ms": 5000,
                "delivery.timeout.ms": int(DELIVERY_TIMEOUT_SECONDS * 1000),
                "partitioner": "murmur2_random"})
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="yadtq-producer-reports",
                                        daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                self._p.poll(0.1)
            except Exception as exc:  # noqa: BLE001 - a callback's failure must not stop the reports
                log.warning("serving delivery reports: %s", exc)

    def _unacked(self, err: Any) -> Exception:
        return ServiceUnavailable("Kafka did not acknowledge the task: "
                                  f"{translate(err, self.settings.kafka_bootstrap, 'the task')}")

    def _produce(self, topic: str, value: bytes, key: bytes | None,
                 on_delivery: Callable[[Any, Any], None]) -> None:
        with _errors(self.settings.kafka_bootstrap, "the task"):
            self._p.produce(topic, value=value, key=key, on_delivery=on_delivery)

    def _to_queue(self, env: Envelope, on_delivery: Callable[[Any, Any], None]) -> None:
        """Produce ``env`` to its queue's topic (``QueueTopics``)."""
        value = env.encode()
        self._produce(self._topics.of(env), value, env.id.encode(), on_delivery)

    def send(self, envelopes: Sequence[Envelope], timeout: float = 10.0,
             meanwhile: Callable[[], None] | None = None) -> list[Exception | None]:
        """Send each envelope (keyed by task id) and wait for its ack; per envelope the error or
        None. ``meanwhile``: see ``yadtq.broker_types.Producer``."""
        pending = _Pending(len(envelopes))
        for i, env in enumerate(envelopes):
            def delivered(err: Any, _msg: Any, i: int = i) -> None:
                pending.report(i, None if err is None else self._unacked(err))
            try:
                self._to_queue(env, delivered)
            except YadtqError as exc:  # reported per task (an envelope that does not encode too)
                pending.report(i, exc if not isinstance(exc, BrokerError)
                               else ServiceUnavailable(f"Kafka refused the task: {exc}"))
        if meanwhile is not None:
            meanwhile()
        pending.done.wait(timeout)
        return pending.outcome()

    def send_async(self, envelopes: Sequence[Envelope],
                   on_error: Callable[[Envelope, Exception], None]) -> None:
        """Send without waiting for the ack; ``on_error`` runs (in the reports thread) for a failure."""
        for env in envelopes:
            def delivered(err: Any, _msg: Any, env: Envelope = env) -> None:
                if err is not None:
                    on_error(env, self._unacked(err))
            try:
                self._to_queue(env, delivered)
            except YadtqError as exc:  # reported per task
                on_error(env, exc)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every message sent so far is acknowledged or has failed."""
        try:
            self._p.flush(timeout)
        except _FAILURES:
            pass  # the delivery reports say what failed

    def _send_wait(self, topic: str, value: bytes, key: bytes | None, what: str) -> None:
        pending = _Pending(1)
        self._produce(topic, value, key,
                      lambda err, _m: pending.report(0, None if err is None else
                                                     translate(err, self.settings.kafka_bootstrap,
                                                               what)))
        if not pending.done.wait(DELIVERY_TIMEOUT_SECONDS):
            raise ServiceUnavailable(f"Kafka did not acknowledge {what} in time")
        if pending.errors[0] is not None:
            raise pending.errors[0]

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._send_wait(topic, value, key, "a message")

    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None:
        """Put an undecodable or invalid message on the dead-letter topic with the reason."""
        self._send_wait(self.settings.dead_letter_topic, dead_letter_body(record, reason, worker_id),
                        None, "a dead letter")

    def close(self) -> None:
        self.flush(2)
        self._closed.set()
        self._poller.join(1)


class ConfluentConsumer:
    """The worker's view of its queues' topics through librdkafka (partitions named by slot, as in
    ``yadtq.broker.TaskConsumer``): poll, pause/resume, seek, commit.

    ``poll`` waits for one message, then takes what librdkafka has already fetched (``consume(n,
    0)``; ``consume(n, timeout)`` alone would wait for n messages or the whole timeout). The
    rebalance callbacks run inside ``poll`` (librdkafka calls them from the polling thread)."""

    keeps_paused_fetches = False

    def __init__(self, settings: Settings, client_id: str,
                 on_revoked: Callable[[set[int]], None] = lambda _p: None,
                 on_assigned: Callable[[set[int]], None] = lambda _p: None) -> None:
        self.settings = settings
        self._topics = SlotTopics(settings)
        self._on_revoked, self._on_assigned = on_revoked, on_assigned
        self._joined = False
        with self._errors("a consumer"):
            self._c = Consumer({
                **confluent_config(settings, client_id), "group.id": settings.group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": heartbeat_interval_ms(settings),
                "max.poll.interval.ms": settings.max_poll_interval_ms, "fetch.wait.max.ms": 100,
                "allow.auto.create.topics": False,
                "partition.assignment.strategy": "roundrobin",  # per topic: see __init__
                "on_commit": self._committed})
            self._c.subscribe(self._topics.names, on_assign=self._assigned,
                              on_revoke=self._revoked, on_lost=self._lost)

    def _errors(self, what: str) -> Any:
        return _errors(self.settings.kafka_bootstrap, what)

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        """Take the partitions, unpaused: librdkafka keeps a partition's pause through a revoke and
        a re-assign to the same member, the worker (as kafka-python) counts a new assignment as
        unpaused, so a partition paused when revoked would otherwise stay paused for good."""
        consumer.assign(partitions)  # eager (round-robin): the whole new assignment
        if partitions:
            consumer.resume(partitions)
        self._joined = True
        self._on_assigned(self._slots(partitions))

    def _slots(self, tps: Any) -> set[int]:
        return self._topics.slots((tp.topic, tp.partition) for tp in tps)

    def _revoked(self, _c: Any, partitions: list[Any]) -> None:
        self._on_revoked(self._slots(partitions))

    def _lost(self, _c: Any, partitions: list[Any]) -> None:
        """The session expired: the partitions are gone and the member joins again."""
        self._joined = False
        self._on_revoked(self._slots(partitions))

    @staticmethod
    def _committed(err: Any, _partitions: Any) -> None:
        if err is not None:
            log.warning("asynchronous commit failed (the tasks are done; a redelivery skips them): "
                        "%s", err)

    def _tp(self, number: int, offset: int | None = None) -> Any:
        topic, partition = self._topics.of(number)
        if offset is None:
            return TopicPartition(topic, partition)
        return TopicPartition(topic, partition, offset)

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]:
        limit = max_records or self.settings.max_poll_records
        with self._errors("poll"):
            first = self._c.poll(timeout_ms / 1000)
            if first is None:
                return []
            messages = [first, *(self._c.consume(limit - 1, 0) if limit > 1 else [])]
        out: list[Record] = []
        failed: list[Any] = []
        for m in messages:
            err = m.error()
            if err is None:
                topic = m.topic() or ""
                out.append(Record(self._topics.slot(topic, m.partition() or 0),
                                  m.offset() or 0, m.value(), topic))
            elif err.code() != KafkaError._PARTITION_EOF:
                failed.append(err)
        if failed and not out:  # records are never dropped for an error beside them
            raise translate(failed[0], self.settings.kafka_bootstrap, "poll")
        for err in failed:
            log.warning("consumer: %s", err)
        return out

    def assignment(self) -> set[int]:
        with self._errors("assignment"):
            return self._slots(self._c.assignment())

    def joined(self) -> bool:
        """False until the group gives this member its (possibly empty) assignment, and again
        after the member lost its partitions (its session expired) until it has them back.
        librdkafka keeps no public join state; a rebalance between members counts as joined."""
        return self._joined

    def pause(self, partitions: set[int]) -> None:
        if partitions:
            with self._errors("pause"):
                self._c.pause([self._tp(p) for p in partitions])

    def resume(self, partitions: set[int]) -> None:
        if partitions:
            with self._errors("resume"):
                self._c.resume([self._tp(p) for p in partitions])

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` again from ``offset`` at the next poll (if it is still assigned)."""
        with self._errors("seek"):
            if partition in self.assignment():
                self._c.seek(self._tp(partition, offset))

    def lags(self, partitions: set[int]) -> dict[int, int] | None:
        """Not known here (librdkafka asks for watermarks one partition at a time): None, and a
        held-back priority level gets its turns without knowing (``worker.priority``)."""
        return None

    def commit(self, offsets: dict[int, int], wait: bool = True) -> None:
        """Commit ``partition -> next offset to read``. ``wait=True`` raises on failure (e.g. a
        partition lost); ``wait=False`` sends the commit and logs a failure later."""
        if not offsets:
            return
        tps = [self._tp(p, o) for p, o in offsets.items()]
        with self._errors("the commit"):
            if wait:
                for tp in self._c.commit(offsets=tps, asynchronous=False) or []:
                    if tp.error is not None:
                        raise translate(tp.error, self.settings.kafka_bootstrap, "the commit")
            else:
                self._c.commit(offsets=tps, asynchronous=True)

    def close(self) -> None:
        with self._errors("closing the consumer"):
            self._c.close()

