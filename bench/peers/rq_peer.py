"""RQ with its Redis (db 6): 2 ``rq worker`` processes on one queue; results kept by RQ itself.

RQ's default ``Worker`` forks a work horse per job (isolation, at a fork per task); the ``rq-simple``
variant runs ``SimpleWorker`` (the job in the worker process, like every other system here). RQ has
no prefetch: a worker takes one job at a time (BLMOVE); a started job sits in its started registry
until it finishes (at-least-once via the abandoned-job cleanup). Bulk enqueue: ``Queue.enqueue_many``
(one pipeline per call).

I/O phase (``--io``): RQ has no thread pool. Its docs (Workers): "Each worker will process a single
job at a time. Within a worker, there is no concurrent processing going on. If you want to perform
jobs concurrently, simply start more workers." What it has for several workers is ``rq worker-pool
-n N`` (RQ >= 1.14): here ``-n 2`` (2 worker processes, like every system; so 2 tasks in flight),
with the default ``Worker`` (``rq``) or ``SimpleWorker`` (``rq-simple``).
"""

from __future__ import annotations

import os
from typing import Any

from rq import Queue
from rq.job import Job

from bench.peers import record
from bench.peers.base import BIN, REDIS, Item, Peer

DB = 6
RUN = os.environ.get("PEERS_RUN", "x")


class RqPeer(Peer):
    name = "rq"
    db = DB
    identity = 1  # a work horse is a new pid per job; its parent is the worker
    worker_class = "rq.worker.Worker"
    config = ("2 `rq worker` processes (default Worker: fork per job), no prefetch, "
              "result_ttl 500 s (default); bulk enqueue = Queue.enqueue_many")
    io_config = ("`rq worker-pool -n 2` (default Worker: fork per job; RQ has no threads: one job at a "
                 "time per worker, 2 in flight), otherwise as rq")
    packages = ("rq", "redis")
    bulk_api = "Queue.enqueue_many (500 per call)"

    def __init__(self, run: str, io: bool = False) -> None:
        super().__init__(run, io)
        self.qname = f"pb-{run}-{self.name}"
        self.queue = Queue(self.qname, connection=self.r)

    def commands(self) -> list[list[str]]:
        if self.io:  # one pool process, its 2 workers forked (named by RQ: a uuid each)
            return [[str(BIN / "rq"), "worker-pool", "-u", f"{REDIS}/{DB}", "-n", "2",
                     "-w", self.worker_class, "--logging-level", "WARNING", self.qname]]
        return [[str(BIN / "rq"), "worker", "-u", f"{REDIS}/{DB}", "-n", f"{self.qname}-w{i}",
                 "-w", self.worker_class, "--logging_level", "WARNING", "--disable-job-desc-logging",
                 self.qname] for i in range(2)]

    def job_id(self, key: str) -> str:
        return f"pb{self.run}-{key.replace(':', '-')}"

    def submit(self, item: Item) -> Any:
        return self.queue.enqueue(self.func, *item, job_id=self.job_id(item[2])).id

    @property
    def func(self) -> Any:
        return record.sleep_add if self.io else record.add

    def submit_bulk(self, items: list[Item]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(items), 500):
            datas = [Queue.prepare_data(self.func, it, job_id=self.job_id(it[2]))
                     for it in items[i:i + 500]]
            out += [j.id for j in self.queue.enqueue_many(datas)]
        return out

    def results(self, handles: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(handles), 1000):
            for job in Job.fetch_many(handles[i:i + 1000], connection=self.r):
                out.append(job.return_value() if job is not None else None)
        return out

    def cleanup(self) -> None:
        for name in ("rq:queues", "rq:workers", f"rq:workers:{self.qname}"):
            members = [m for m in self.r.smembers(name) if self.qname.encode() in m]
            if members:
                self.r.srem(name, *members)
        self.delete_matching(f"*pb{self.run}-*", f"*{self.qname}*")


class RqSimplePeer(RqPeer):
    name = "rq-simple"
    identity = 0
    worker_class = "rq.worker.SimpleWorker"
    config = "2 `rq worker -w rq.worker.SimpleWorker` processes (no fork per job), otherwise as rq"
    io_config = ("`rq worker-pool -n 2 -w rq.worker.SimpleWorker` (no fork per job; one job at a time "
                 "per worker, 2 in flight), otherwise as rq")
