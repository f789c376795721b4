"""Task functions the test suite registers on its workers (``yadtq-worker --tasks tests.tasks_for_tests``)."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import redis

from yadtq import task


@task("ECHO", max_attempts=1)
def echo(text: str) -> str:
    """Return the text unchanged (rendering tests)."""
    return text


@task("FLAKY", max_attempts=3)
def flaky(key: str, failures: int) -> str:
    """Fail the first ``failures`` attempts (counted in a file under $YADTQ_TEST_DIR), then succeed."""
    path = os.path.join(os.environ.get("YADTQ_TEST_DIR", "/tmp"), f"flaky-{key}")
    with open(path, "a+") as fh:
        fh.seek(0)
        seen = len(fh.read())
        fh.write("x")
    if seen < failures:
        raise RuntimeError(f"flaky failure {seen + 1}")
    return f"ok after {seen}"


@task("BOOM", max_attempts=1)
def boom(message: str) -> None:
    """Always raise with the given message."""
    raise RuntimeError(message)


@task("NAP", max_attempts=1)
def nap(seconds: float) -> float:
    """Sleep (like SLEEP, without its limit checks)."""
    time.sleep(seconds)
    return seconds


# ---------------------------------------------------------------- hostile tasks (self-healing tests)
@task("KILLER", max_attempts=1)
def killer(key: str, value: int) -> int:
    """``value + 1``, in microseconds (so the worker learns it is fast and runs it in chunks with
    the tasks beside it), except for ``key == "die"``: SIGKILL of its own worker process."""
    if key == "die":
        os.kill(os.getpid(), 9)
    return value + 1


@task("EXIT", max_attempts=1)
def exit_task() -> None:
    """Call ``sys.exit(3)`` (a ``BaseException`` from task code)."""
    sys.exit(3)


@task("INTERRUPT", max_attempts=1)
def interrupt_task() -> None:
    """Raise ``KeyboardInterrupt`` from task code."""
    raise KeyboardInterrupt


@task("BLOCKC", max_attempts=1, time_limit=1)
def block_in_c() -> None:
    """Block inside C code forever: the time-limit exception is never delivered."""
    threading.Event().wait()


@task("SWALLOW", max_attempts=1, time_limit=1)
def swallow() -> None:
    """Run forever, swallowing every exception (the time-limit one included)."""
    while True:
        try:
            time.sleep(0.05)
        except BaseException:  # the point of this task
            pass


@task("SURROGATE", max_attempts=1)
def surrogate() -> None:
    """Fail with an error text holding a lone surrogate (not encodable as UTF-8)."""
    raise RuntimeError("bad \ud800 text")


DEEP_LEVELS = 100_000


@task("DEEP", max_attempts=1)
def deep() -> list[Any]:
    """Return a list nested 100,000 levels deep (too deep for ``json``)."""
    value: list[Any] = []
    for _ in range(DEEP_LEVELS):
        value = [value]
    return value


class BadStrError(Exception):
    """An exception that cannot be turned into text."""

    def __str__(self) -> str:
        raise ValueError("__str__ refuses")


@task("BADSTR", max_attempts=1)
def bad_str() -> None:
    """Raise an exception whose ``__str__`` raises."""
    raise BadStrError("unprintable")


_count_redis: Any = None
_count_lock = threading.Lock()


def _counts() -> Any:
    """One client for the process, made once: two threads making one each at the same moment
    left one unreferenced, and its collection closed the socket the other was reading."""
    global _count_redis
    with _count_lock:
        if _count_redis is None:
            _count_redis = redis.Redis.from_url(os.environ["YADTQ_REDIS_URL"])
        return _count_redis


@task("COUNT", max_attempts=3)
def count(key: str) -> str:
    """Count one run of ``key``: HINCRBY on the hash named by $YADTQ_TEST_COUNTS (Redis at
    $YADTQ_REDIS_URL), after sleeping $YADTQ_TEST_COUNT_SLEEP seconds (default 0)."""
    pause = float(os.environ.get("YADTQ_TEST_COUNT_SLEEP") or 0)
    if pause:
        time.sleep(pause)
    _counts().hincrby(os.environ["YADTQ_TEST_COUNTS"], key, 1)
    return key


# ---------------------------------------------------------------- cancel tests
def _count_start(key: str) -> None:
    """Record one start of ``key`` in the hash named by $YADTQ_TEST_COUNTS (a side effect a
    cancelled task must never have)."""
    _counts().hincrby(os.environ["YADTQ_TEST_COUNTS"], key, 1)


@task("SPINCOUNT", max_attempts=3, time_limit=600)
def spin_count(key: str, seconds: float) -> str:
    """Count a start of ``key``, then sleep ``seconds`` in short steps (an interrupt lands);
    retries configured."""
    _count_start(key)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
    return key


@task("DEAF", max_attempts=3, time_limit=600)
def deaf(key: str) -> None:
    """Count a start of ``key``, then run forever, swallowing every interrupt (a cancel's too)."""
    _count_start(key)
    while True:
        try:
            time.sleep(0.05)
        except BaseException:  # the point of this task
            pass


@task("STUCK", max_attempts=3, time_limit=600)
def stuck(key: str) -> None:
    """Count a start of ``key``, then block inside C code forever (no interrupt is delivered)."""
    _count_start(key)
    threading.Event().wait()


_HOARD: list[bytes] = []


@task("HOG", max_attempts=1)
def hog(mib: int, value: int) -> int:
    """``value + 1``, keeping ``mib`` MiB for good (a task that leaks memory, as a cache that
    only grows does), after 0.2 s of work."""
    _HOARD.append(b"\x01" * (mib << 20))  # written: resident, not just reserved
    time.sleep(0.2)
    return value + 1
