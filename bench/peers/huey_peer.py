"""Huey with its Redis storage (db 8): ``huey_consumer MODULE.huey -w 2 -k process``.

Defaults: blocking dequeue (BRPOP, no polling delay), results stored in Redis (read once), no
prefetch. Huey has no acknowledgement: a task is removed from the queue when a worker takes it
(at-most-once if the worker dies mid-task), the weakest guarantee of the systems here.

I/O phase (``--io``): 2 ``huey_consumer MODULE.huey -w 64 -k thread`` processes (the second with
``-n``: one enqueuer of periodic tasks; there are none). ``huey_consumer --help``: "Use process for
CPU-intensive workloads, and greenlet for IO-heavy workloads. When in doubt, thread is the safest
choice"; threads run the same blocking ``time.sleep`` as the other systems without monkey-patching
(gevent is not in the ``peers`` extra). 64 = the concurrency every system with a knob gets here.
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


@huey.task(name="pb_sleep_add")
def sleep_add(a: int, b: int, key: str) -> int:
    return record.sleep_add(a, b, key)


class HueyPeer(Peer):
    name = "huey"
    db = DB
    config = ("`huey_consumer MODULE.huey -w 2 -k process` (2 worker processes), RedisHuey with "
              "results, blocking dequeue; no acks (a taken task is gone: at-most-once)")
    io_config = ("2 `huey_consumer MODULE.huey -w 64 -k thread` processes (64 worker threads each), "
                 "otherwise as huey")
    packages = ("huey", "redis")

    def commands(self) -> list[list[str]]:
        cmd = [str(BIN / "huey_consumer"), f"{__name__}.huey"]
        if self.io:
            return [[*cmd, "-w", "64", "-k", "thread", "-q", *(["-n"] if i else [])] for i in range(2)]
        return [[*cmd, "-w", "2", "-k", "process", "-q"]]

    def stop(self) -> None:
        import signal

        from bench.peers import procs
        procs.stop(self.procs, signal.SIGINT)  # Huey: SIGINT = graceful, SIGTERM = immediate
        self.procs = []

    def submit(self, item: Item) -> Any:
        return (sleep_add if self.io else add)(*item)

    def results(self, handles: list[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def cleanup(self) -> None:
        self.delete_matching(f"huey.*{NAME}*")
