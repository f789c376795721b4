"""What every system's task does besides returning a + b: record its completion in Redis.

One round trip per task (one Lua call), identical for every system (db ``PEERS_RECORD_DB``, default 9):
``<ns>:cnt`` key -> completions (lost / duplicated check), ``<ns>:done`` key -> completion time,
``<ns>:pc`` phase -> completions, ``<ns>:who:<phase>`` the "pid:ppid" that ran it (readiness).
``<ns>`` comes from ``PEERS_NS`` in the worker's environment (one per system and run).
The I/O phase's task (``sleep_add``) sleeps ``IO_SLEEP`` first; its workers run many tasks at once
in threads, so the client and the script are made once under a lock (two threads making one each
left one unreferenced, and its collection could close the pool the other was reading from).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis

_client: redis.Redis | None = None
_script: Any = None
_lock = threading.Lock()
IO_SLEEP = 0.01  # seconds: the I/O phase's stand-in for a network call
RECORD = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('SADD', KEYS[4], ARGV[4])
"""


def client() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:  # redis-py re-opens its connections in a forked child by itself
            url = os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379")
            _client = redis.Redis.from_url(f"{url}/{os.environ.get('PEERS_RECORD_DB', '9')}")
        return _client


def record(key: str) -> None:
    global _script
    if _script is None:
        script = client().register_script(RECORD)
        with _lock:
            _script = _script or script
    ns = os.environ["PEERS_NS"]
    phase = key.split(":", 1)[0]
    _script(keys=[ns + ":cnt", ns + ":done", ns + ":pc", f"{ns}:who:{phase}"],
            args=[key, repr(time.time()), phase, f"{os.getpid()}:{os.getppid()}"])


def add(a: int, b: int, key: str) -> int:
    """The benchmark task: a + b, after recording the completion."""
    record(key)
    return a + b


def sleep_add(a: int, b: int, key: str) -> int:
    """The I/O phase's task: a blocking ``IO_SLEEP`` wait (it releases the GIL, as a network call
    does), then what ``add`` does."""
    time.sleep(IO_SLEEP)
    return add(a, b, key)
