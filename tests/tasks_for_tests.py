"""Task functions the test suite registers on its workers (``yadtq-worker --tasks tests.tasks_for_tests``)."""

from __future__ import annotations

import os
import time

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
