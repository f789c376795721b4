"""What every system's task does besides returning a + b: record its completion in Redis.

One pipelined round trip per task, identical for every system (db ``PEERS_RECORD_DB``, default 9):
``<ns>:cnt`` key -> completions (lost / duplicated check), ``<ns>:done`` key -> completion time,
``<ns>:pc`` phase -> completions, ``<ns>:who:<phase>`` the "pid:ppid" that ran it (readiness).
``<ns>`` comes from ``PEERS_NS`` in the worker's environment (one per system and run).
"""

from __future__ import annotations

import os
import time

import redis

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:  # redis-py re-opens its connections in a forked child by itself
        url = os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379")
        _client = redis.Redis.from_url(f"{url}/{os.environ.get('PEERS_RECORD_DB', '9')}")
    return _client


def record(key: str) -> None:
    ns = os.environ["PEERS_NS"]
    phase = key.split(":", 1)[0]
    pipe = client().pipeline(transaction=False)
    pipe.hincrby(ns + ":cnt", key, 1)
    pipe.hset(ns + ":done", key, repr(time.time()))
    pipe.hincrby(ns + ":pc", phase, 1)
    pipe.sadd(f"{ns}:who:{phase}", f"{os.getpid()}:{os.getppid()}")
    pipe.execute()


def add(a: int, b: int, key: str) -> int:
    """The benchmark task: a + b, after recording the completion."""
    record(key)
    return a + b
