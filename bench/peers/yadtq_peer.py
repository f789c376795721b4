"""YADTQ itself: 2 ``yadtq-worker`` processes (``bench.common.Workers``), the same Kafka and Redis.

Defaults everywhere: 12 partitions, ``max_poll_records`` 500, offsets committed after the outcomes
are in Redis (at-least-once), producer ``acks=all``. The task is a registered ``PBADD`` (max 1
attempt, like the built-in ADD) that records its completion like every other system's task.
"""

from __future__ import annotations

import os
from typing import Any

from bench.peers import procs, record
from bench.peers.base import Item, Peer
from yadtq import task


@task("PBADD", max_attempts=1)
def pbadd(a: int, b: int, key: str) -> int:
    """a + b, recording the completion (bench/peers)."""
    return record.add(a, b, key)


class YadtqPeer(Peer):
    name = "yadtq"
    config = ("2 yadtq-worker processes (bench.common.Workers), 12 partitions, defaults: polls up to "
              "500 messages, offsets committed after outcomes are in Redis (at-least-once), "
              "producer acks=all; bulk enqueue = Client.submit_many, batches of 500")
    packages = ("yadtq", "kafka-python", "redis")
    bulk_api = "Client.submit_many (500 per call)"

    def __init__(self, run: str) -> None:
        from bench.common import fresh_settings
        from yadtq import Client

        super().__init__(run)
        self.settings = fresh_settings(f"peers-{run}")
        self.client = Client(self.settings)
        self.workers: Any = None
        self.r = self.client.store.r

    def prepare(self) -> None:
        from yadtq.broker import ensure_topics
        ensure_topics(self.settings)

    def start(self) -> None:
        from bench.common import Workers

        saved = {k: os.environ.get(k) for k in ("PEERS_NS", "YADTQ_TASKS", "PEERS_RECORD_DB")}
        os.environ.update({k: v for k, v in self.env().items() if k in saved})
        os.environ["YADTQ_TASKS"] = __name__
        try:
            self.workers = Workers(self.settings, 2)
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
        return self.client.submit("PBADD", item)

    def submit_bulk(self, items: list[Item]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(items), 500):
            out += self.client.submit_many([("PBADD", it) for it in items[i:i + 500]])
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

    def submit(self, item: Item) -> Any:
        return self.client.submit("PBADD", item, wait=False)

    def flush(self) -> None:
        self.client.flush()
