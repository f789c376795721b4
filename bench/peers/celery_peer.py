"""Celery 5 with its Redis broker and Redis result backend (db 5, keys prefixed ``pb-<run>:``).

Workers: one ``celery worker -P prefork -c 2`` (Celery's default pool; concurrency = the 2 CPUs,
what ``celery worker`` picks by itself here), gossip/mingle/heartbeat and remote control off (YADTQ
has none of them). ``task_acks_late`` (ack after the result is stored: at-least-once, like YADTQ's
commit after Redis), ``worker_prefetch_multiplier`` 4 (the default; up to 8 reserved messages).
The ``celery-solo`` variant runs 2 ``-P solo`` processes (the task in the consuming process).

I/O phase (``--io``): 2 ``celery worker -P threads -c 64`` processes. Celery's docs ("Concurrency")
name eventlet/gevent for I/O-bound tasks and list ``threads`` (a ThreadPoolExecutor) among the pools;
threads run the same blocking ``time.sleep`` as every other system here without monkey-patching (and
gevent/eventlet are not in the ``peers`` extra). 64 = the concurrency every system with a knob gets.
Prefetch multiplier 4 (default): up to 256 reserved messages per process. ``celery-solo`` keeps
``-P solo`` (one task at a time per process).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from bench.peers import record
from bench.peers.base import BIN, REDIS, Item, Peer

DB = 5
RUN = os.environ.get("PEERS_RUN", "x")
PREFIX = f"pb-{RUN}:"
QUEUE = f"pb-{RUN}"

app = Celery("pbcelery", broker=f"{REDIS}/{DB}", backend=f"{REDIS}/{DB}")
app.conf.update(
    task_default_queue=QUEUE,
    broker_transport_options={"global_keyprefix": PREFIX, "visibility_timeout": 3600},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    task_serializer="json", result_serializer="json", accept_content=["json"],
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="pb.add")
def add(a: int, b: int, key: str) -> int:
    return record.add(a, b, key)


@app.task(name="pb.sleep_add")
def sleep_add(a: int, b: int, key: str) -> int:
    return record.sleep_add(a, b, key)


class CeleryPeer(Peer):
    name = "celery"
    db = DB
    config = ("1 `celery worker -P prefork -c 2` (default pool, concurrency 2), acks_late=True, "
              "prefetch_multiplier=4 (default), no gossip/mingle/heartbeat/remote control; "
              "Redis broker + Redis result backend")
    io_config = ("2 `celery worker -P threads -c 64` processes (thread pool, concurrency 64 each), "
                 "acks_late=True, prefetch_multiplier=4 (256 reserved per process), otherwise as celery")
    packages = ("celery", "kombu", "redis")

    def base_cmd(self, i: int) -> list[str]:
        return [str(BIN / "celery"), "-A", __name__, "worker", "-l", "WARNING", "-n", f"pb{i}-{RUN}@%h",
                "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat"]

    def commands(self) -> list[list[str]]:
        if self.io:
            return [[*self.base_cmd(i), "-P", "threads", "-c", "64"] for i in range(2)]
        return [[*self.base_cmd(0), "-P", "prefork", "-c", "2"]]

    def submit(self, item: Item) -> Any:
        return (sleep_add if self.io else add).apply_async(item).id

    def results(self, handles: list[Any]) -> list[Any]:
        backend = app.backend
        out: list[Any] = []
        for i in range(0, len(handles), 1000):
            keys = [backend.get_key_for_task(t) for t in handles[i:i + 1000]]
            for raw in backend.mget(keys):
                meta = backend.decode_result(raw) if raw else None
                out.append(meta["result"] if meta and meta.get("status") == "SUCCESS" else None)
        return out

    def cleanup(self) -> None:
        self.delete_matching(PREFIX + "*", f"_kombu.binding.{QUEUE}*")


class CelerySoloPeer(CeleryPeer):
    name = "celery-solo"
    config = ("2 `celery worker -P solo` processes (task runs in the consuming process), "
              "acks_late=True, prefetch_multiplier=4, otherwise as celery")
    io_config = "2 `celery worker -P solo` processes (one task at a time each), otherwise as celery"

    def commands(self) -> list[list[str]]:
        return [[*self.base_cmd(i), "-P", "solo"] for i in range(2)]
