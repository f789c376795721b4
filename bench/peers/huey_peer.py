"""Huey with its Redis storage (db 8): ``huey_consumer MODULE.huey -w 2 -k process``.

Defaults: blocking dequeue (BRPOP, no polling delay), results stored in Redis (read once), no
prefetch. Huey has no acknowledgement: a task is removed from the queue when a worker takes it
(at-most-once if the worker dies mid-task), the weakest guarantee of the systems here.
"""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey

from bench.peers import record
from bench.peers.base import BIN, REDIS, Item, Peer

DB = 8
RUN = os.environ.get("PEERS_RUN", "x")
NAME = "pb" + "".join(c for c in RUN if c.isalnum())

huey = RedisHuey(NAME, url=f"{REDIS}/{DB}", results=True)


@huey.task(name="pb_add")
def add(a: int, b: int, key: str) -> int:
    return record.add(a, b, key)


class HueyPeer(Peer):
    name = "huey"
    db = DB
    config = ("`huey_consumer MODULE.huey -w 2 -k process` (2 worker processes), RedisHuey with "
              "results, blocking dequeue; no acks (a taken task is gone: at-most-once)")
    packages = ("huey", "redis")

    def commands(self) -> list[list[str]]:
        return [[str(BIN / "huey_consumer"), f"{__name__}.huey", "-w", "2", "-k", "process", "-q"]]

    def stop(self) -> None:
        import signal

        from bench.peers import procs
        procs.stop(self.procs, signal.SIGINT)  # Huey: SIGINT = graceful, SIGTERM = immediate
        self.procs = []

    def submit(self, item: Item) -> Any:
        return add(*item)

    def results(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def cleanup(self) -> None:
        self.delete_matching(f"huey.*{NAME}*")
