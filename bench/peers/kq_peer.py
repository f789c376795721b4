"""kq on the same Kafka: 2 worker processes (``python -m bench.peers.kq_peer``) in one group.

kq has no result store: results go through its documented hook, the worker callback, which writes
each result to a Redis hash (db 9, ``<ns>:kqres``). kq's defaults: dill-serialised jobs, one record at
a time, offset committed synchronously after each job (at-least-once); every ``enqueue`` flushes the
producer (``acks=all`` here, as YADTQ's producer). Topic: 12 partitions, like YADTQ's.

I/O phase (``--io``): kq's ``Worker`` has no concurrency setting (it runs each record's job in
its loop, then commits), so the same 2 processes: 2 tasks in flight.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from bench.peers import record
from bench.peers.base import Item, Peer

BOOTSTRAP = os.environ.get("YADTQ_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RUN = os.environ.get("PEERS_RUN", "x")
TOPIC = f"pb-{RUN}-kq"
GROUP = f"pb-{RUN}-kq"


def store_result(status: str, message: Any, job: Any, res: Any, err: Any, stacktrace: Any) -> None:
    if status == "success" and job is not None:
        record.client().hset(os.environ["PEERS_NS"] + ":kqres", job.id, repr(res))


def worker_main() -> None:
    import logging

    from kafka import KafkaConsumer
    from kq import Worker

    logging.basicConfig(level=logging.WARNING)
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=GROUP, enable_auto_commit=False,
                             auto_offset_reset="earliest")

    def leave(signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    # kq has no signal handling: without this a stopped worker stays in the group until its session
    # times out and the next start waits for that (a deployment would close the consumer too)
    signal.signal(signal.SIGTERM, leave)
    try:
        Worker(topic=TOPIC, consumer=consumer, callback=store_result).start()
    finally:
        consumer.close()


class KqPeer(Peer):
    name = "kq"
    config = ("2 kq Worker processes (one consumer group, 12 partitions), commit after each job "
              "(kq default), results via the worker callback into Redis; producer acks=all, "
              "kq flushes after each enqueue; the worker closes its consumer on SIGTERM")
    io_config = ("2 kq Worker processes as kq (kq has no concurrency setting: one job at a time per "
                 "worker, 2 in flight)")
    packages = ("kq", "kafka-python", "dill")

    def __init__(self, run: str, io: bool = False) -> None:
        super().__init__(run, io)
        self.queue: Any = None

    def prepare(self) -> None:
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic
        from kq import Queue

        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        try:
            admin.create_topics([NewTopic(TOPIC, 12, 1)])
        finally:
            admin.close()
        self.queue = Queue(TOPIC, KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all"))

    def commands(self) -> list[list[str]]:
        return [[sys.executable, "-m", __name__] for _ in range(2)]

    def submit(self, item: Item) -> Any:
        return self.queue.enqueue(record.sleep_add if self.io else record.add, *item).id

    def results(self, handles: list[Any]) -> list[Any]:
        rec = record.client()
        out: list[Any] = []
        for i in range(0, len(handles), 2000):
            out += [int(v) if v else None for v in rec.hmget(self.ns + ":kqres", handles[i:i + 2000])]
        return out

    def cleanup(self) -> None:
        from kafka.admin import KafkaAdminClient

        if self.queue is not None:
            self.queue.producer.close()
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        try:
            admin.delete_topics([TOPIC])
        finally:
            admin.close()


if __name__ == "__main__":
    worker_main()
