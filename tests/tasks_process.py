"""Process tasks for the tests (``@task(isolation="process")``): each runs in a child process of
the worker (``yadtq-worker --tasks tests.tasks_process``)."""

from __future__ import annotations

import os
import threading
import time

from yadtq import task


@task("PPID", max_attempts=1, isolation="process")
def ppid() -> int:
    """The id of the process that ran the task."""
    return os.getpid()


@task("PSPIN", max_attempts=1, isolation="process")
def pspin(seconds: float) -> int:
    """Hold a CPU (pure Python, the GIL of its own process) for ``seconds``; return the pid."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return os.getpid()


@task("PBLOCK", max_attempts=1, time_limit=1, isolation="process")
def pblock() -> None:
    """Block in C for ever (a thread of the worker could not be interrupted here)."""
    threading.Event().wait()


@task("PEXIT", max_attempts=1, isolation="process")
def pexit(code: int) -> None:
    """End the process at once, without an answer."""
    os._exit(code)


@task("PPRINT", max_attempts=1, isolation="process")
def pprint_task(text: str) -> str:
    """Print to stdout (the answers' channel must not see it), then return the text."""
    print(text, flush=True)
    print("{not json", flush=True)
    return text
