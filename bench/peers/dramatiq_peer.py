"""Dramatiq with its Redis broker and the Results middleware on a Redis backend (db 7).

Workers: ``dramatiq MODULE --processes 2 --threads 1`` (2 worker processes, one task at a time each).
Defaults otherwise: messages acked after the actor returns and the result is stored (at-least-once),
prefetch = 2 x threads = 2 per process, idle consumers back off up to ``dramatiq_worker_timeout``
(1 s) between polls of an empty queue. The actor has ``max_retries=0`` (no task fails anyway).
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


class DramatiqPeer(Peer):
    name = "dramatiq"
    db = DB
    config = ("`dramatiq MODULE --processes 2 --threads 1`, Redis broker, Results middleware with "
              "RedisBackend; defaults: ack after the actor (at-least-once), prefetch 2 per process, "
              "idle polling backs off up to 1 s")
    packages = ("dramatiq", "redis")

    def commands(self) -> list[list[str]]:
        return [[str(BIN / "dramatiq"), __name__, "--processes", "2", "--threads", "1"]]

    def submit(self, item: Item) -> Any:
        return add.send(*item)

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
