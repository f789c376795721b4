"""YADTQ itself: 2 ``yadtq-worker`` processes (``bench.common.Workers``), the same Kafka and Redis.

Defaults everywhere: 12 partitions, ``max_poll_records`` 500, offsets committed after the outcomes
are in Redis (at-least-once), producer ``acks=all``. The task is a registered ``PBADD`` (max 1
attempt, like the built-in ADD) that records its completion like every other system's task.

I/O phase (``--io``): the same 2 workers with ``--concurrency 64`` (64 runner threads each; the
default is 8), the task ``PBSLEEP`` (``record.sleep_add``: a blocking 10 ms sleep on a runner
thread, as ``IO_SLEEP`` of ``bench/tasks_io.py``). ``yadtq-aio`` runs ``PBASLEEP`` instead, an
``async def`` task awaiting ``asyncio.sleep(0.01)`` on the worker's event loop (up to
``worker.aio.ASYNC_LIMIT`` coroutines per worker, not bounded by ``--concurrency``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench.peers import procs, record
from bench.peers.base import Item, Peer
from yadtq import task


@task("PBADD", max_attempts=1)
def pbadd(a: int, b: int, key: str) -> int:
    """a + b, recording the completion (bench/peers)."""
    return record.add(a, b, key)


@task("PBSLEEP", max_attempts=1)
def pbsleep(a: int, b: int, key: str) -> int:
    """The I/O phase's task: a blocking 10 ms sleep on a runner thread, then as PBADD."""
    return record.sleep_add(a, b, key)


@task("PBASLEEP", max_attempts=1)
async def pbasleep(a: int, b: int, key: str) -> int:
    """The I/O phase's task as a coroutine: ``await asyncio.sleep`` on the worker's event loop,
    then the same record (one Redis call, blocking the loop for its round trip)."""
    await asyncio.sleep(record.IO_SLEEP)
    return record.add(a, b, key)


class YadtqPeer(Peer):
    name = "yadtq"
    config = ("2 yadtq-worker processes (bench.common.Workers), 12 partitions, defaults: polls up to "
              "500 messages, offsets committed after outcomes are in Redis (at-least-once), "
              "producer acks=all; bulk enqueue = Client.submit_many, batches of 500")
    io_config = ("2 yadtq-worker processes with --concurrency 64 (64 runner threads each; default 8), "
                 "task PBSLEEP: time.sleep(0.01) on a runner thread, otherwise as yadtq")
    io_task = "PBSLEEP"
    packages = ("yadtq", "kafka-python", "redis")
    bulk_api = "Client.submit_many (500 per call)"

    def __init__(self, run: str, io: bool = False) -> None:
        from bench.common import fresh_settings
        from yadtq import Client

        super().__init__(run, io)
        self.task = self.io_task if io else "PBADD"
        self.settings = fresh_settings(f"peers-{run}")
        self.client = Client(self.settings)
        self.workers: Any = None
        self.r = self.client.store.r

    def prepare(self) -> None:
        from yadtq.broker import ensure_topics
        ensure_topics(self.settings)

    def start(self) -> None:
        from bench.common import Workers

        saved = {k: os.environ.get(k) for k in ("PEERS_NS", "YADTQ_TASKS", "PEERS_RECORD_DB",
                                                "PEERS_RECORD_FILE")}
        os.environ.update({k: v for k, v in self.env().items() if k in saved})
        os.environ["YADTQ_TASKS"] = __name__
        try:
            extra = ("--concurrency", "64") if self.io else ()
            self.workers = Workers(self.settings, 2, extra_args=extra)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.procs = self.workers.procs
        for p in self.procs:
            procs.adopt(p)

    def before_ready(self, timeout: float) -> None:
        self.workers.wait_ready(self.client, timeout)

    def submit(self, item: Item) -> Any:
        return self.client.submit(self.task, item)

    def submit_bulk(self, items: list[Item]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(items), 500):
            out += self.client.submit_many([(self.task, it) for it in items[i:i + 500]])
        return out

    def results(self, handles: list[Any]) -> list[Any]:
        keys = self.client.store.keys
        pipe = self.r.pipeline(transaction=False)
        for tid in handles:
            pipe.hmget(keys.task(tid), "state", "result")
        return [int(res) if state == "completed" and res else None for state, res in pipe.execute()]

    def visible_latencies(self, handles: list[Any]) -> list[float]:
        """YADTQ's own record: finished_at (outcome written) - created_at (submit)."""
        keys = self.client.store.keys
        pipe = self.r.pipeline(transaction=False)
        for tid in handles:
            pipe.hmget(keys.task(tid), "created_at", "finished_at")
        return [float(f) - float(c) for c, f in pipe.execute() if c and f]

    def cleanup(self) -> None:
        from kafka.admin import KafkaAdminClient

        from yadtq.broker import client_config
        try:
            self.client.reset()
            self.delete_matching(self.settings.key_prefix + ":*")
        finally:
            self.client.close()
        admin = KafkaAdminClient(**client_config(self.settings))
        try:
            admin.delete_topics([self.settings.topic, self.settings.dead_letter_topic])
        finally:
            admin.close()


class YadtqAsyncPeer(YadtqPeer):
    name = "yadtq-async"
    config = ("as yadtq, but one-at-a-time submits use submit(wait=False) (the producer does not "
              "linger; the background submitter batches a burst, waiting 5 ms once submits arrive "
              "fast; Client.flush() after the loop, inside the timed submit window)")
    bulk_api = "Client.submit_many (500 per call, waits for acks)"
    io_config = "as yadtq in the I/O phase, but one-at-a-time submits use submit(wait=False)"

    def submit(self, item: Item) -> Any:
        return self.client.submit(self.task, item, wait=False)

    def flush(self) -> None:
        self.client.flush()


class YadtqAioPeer(YadtqPeer):
    name = "yadtq-aio"
    config = "as yadtq (its I/O variant: ``--io``)"
    io_config = ("as yadtq --io (--concurrency 64), task PBASLEEP: `async def`, await asyncio.sleep(0.01) "
                 "on the worker's event loop (up to 1,000 coroutines per worker)")
    io_task = "PBASLEEP"


class YadtqConfluentPeer(YadtqPeer):
    name = "yadtq-confluent"
    config = ("as yadtq, with YADTQ_KAFKA_CLIENT=confluent: librdkafka for the client's and the "
              "workers' producers and the workers' consumer (pip install 'yadtq[confluent]')")
    io_config = "as yadtq in the I/O phase, with the confluent client"
    packages = ("yadtq", "confluent-kafka", "redis")

    def __init__(self, run: str, io: bool = False) -> None:
        from yadtq import Client

        super().__init__(run, io)
        self.client.close()
        self.settings = self.settings.with_(kafka_client="confluent")
        self.client = Client(self.settings)
        self.r = self.client.store.r


class YadtqAioConfluentPeer(YadtqConfluentPeer):
    name = "yadtq-aio-confluent"
    config = "as yadtq-confluent (its I/O variant: ``--io``)"
    io_config = "as yadtq-aio in the I/O phase, with the confluent client"
    io_task = "PBASLEEP"
