"""Tasks of the concurrency benchmark (``yadtq-worker --tasks bench.tasks_io``): I/O-bound work
stood in for by a 10 ms sleep, as a thread (``IO_SLEEP``) and as a coroutine (``IO_ASLEEP``)."""

from __future__ import annotations

import asyncio
import time

from yadtq import task


@task("IO_SLEEP", max_attempts=1)
def io_sleep(seconds: float) -> float:
    """Sleep ``seconds`` in this thread (a blocking call that releases the GIL)."""
    time.sleep(seconds)
    return seconds


@task("IO_ASLEEP", max_attempts=1)
async def io_asleep(seconds: float) -> float:
    """Await ``seconds`` on the worker's event loop."""
    await asyncio.sleep(seconds)
    return seconds
