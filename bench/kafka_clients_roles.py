"""The child processes of ``bench/bench_kafka_clients.py``: one producer or one consumer, with
kafka-python or confluent-kafka, configured as YADTQ configures its own (``yadtq/broker.py``,
``yadtq/kafka_conn.py``). Each prints one JSON line with what it measured; the consumer first
prints ``READY`` once it owns every partition.

    python bench/kafka_clients_roles.py confirmed|submit|produce|consume --client kafka-python|confluent ...

Payload: ``seq:monotonic_ns:`` padded to 200 bytes (about a YADTQ envelope), key a task-id-like
hex string. ``CLOCK_MONOTONIC`` is one clock for every process on Linux, so the consumer subtracts
the producer's timestamp directly. The consumer says ``READY`` once it has read a priming message
(seq -1, put on every partition before it started): every partition's position is then resolved
and fetched. A warm-up message (seq -1) is confirmed first by each producer (connection,
metadata, producer id) and ignored by the consumer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yadtq.kafka_conn import client_config
from yadtq.settings import Settings

PAYLOAD = 200
SETTINGS = Settings.from_env()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def payload(seq: int) -> bytes:
    head = f"{seq}:{time.monotonic_ns()}:".encode()
    return head + b"x" * max(0, PAYLOAD - len(head))


def key() -> bytes:
    return uuid.uuid4().hex.encode()


# ------------------------------------------------------------------------------ producers
class KafkaPythonProducer:
    """``yadtq.broker.TaskProducer._new``'s settings."""

    def __init__(self) -> None:
        from kafka import KafkaProducer
        self.p = KafkaProducer(
            **client_config(SETTINGS), acks="all", linger_ms=0, max_block_ms=5000,
            request_timeout_ms=5000, delivery_timeout_ms=10000, enable_idempotence=True,
            max_in_flight_requests_per_connection=5)
        self.futures: list[Any] = []

    def send_wait(self, topic: str, value: bytes) -> None:
        self.p.send(topic, key=key(), value=value).get(timeout=10)

    def send(self, topic: str, value: bytes) -> None:
        self.futures.append(self.p.send(topic, key=key(), value=value))

    def finish(self) -> int:
        """Wait for every ack; how many failed."""
        self.p.flush(timeout=30)
        failed = sum(1 for f in self.futures if not f.succeeded())
        self.p.close(timeout=5)
        return failed


