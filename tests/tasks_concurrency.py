"""Tasks for the concurrency tests on the real stack (``--tasks tests.tasks_concurrency``).

Each records what it did in Redis under the hash named by $YADTQ_TEST_SPANS (a key under the
test's own prefix): ``<key>:runs`` (starts), ``<key>:start`` and ``<key>:end`` (``time.time()``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis

from yadtq import task

_redis: Any = None
_lock = threading.Lock()


def _r() -> Any:
    """One client for the process, made once: two threads making one each at the same moment
    left one unreferenced, and its collection closed the socket the other was reading (seen as
    SPAN failing with "Bad file descriptor" when four started together)."""
    global _redis
    with _lock:
        if _redis is None:
            _redis = redis.Redis.from_url(os.environ["YADTQ_REDIS_URL"])
        return _redis


def _hash() -> str:
    return os.environ["YADTQ_TEST_SPANS"]


def _started(key: str) -> None:
    pipe = _r().pipeline()
    pipe.hincrby(_hash(), f"{key}:runs", 1)
    pipe.hset(_hash(), f"{key}:start", repr(time.time()))
    pipe.execute()


@task("SPAN", max_attempts=1, time_limit=120)
def span(key: str, seconds: float) -> str:
    """Record a start, sleep ``seconds``, record the end."""
    _started(key)
    time.sleep(seconds)
    _r().hset(_hash(), f"{key}:end", repr(time.time()))
    return key


@task("GATED", max_attempts=3, time_limit=120)
def gated(key: str) -> str:
    """Record a start, then wait (20 ms steps) until the field ``open:<key>`` exists."""
    _started(key)
    while not _r().hexists(_hash(), f"open:{key}"):
        time.sleep(0.02)
    _r().hset(_hash(), f"{key}:end", repr(time.time()))
    return key


@task("ASPAN", max_attempts=1, time_limit=120)
async def aspan(key: str, seconds: float) -> str:
    """``SPAN`` as a coroutine: awaits ``seconds`` on the worker's event loop."""
    import asyncio

    _started(key)
    await asyncio.sleep(seconds)
    _r().hset(_hash(), f"{key}:end", repr(time.time()))
    return key
