"""``async def`` tasks: one event loop on one thread of the worker, any number of coroutines on it
(up to ``ASYNC_LIMIT``), none holding a runner thread while it awaits.

A runner thread marks the task in-progress (consecutive async tasks of a partition share that
round trip), hands the coroutines to the loop and goes on at once; when a coroutine ends, its
outcome goes to the outcome writer's thread (``worker/outcomes.py``): the loop never waits for
Redis. Time limits and cancels come from the same watchdog as for
sync tasks, through the task's ``stop``: here it cancels the asyncio task (``CancelledError``
inside it, at its next ``await``). A coroutine that ignores the cancellation (or blocks the loop)
is escalated like a sync task that ignores its interrupt: failed, and the process replaced. A
blocking call inside an ``async def`` task stalls every coroutine on the loop: run it with
``asyncio.to_thread``, or make the task a plain ``def``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.execute import Interrupt, Result, TimeLimitExceeded, check_result, error_result
from yadtq.registry import TaskSpec

ASYNC_LIMIT = 1000
"""Most ``async def`` tasks in flight at once in one worker (besides the sync ones)."""


class AsyncLoop:
    """The worker's event loop thread, started at the first ``async def`` task."""

    def __init__(self, limit: int = ASYNC_LIMIT) -> None:
        self.slots = threading.BoundedSemaphore(limit)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._inbox: list[_Job] = []
        """Coroutines handed over and not created yet (under ``_lock``): a burst of launches wakes
        the loop once (``call_soon_threadsafe`` writes to its wake-up pipe at every call)."""

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self.thread = threading.Thread(target=loop.run_forever, name="yadtq-async",
                                               daemon=True)
                self.thread.start()
                self._loop = loop
            return self._loop

    def launch(self, spec: TaskSpec, args: tuple[Any, ...], limit: float,
               done: Callable[[Result], None]) -> Callable[[type[Interrupt]], None]:
        """Run ``spec``'s coroutine on the loop (waiting while ``ASYNC_LIMIT`` run); ``done`` is
        called on the loop's thread with its result. Returns its ``stop(kind)``."""
        self.slots.acquire()
        job = _Job(self, self._started(), spec, args, limit, done)
        with self._lock:
            self._inbox.append(job)
            wake = len(self._inbox) == 1
        if wake:
            job.loop.call_soon_threadsafe(self._take_inbox)
        return job.stop

    def _take_inbox(self) -> None:
        with self._lock:
            todo, self._inbox = self._inbox, []
        for job in todo:
            job.task = job.loop.create_task(job.run())
            job.task.add_done_callback(job.finished)

    def after_turn(self, fn: Callable[[], None]) -> None:
        """On the loop's thread: run ``fn`` after the callbacks ready now (the coroutines that
        ended in this turn of the loop), so their outcomes are written together."""
        assert self._loop is not None
        self._loop.call_soon(fn)


class _Job:
    """One ``async def`` task on the loop (a class, not four closures per task)."""

    __slots__ = ("args", "done", "limit", "loop", "owner", "spec", "task", "why")

    def __init__(self, owner: AsyncLoop, loop: asyncio.AbstractEventLoop, spec: TaskSpec,
                 args: tuple[Any, ...], limit: float, done: Callable[[Result], None]) -> None:
        self.owner, self.loop, self.spec, self.args = owner, loop, spec, args
        self.limit, self.done = limit, done
        self.why: list[type[Interrupt]] = []
        self.task: asyncio.Task[Result] | None = None

    async def run(self) -> Result:
        t0 = time.perf_counter()
        try:
            assert self.spec.fn is not None
            value = await self.spec.fn(*self.args)
        except asyncio.CancelledError:
            if not self.why:
                raise  # the loop is closing: not ours to report
            if self.why[-1] is TimeLimitExceeded:
                return Result(False, error=f"time limit of {self.limit:g} s exceeded",
                              retryable=True, seconds=self.limit)
            return Result(False, error="cancelled while running", cancelled=True,
                          seconds=time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - any error of user code is a failed attempt
            return error_result(exc, time.perf_counter() - t0)
        return check_result(value, time.perf_counter() - t0)

    def finished(self, task: asyncio.Task[Result]) -> None:
        self.owner.slots.release()
        if not task.cancelled() and task.exception() is None:
            self.done(task.result())

    def stop(self, kind: type[Interrupt]) -> None:
        self.why.append(kind)
        self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