class ConfluentProducer:
    """The same settings in librdkafka's names; murmur2 partitioner as kafka-python's (a task's
    partition stays the same), Nagle off as kafka-python's sockets (TCP_NODELAY)."""

    def __init__(self) -> None:
        from confluent_kafka import Producer
        self.p = Producer({
            "bootstrap.servers": SETTINGS.kafka_bootstrap, "client.id": "yadtq",
            "acks": "all", "linger.ms": 0, "enable.idempotence": True,
            "max.in.flight.requests.per.connection": 5, "request.timeout.ms": 5000,
            "delivery.timeout.ms": 10000, "reconnect.backoff.max.ms": 1000,
            "socket.nagle.disable": True, "partitioner": "murmur2_random"})
        self.acked = 0
        self.failed = 0
        self.sent = 0

    def _report(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1

    def send_wait(self, topic: str, value: bytes) -> None:
        done = self.acked + self.failed + 1
        self.p.produce(topic, key=key(), value=value, on_delivery=self._report)
        self.sent += 1
        deadline = time.monotonic() + 10
        while self.acked + self.failed < done:  # poll returns as soon as the report is served
            if time.monotonic() > deadline:
                raise TimeoutError("no delivery report in 10 s")
            self.p.poll(1.0)
        if self.failed:
            raise RuntimeError("delivery failed")

    def send(self, topic: str, value: bytes) -> None:
        self.p.produce(topic, key=key(), value=value, on_delivery=self._report)
        self.sent += 1
        self.p.poll(0)  # serve the delivery reports that are in

    def finish(self) -> int:
        self.p.flush(30)
        return self.sent - self.acked  # failed or never reported


PRODUCERS = {"kafka-python": KafkaPythonProducer, "confluent": ConfluentProducer}


def run_confirmed(client: str, topic: str, n: int) -> dict[str, Any]:
    """One thread: send, wait for the ack, next. Messages/s and the per-send latency."""
    prod = PRODUCERS[client]()
    prod.send_wait(topic, payload(-1))
    lat: list[float] = []
    cpu0, t0 = time.process_time(), time.monotonic()
    for i in range(n):
        s = time.perf_counter()
        prod.send_wait(topic, payload(i))
        lat.append((time.perf_counter() - s) * 1000)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    failed = prod.finish()
    return {"n": n, "per_s": n / wall, "ack_p50_ms": pct(lat, 50), "ack_p99_ms": pct(lat, 99),
            "cpu_s_per_10k": cpu / n * 10000, "failed": failed}


def run_submit(client: str, topic: str, n: int) -> dict[str, Any]:
    """YADTQ's own confirmed ``Client.submit()`` from one thread (a Redis script, then the send
    and its ack through ``YADTQ_KAFKA_CLIENT``'s producer); no worker: the tasks stay queued and
    this run's Redis keys are deleted at the end."""
    from yadtq import Client
    from yadtq.store import RedisStore

    settings = SETTINGS.with_(kafka_client=client, topic=topic, dead_letter_topic=f"{topic}.dlq",
                              key_prefix=f"yadtq:{topic}", group=f"{topic}.g")
    c = Client(settings)
    c.submit("ADD", [0, 0])  # warm-up: the producer, its connection, the scripts
    lat: list[float] = []
    cpu0, t0 = time.process_time(), time.monotonic()
    for i in range(n):
        s = time.perf_counter()
        c.submit("ADD", [i, 1])
        lat.append((time.perf_counter() - s) * 1000)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    c.close()
    store = RedisStore(settings)
    store.reset()
    for k in list(store.r.scan_iter(match=settings.key_prefix + ":*", count=1000)):
        store.r.unlink(k)
    return {"n": n, "per_s": n / wall, "ack_p50_ms": pct(lat, 50), "ack_p99_ms": pct(lat, 99),
            "cpu_s_per_10k": cpu / n * 10000, "failed": 0}


def run_produce(client: str, topic: str, n: int, rate: float) -> dict[str, Any]:
    """``n`` messages at ``rate``/s (0: as fast as the client takes them), acks collected at the end."""
    prod = PRODUCERS[client]()
    prod.send_wait(topic, payload(-1))
    cpu0, t0 = time.process_time(), time.monotonic()
    late = 0.0
    for i in range(n):
        if rate:
            due = t0 + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
        prod.send(topic, payload(i))
    sent_wall = time.monotonic() - t0
    failed = prod.finish()
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    return {"n": n, "offered_per_s": rate, "achieved_per_s": n / sent_wall, "wall_s": wall,
            "max_behind_ms": late * 1000, "cpu_s": cpu, "cpu_s_per_10k": cpu / n * 10000,
            "failed": failed}


# ------------------------------------------------------------------------------ consumers
class KafkaPythonConsumer:
    """``yadtq.broker.TaskConsumer``'s settings; ``poll`` as the worker's consume loop calls it."""

    def __init__(self, topic: str, group: str) -> None:
        from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
        self.tp, self.om, self.topic = TopicPartition, OffsetAndMetadata, topic
        cfg = client_config(SETTINGS)
        cfg["client_id"] = "bench-consumer"
        self.c = KafkaConsumer(
            **cfg, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=SETTINGS.max_poll_records,
            session_timeout_ms=SETTINGS.session_timeout_ms,
            heartbeat_interval_ms=max(100, SETTINGS.session_timeout_ms // 3),
            max_poll_interval_ms=SETTINGS.max_poll_interval_ms, fetch_max_wait_ms=100,
            request_timeout_ms=max(30000, SETTINGS.session_timeout_ms + 5000),
            allow_auto_create_topics=False, partition_assignment_strategy=(CooperativeStickyAssignor,))
        self.c.subscribe([topic])

    def assigned(self) -> int:
        return len(self.c.assignment())

    def poll(self, timeout_ms: int) -> list[tuple[int, int, bytes]]:
        batches = self.c.poll(timeout_ms=timeout_ms, max_records=SETTINGS.max_poll_records)
        return [(tp.partition, m.offset, m.value) for tp, ms in batches.items() for m in ms]

    def commit(self, offsets: dict[int, int]) -> None:
        self.c.commit_async({self.tp(self.topic, p): self.om(o, "", -1) for p, o in offsets.items()})

    def close(self) -> None:
        self.c.close(autocommit=False)


class ConfluentConsumer:
    """The same settings in librdkafka's names. ``poll`` waits for one message, then takes what is
    already fetched (``consume(n, 0)``): ``consume(n, timeout)`` alone waits for n or the timeout."""

    def __init__(self, topic: str, group: str) -> None:
        from confluent_kafka import Consumer, TopicPartition
        self.tp, self.topic = TopicPartition, topic
        self.c = Consumer({
            "bootstrap.servers": SETTINGS.kafka_bootstrap, "client.id": "bench-consumer",
            "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": SETTINGS.session_timeout_ms,
            "heartbeat.interval.ms": max(100, SETTINGS.session_timeout_ms // 3),
            "max.poll.interval.ms": SETTINGS.max_poll_interval_ms, "fetch.wait.max.ms": 100,
            "allow.auto.create.topics": False, "socket.nagle.disable": True,
            "partition.assignment.strategy": "cooperative-sticky", "reconnect.backoff.max.ms": 1000})
        self.c.subscribe([topic])

    def assigned(self) -> int:
        return len(self.c.assignment())

    def poll(self, timeout_ms: int) -> list[tuple[int, int, bytes]]:
        first = self.c.poll(timeout_ms / 1000)
        if first is None:
            return []
        msgs = [first, *self.c.consume(SETTINGS.max_poll_records - 1, 0)]
        return [(m.partition(), m.offset(), m.value()) for m in msgs if m.error() is None]

    def commit(self, offsets: dict[int, int]) -> None:
        self.c.commit(offsets=[self.tp(self.topic, p, o) for p, o in offsets.items()],
                      asynchronous=True)

    def close(self) -> None:
        self.c.close()


CONSUMERS = {"kafka-python": KafkaPythonConsumer, "confluent": ConfluentConsumer}


def run_consume(client: str, topic: str, group: str, n: int, partitions: int,
                timeout: float) -> dict[str, Any]:
    """Join, say READY once every partition's priming message came, then read ``n`` messages."""
    cons = CONSUMERS[client](topic, group)
    t_join = time.monotonic()
    primed: set[int] = set()  # one seq -1 message per partition, put there before we started:
    while len(primed) < partitions:  # each partition's position is known and being fetched
        records = cons.poll(100)
        primed.update(part for part, _, value in records if value.startswith(b"-1:"))
        if records:
            cons.commit({part: off + 1 for part, off, _ in records})
        if time.monotonic() - t_join > 60:
            raise TimeoutError(f"{len(primed)} of the priming messages in 60 s, "
                               f"{cons.assigned()} partitions assigned")
    join_s = time.monotonic() - t_join
    print("READY", flush=True)
    seen: set[int] = set()
    lat: list[float] = []
    dup = 0
    cpu_first = t_first = 0.0
    deadline = time.monotonic() + timeout
    while len(seen) < n and time.monotonic() < deadline:
        records = cons.poll(200)
        now = time.monotonic_ns()
        offsets: dict[int, int] = {}
        for part, off, value in records:
            offsets[part] = max(offsets.get(part, 0), off + 1)
            seq_s, ts, _ = value.split(b":", 2)
            seq = int(seq_s)
            if seq < 0:  # the producer's warm-up: it starts sending now, so does the CPU count
                if not seen and not t_first:
                    cpu_first, t_first = time.process_time(), time.monotonic()
                continue
            if not t_first:  # the warm-up came later in this batch (another partition)
                cpu_first, t_first = time.process_time(), time.monotonic()
            if seq in seen:
                dup += 1
                continue
            seen.add(seq)
            lat.append((now - int(ts)) / 1e6)
        if offsets:
            cons.commit(offsets)  # after "processing" the batch, asynchronously, as the worker does
    cpu, wall = time.process_time() - cpu_first, time.monotonic() - t_first
    cons.close()
    return {"n": n, "received": len(seen), "duplicates": dup, "join_s": join_s,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat, default=float("nan")),
            "cpu_s": cpu, "cpu_s_per_10k": cpu / max(1, len(seen)) * 10000, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=("confirmed", "submit", "produce", "consume"))
    ap.add_argument("--client", choices=sorted(PRODUCERS), required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", default="")
    ap.add_argument("-n", type=int, required=True)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    if a.role == "confirmed":
        out = run_confirmed(a.client, a.topic, a.n)
    elif a.role == "submit":
        out = run_submit(a.client, a.topic, a.n)
    elif a.role == "produce":
        out = run_produce(a.client, a.topic, a.n, a.rate)
    else:
        out = run_consume(a.client, a.topic, a.group, a.n, a.partitions, a.timeout)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
