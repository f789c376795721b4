"""Dramatiq with its Redis broker and the Results middleware on a Redis backend (db 7).

Workers: ``dramatiq MODULE --processes 2 --threads 1`` (2 worker processes, one task at a time each).
Defaults otherwise: messages acked after the actor returns and the result is stored (at-least-once),
prefetch = 2 x threads = 2 per process, idle consumers back off up to ``dramatiq_worker_timeout``
(1 s) between polls of an empty queue. The actor has ``max_retries=0`` (no task fails anyway).

I/O phase (``--io``): ``--processes 2 --threads 64``. Dramatiq's documented model is a pool of
worker threads per process (``--threads``, default 8, "the number of worker threads per process");
64 = the concurrency every system with a knob gets here (not the default 8). Prefetch is 2 x threads
= 128 messages per process.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from bench.peers import record
from bench.peers.base import BIN, REDIS, Item, Peer

DB = 7
RUN = os.environ.get("PEERS_RUN", "x")
NAMESPACE = f"pb-{RUN}"

broker = RedisBroker(url=f"{REDIS}/{DB}", namespace=NAMESPACE)
backend = RedisBackend(url=f"{REDIS}/{DB}", namespace=f"{NAMESPACE}-results", use_namespace_prefix_keys=True)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="pb_add", queue_name="pb", store_results=True, max_retries=0)
def add(a: int, b: int, key: str) -> int:
    return record.add(a, b, key)


@dramatiq.actor(actor_name="pb_sleep_add", queue_name="pb", store_results=True, max_retries=0)
def sleep_add(a: int, b: int, key: str) -> int:
    return record.sleep_add(a, b, key)


class DramatiqPeer(Peer):
    name = "dramatiq"
    db = DB
    config = ("`dramatiq MODULE --processes 2 --threads 1`, Redis broker, Results middleware with "
              "RedisBackend; defaults: ack after the actor (at-least-once), prefetch 2 per process, "
              "idle polling backs off up to 1 s")
    io_config = ("`dramatiq MODULE --processes 2 --threads 64` (64 worker threads per process, not the "
                 "default 8), prefetch 128 per process, otherwise as dramatiq")
    packages = ("dramatiq", "redis")

    def commands(self) -> list[list[str]]:
        threads = "64" if self.io else "1"
        return [[str(BIN / "dramatiq"), __name__, "--processes", "2", "--threads", threads]]

    def submit(self, item: Item) -> Any:
        return (sleep_add if self.io else add).send(*item)

    def results(self, handles: list[Any]) -> list[Any]:
        out: list[Any] = []
        for msg in handles:
            try:
                out.append(msg.get_result(backend=backend))
            except dramatiq.results.ResultMissing:
                out.append(None)
        return out

    def cleanup(self) -> None:
        self.delete_matching(f"{NAMESPACE}*")
