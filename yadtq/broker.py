"""The Kafka adapter, the one module that imports kafka-python: the task producer, the worker's
consumer, the admin client (offsets, topics, the health probe) and ``kafka_errors``, the one place
where kafka-python's exceptions become the core's (``ServiceUnavailable`` if retriable or a
connection error, ``BrokerError`` otherwise). Client settings: ``yadtq.kafka_conn``; the topics'
rules: ``yadtq.topics``; in-memory fakes of the same surfaces: ``yadtq.testing``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic, OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    TopicAlreadyExistsError,
)
from kafka.partitioner.default import murmur2
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment
from kafka.structs import MemberState

from yadtq import assign, kafka_conn, topics
from yadtq.broker_types import QueueTopics, Record, Renewing, SlotTopics, dead_letter_body, log_failed_commit
from yadtq.errors import BrokerError, ServiceUnavailable, YadtqError
from yadtq.kafka_conn import DELIVERY_TIMEOUT_SECONDS, client_config, consumer_config, producer_config
from yadtq.settings import Settings
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.broker")

__all__ = ["DELIVERY_TIMEOUT_SECONDS", "KAFKA_FAILURES", "KafkaAdmin", "TaskConsumer", "TaskProducer",
           "client_config", "ensure_topics", "kafka_errors", "partition_of", "translate"]

KAFKA_FAILURES: tuple[type[Exception], ...] = (KafkaError, OSError, ValueError, AssertionError,
                                              RuntimeError)
"""What kafka-python raises when a request fails: its own errors, socket errors, and what its
internals raise for bad state (an unknown topic in the metadata, a closed client)."""

_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, OSError, TimeoutError)


def translate(exc: BaseException, bootstrap: str, what: str) -> YadtqError:
    """The core's error for an exception of the Kafka client: transient or permanent."""
    if isinstance(exc, YadtqError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _UNREACHABLE) or getattr(exc, "retriable", False):
        return ServiceUnavailable(f"Kafka unreachable at {bootstrap} ({what}): {text}")
    return BrokerError(f"Kafka refused {what}: {text}")


@contextmanager
def kafka_errors(bootstrap: str, what: str) -> Iterator[None]:
    """Run the block; a kafka-python failure leaves it as ``ServiceUnavailable`` / ``BrokerError``."""
    try:
        yield
    except YadtqError:
        raise
    except KAFKA_FAILURES as exc:  # the translation point: every failure of the client
        raise translate(exc, bootstrap, what) from None


_errors = kafka_errors
_SEND_FAILURES: tuple[type[Exception], ...] = (YadtqError, *KAFKA_FAILURES)
"""A send also fails when the envelope does not encode (``DecodeError``)."""


