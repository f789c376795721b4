"""What every system's task does besides returning a + b: record its completion.

In Redis (the default): one round trip per task (one Lua call), identical for every system (db
``PEERS_RECORD_DB``, default 9):
``<ns>:cnt`` key -> completions (lost / duplicated check), ``<ns>:done`` key -> completion time,
``<ns>:pc`` phase -> completions, ``<ns>:who:<phase>`` the "pid:ppid" that ran it (readiness).
``<ns>`` comes from ``PEERS_NS`` in the worker's environment (one per system and run).
The I/O phase's task (``sleep_add``) sleeps ``IO_SLEEP`` first; its workers run many tasks at once
in threads, so the client and the script are made once under a lock (two threads making one each
left one unreferenced, and its collection could close the pool the other was reading from).

In a file (``PEERS_RECORD_FILE`` set in the worker's environment; the I/O phase's default, see
``bench_peers.py --io-record``): one ``write`` of one line per task (``key, time, phase,
pid:ppid``) to a file every worker process of the system appends to (``O_APPEND``: each line lands
whole), read by ``bench.peers.base.FileRecorder``. It costs the task ~10 µs of CPU instead of a
Redis round trip's ~120 µs in the task and ~70 µs in Redis, so the harness takes less of the
machine than the systems it measures; it is identical for every system too.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any

import redis

_client: redis.Redis | None = None
_script: Any = None
_lock = threading.Lock()
_fd: int | None = None
_fd_pid = 0  # the process that opened ``_fd`` (a forked child opens its own)
IO_SLEEP = 0.01  # seconds: the I/O phase's stand-in for a network call
RECORD = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('SADD', KEYS[4], ARGV[4])
"""


def file_for(ns: str) -> str:
    """The record file of the namespace ``ns`` (``PEERS_RECORD_FILE``), in the temporary folder."""
    return os.path.join(tempfile.gettempdir(), ns.replace(":", "-").replace("/", "-") + ".records")


def client() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:  # redis-py re-opens its connections in a forked child by itself
            url = os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379")
            _client = redis.Redis.from_url(f"{url}/{os.environ.get('PEERS_RECORD_DB', '9')}")
        return _client


def _append(path: str, line: str) -> None:
    global _fd, _fd_pid
    if _fd is None or _fd_pid != os.getpid():
        with _lock:
            if _fd is None or _fd_pid != os.getpid():
                _fd, _fd_pid = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), os.getpid()
    os.write(_fd, line.encode())


def record(key: str) -> None:
    global _script
    path = os.environ.get("PEERS_RECORD_FILE")
    if path:
        phase = key.split(":", 1)[0]
        _append(path, f"{key}\t{time.time()!r}\t{phase}\t{os.getpid()}:{os.getppid()}\n")
        return
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