class TaskProducer:
    """Sends task envelopes to the tasks topic and waits for the broker's acknowledgement.

    After a delivery times out (a broker failure longer than the delivery timeout) the next send
    goes through a new kafka-python producer (``Renewing``): its idempotent producer was seen to
    stay stuck after an expired batch (every later send timed out, 90 s in a test); a new one
    starts with a fresh producer id."""

    def __init__(self, settings: Settings, linger_ms: int = 0) -> None:
        self.settings = settings
        self._topics = QueueTopics(settings)

        def new() -> Any:
            with _errors(settings.kafka_bootstrap, "a producer"):
                return KafkaProducer(**producer_config(settings, linger_ms))

        self._clients = Renewing(new, lambda old: self._close(old, DELIVERY_TIMEOUT_SECONDS),
                                 "a Kafka delivery timed out: sending through a new producer now")
        self._producer = self._clients.get

    def _send_one(self, producer: Any, env: Envelope) -> Any:
        """Hand ``env`` to kafka-python, to its queue's topic: its future, or the exception that
        refused it."""
        try:
            value = env.encode()
            return producer.send(self._topics.of(env), key=env.id.encode(), value=value)
        except _SEND_FAILURES as exc:  # reported per task
            return exc

    def _unacked(self, exc: BaseException) -> Exception:
        """A failed delivery's error; after a timeout the producer is replaced before the next send."""
        if isinstance(exc, KafkaTimeoutError):
            self._clients.stale()
        return ServiceUnavailable(f"Kafka did not acknowledge the task: {type(exc).__name__}: {exc}")

    def send(self, envelopes: Sequence[Envelope], timeout: float = 10.0,
             meanwhile: Callable[[], None] | None = None) -> list[Exception | None]:
        """Send each envelope (keyed by task id) and wait for its ack; per envelope the error or
        None. ``meanwhile``: see ``yadtq.broker_types.Producer``."""
        try:
            producer = self._producer()
        except YadtqError as exc:
            return [exc] * len(envelopes)
        futures = [self._send_one(producer, env) for env in envelopes]
        if meanwhile is not None:
            meanwhile()
        if len(envelopes) > 1:
            self._flush(producer, timeout)
        errors: list[Exception | None] = []
        deadline = time.monotonic() + timeout
        for fut in futures:
            if isinstance(fut, Exception):
                errors.append(self._refused(fut))
                continue
            try:
                fut.get(timeout=max(0.01, deadline - time.monotonic()))
                errors.append(None)
            except KAFKA_FAILURES as exc:  # every failure is reported per task
                errors.append(self._unacked(exc))
        return errors

    def send_async(self, envelopes: Sequence[Envelope],
                   on_error: Callable[[Envelope, Exception], None]) -> None:
        """Send without waiting for the ack; ``on_error`` runs (in the sender thread) for a failure."""
        try:
            producer = self._producer()
        except YadtqError as exc:
            for env in envelopes:
                on_error(env, exc)
            return
        for env in envelopes:
            fut = self._send_one(producer, env)
            if isinstance(fut, Exception):
                on_error(env, self._refused(fut))
                continue
            fut.add_errback(lambda exc, e=env: on_error(e, self._unacked(exc)))

    @staticmethod
    def _refused(exc: Exception) -> Exception:
        if isinstance(exc, YadtqError):
            return exc
        return ServiceUnavailable(f"Kafka refused the task: {type(exc).__name__}: {exc}")

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every message sent so far is acknowledged or has failed."""
        self._flush(self._clients.current, timeout)

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        with _errors(self.settings.kafka_bootstrap, "a message"):
            self._producer().send(topic, key=key, value=value).get(timeout=10)

    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None:
        """Put an undecodable or invalid message on the dead-letter topic with the reason."""
        body = dead_letter_body(record, reason, worker_id)
        with _errors(self.settings.kafka_bootstrap, "a dead letter"):
            self._producer().send(self.settings.dead_letter_topic, value=body).get(timeout=10)

    @staticmethod
    def _flush(producer: Any, timeout: float) -> None:
        try:
            producer.flush(timeout=timeout)
        except KAFKA_FAILURES:
            pass  # the per-message futures say what failed

    @staticmethod
    def _close(producer: Any, timeout: float) -> None:
        try:
            producer.close(timeout=timeout)
        except KAFKA_FAILURES as exc:  # closing: nothing to hand back
            log.warning("closing the producer: %s", exc)

    def close(self) -> None:
        self._close(self._clients.current, 2)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's network thread: it must not call the consumer (no commit here)."""

    def __init__(self, on_revoked: Callable[[set[int]], None],
                 on_assigned: Callable[[set[int]], None], slots: Callable[[Any], set[int]]) -> None:
        self.on_revoked, self.on_assigned, self.slots = on_revoked, on_assigned, slots

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.on_revoked(self.slots(revoked))

    on_partitions_lost = on_partitions_revoked  # lost (the session expired): gone all the same

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.on_assigned(self.slots(assigned))


class PerTopicAssignor(CooperativeStickyAssignor):  # type: ignore[misc]
    """Cooperative (KIP-429) and balanced per topic: ``yadtq.assign``. Listed before
    cooperative-sticky, so a group whose members all offer it uses it (a rolling upgrade keeps
    the old one until the last old worker leaves)."""

    name = "yadtq-per-topic"

    def assign(self, cluster: Any, members: Any) -> dict[str, Any]:
        meta = {m.member_id: self.parse_member_metadata(m.metadata) for m in members}
        subs = {mid: list(md.subscription) for mid, md in meta.items()}
        owned = {mid: [(tp.topic, tp.partition) for tp in md.partitions] for mid, md in meta.items()}
        counts = {t: sorted(cluster.partitions_for_topic(t) or ()) for v in subs.values() for t in v}
        now = assign.cooperative(assign.plan(subs, counts, owned), owned)
        return {mid: ConsumerProtocolAssignment(self.version, sorted(
            (t, ps) for t, ps in now[mid].items() if ps), b"") for mid in subs}


class TaskConsumer:
    """The worker's view of its queues' topics (``Settings.queue_list``): poll, pause/resume,
    seek, commit after processing, each partition named by its slot (``SLOT_STRIDE``).

    The group's assignor is cooperative (KIP-429: a worker joining or leaving moves only the
    partitions that change owner; the others keep running through the rebalance) and balanced per
    topic (``PerTopicAssignor``: every worker gets its share of each priority level)."""

    keeps_paused_fetches = True

    def __init__(self, settings: Settings, client_id: str,
                 on_revoked: Callable[[set[int]], None] = lambda _p: None,
                 on_assigned: Callable[[set[int]], None] = lambda _p: None) -> None:
        self.settings = settings
        self._topics = SlotTopics(settings)
        with _errors(settings.kafka_bootstrap, "a consumer"):
            self._c = KafkaConsumer(**consumer_config(settings, client_id),
                                    partition_assignment_strategy=(PerTopicAssignor,
                                                                   CooperativeStickyAssignor))
            self._c.subscribe(self._topics.names,
                              listener=_Listener(on_revoked, on_assigned, self._slots))

    def _tp(self, number: int) -> Any:
        return TopicPartition(*self._topics.of(number))

    def _slots(self, tps: Any) -> set[int]:
        return self._topics.slots((tp.topic, tp.partition) for tp in tps)

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]:
        kafka_conn.finish_pending_join(self._c)  # kafka-python 3.0.12 work-arounds
        kafka_conn.release_parked(self._c)
        with _errors(self.settings.kafka_bootstrap, "poll"):
            batches = self._c.poll(timeout_ms=timeout_ms, max_records=max_records)
        out: list[Record] = []
        for tp, messages in batches.items():
            number = self._topics.slot(tp.topic, tp.partition)
            out.extend(Record(number, m.offset, m.value, tp.topic) for m in messages)
        return out

    def assignment(self) -> set[int]:
        with _errors(self.settings.kafka_bootstrap, "assignment"):
            return self._slots(self._c.assignment())

    def joined(self) -> bool:
        """False while this member is still (re)joining its group. kafka-python keeps the state
        on its coordinator (not public API: if that changes, this says True and nothing waits)."""
        state = getattr(getattr(self._c, "_coordinator", None), "state", MemberState.STABLE)
        return bool(state == MemberState.STABLE)

    def pause(self, partitions: set[int]) -> None:
        with _errors(self.settings.kafka_bootstrap, "pause"):
            self._c.pause(*(self._tp(p) for p in partitions))

    def resume(self, partitions: set[int]) -> None:
        with _errors(self.settings.kafka_bootstrap, "resume"):
            self._c.resume(*(self._tp(p) for p in partitions))

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` again from ``offset`` at the next poll (if it is still assigned)."""
        with _errors(self.settings.kafka_bootstrap, "seek"):
            if self._tp(partition) in self._c.assignment():
                self._c.seek(self._tp(partition), offset)

    def lags(self, partitions: set[int]) -> dict[int, int] | None:
        """Messages after this consumer's position per assigned partition (one offsets request; paused
        ones included; one whose position is not known yet, a new assignment's, left out)."""
        tps = {p: self._tp(p) for p in partitions & self.assignment()}
        with _errors(self.settings.kafka_bootstrap, "reading lags"):
            ends = self._c.end_offsets(list(tps.values()), timeout_ms=1000)
            positions = {p: self._c.position(tp, timeout_ms=200) for p, tp in tps.items()}
            return {p: max(0, ends[tp] - positions[p]) for p, tp in tps.items()
                    if positions[p] is not None and tp in ends}

    def commit(self, offsets: dict[int, int], wait: bool = True) -> None:
        """Commit ``partition -> next offset to read``. ``wait=True`` raises on failure (e.g. a
        partition lost); ``wait=False`` sends the commit and logs a failure later."""
        if not offsets:
            return
        data = {self._tp(p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        with _errors(self.settings.kafka_bootstrap, "the commit"):
            if wait:
                self._c.commit(data)
            else:
                self._c.commit_async(data, callback=log_failed_commit)

    def close(self) -> None:
        with _errors(self.settings.kafka_bootstrap, "closing the consumer"):
            self._c.close(autocommit=False)


def partition_of(task_id: str, partitions: int) -> int:
    """The partition the producer puts a task on (the default partitioner: murmur2 of the key)."""
    return int(murmur2(task_id.encode()) & 0x7FFFFFFF) % partitions


class KafkaAdmin:
    """One kafka-python admin client: the tasks topic's end offsets and the group's commits (the
    reconciler, the lag), the topics' creation and checks (``yadtq.topics.TopicAdmin``) and the
    health probe. Every request raises ``YadtqError`` on failure."""

    def __init__(self, settings: Settings, timeout: float = 5.0) -> None:
        self.settings = settings
        cfg = {**client_config(settings), "bootstrap_timeout_ms": int(timeout * 1000)}
        with _errors(settings.kafka_bootstrap, "connecting"):
            self._admin = KafkaAdminClient(**cfg, request_timeout_ms=int(timeout * 1000))

    def _errors(self, what: str) -> Any:
        return _errors(self.settings.kafka_bootstrap, what)

    def partitions(self, topic: str | None = None) -> int:
        """How many partitions the tasks topic (or ``topic``) has."""
        return topics.partition_count(self, topic or self.settings.topic)

    def end_offsets(self, partitions: int, topic: str | None = None) -> dict[int, int]:
        """partition -> offset of the next message written to it."""
        name = topic or self.settings.topic
        specs = {TopicPartition(name, p): OffsetSpec.LATEST for p in range(partitions)}
        with self._errors("list offsets"):
            found = self._admin.list_partition_offsets(specs)
        return {tp.partition: int(o.offset) for tp, o in found.items()}

    def committed(self, topic: str | None = None) -> dict[int, int]:
        """partition -> the group's committed offset on the tasks topic (or ``topic``), if any."""
        name = topic or self.settings.topic
        with self._errors("list the group's offsets"):
            found = self._admin.list_group_offsets({self.settings.group: None})
        return {tp.partition: int(o.offset) for tp, o in found.get(self.settings.group, {}).items()
                if tp.topic == name and o.offset >= 0}

    partition_of = staticmethod(partition_of)

    def live_brokers(self) -> int:
        """Brokers in the cluster's metadata that are not fenced."""
        with self._errors("describe the cluster"):
            brokers = self._admin.describe_cluster().get("brokers") or []
        return sum(1 for b in brokers if not b.get("is_fenced", False))

    def list_topics(self) -> set[str]:
        with self._errors("list topics"):
            return set(self._admin.list_topics())

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        with self._errors("describe topics"):
            return list(self._admin.describe_topics(names))

    def create_topics(self, specs: list[topics.TopicSpec]) -> bool:
        """Create the topics; False when another client created them first."""
        new = [NewTopic(s.name, s.partitions, s.replication_factor,
                        topic_configs={"min.insync.replicas": str(s.min_insync_replicas)})
               for s in specs]
        with self._errors("create topics"):
            try:
                self._admin.create_topics(new)
            except TopicAlreadyExistsError:
                return False
        return True

    def min_isr(self, names: list[str]) -> dict[str, int]:
        """topic -> its ``min.insync.replicas`` (absent when not readable)."""
        resources = [ConfigResource(ConfigResourceType.TOPIC, t, ["min.insync.replicas"])
                     for t in names]
        with self._errors("describe topic configs"):
            found = self._admin.describe_configs(resources).get("topic", {})
        values = {t: (c.get("min.insync.replicas") or {}).get("value") for t, c in found.items()}
        return {t: int(v) for t, v in values.items() if v is not None and str(v).isdigit()}

    def close(self) -> None:
        try:
            self._admin.close()
        except KAFKA_FAILURES as exc:  # closing
            log.debug("closing the admin client: %s", exc)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """``yadtq.topics.ensure_topics`` with kafka-python's admin client."""
    topics.ensure_topics(settings, lambda: KafkaAdmin(settings), timeout)

