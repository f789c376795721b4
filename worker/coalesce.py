"""Group commit for the runner's Redis writes: calls that overlap in time share one round trip.

With many tasks in flight, runner threads mark tasks in-progress and write outcomes at about the
same moments. ``Coalescer.call`` writes at once, in the caller's thread, when no other write is
under way (no hand-off: a lone task pays no latency for this). Otherwise it queues the caller's
items and waits; one writer thread of its own sends everything queued (up to ``most`` items, whole
callers only) in one call of ``fn`` as soon as the write under way ends, and hands each caller its
part of the answer. The queued writes go through a thread of their own, not one of the callers,
because the watchdog raises its interrupts in runner threads: a caller interrupted while it waits
leaves its items to be written all the same, and no interrupt can stop the writes of others.

Errors stay with their owner: if a joint call raises, each caller's items are sent again on their
own, so a task whose record Redis refuses (or a transient outage) is reported to its caller only.

``post`` is ``call`` without the wait: the answer goes to a function of the caller's (at once, in
the caller's thread, when the write went there; else on the writer thread after its write). A
runner thread posts its outcomes and takes its next task while they are written: with 10 ms I/O
tasks the wait for the write had been as long as the task itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("yadtq.worker.coalesce")

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")  # its answer


Then = Callable[[list[R] | None, BaseException | None], None]
"""What ``post`` calls with the answers, or with the error of the caller's items."""


class _Slot(Generic[I, R]):
    __slots__ = ("done", "error", "items", "result", "then")

    def __init__(self, items: Sequence[I], then: Then[R] | None = None) -> None:
        self.items = items
        self.then = then
        self.done = threading.Lock()  # held until the answer is in: cheaper than an Event
        self.done.acquire()
        self.result: list[R] = []
        self.error: BaseException | None = None


class Coalescer(Generic[I, R]):
    """Joins overlapping ``call``s of ``fn`` (one answer per item, in order) into one."""

    def __init__(self, fn: Callable[[Sequence[I]], list[R]], name: str, most: int = 256) -> None:
        self.fn = fn
        self.name = name
        self.most = most
        self._cv = threading.Condition()
        self._turn = threading.Lock()
        """Held by whoever writes: a caller alone, or the writer thread with the queued calls."""
        self._queue: list[_Slot[I, R]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self.calls = 0
        """Calls of ``fn`` made (for tests and the benchmark)."""

    def call(self, items: Sequence[I]) -> list[R]:
        if not items:
            return []
        if self._closed:
            raise RuntimeError(f"{self.name}: the worker is stopping")
        if self._turn.acquire(blocking=False):  # no write under way: this one goes now, here
            try:
                self.calls += 1
                return self.fn(items)
            finally:
                self._turn.release()
                if self._queue:  # (read without the lock: an append notifies on its own)
                    with self._cv:
                        self._cv.notify()
        slot: _Slot[I, R] = _Slot(items)
        self._enqueue(slot)
        slot.done.acquire()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def post(self, items: Sequence[I], then: Then[R], here: bool = True) -> None:
        """Write ``items`` without waiting: ``then(answers, None)`` once written, or ``then(None,
        error)``; here and now when no write is under way (and ``here``), else on the writer
        thread. ``then`` must not ``call`` this coalescer (on the writer thread that would wait
        for itself)."""
        if self._closed:
            raise RuntimeError(f"{self.name}: the worker is stopping")
        if not items:
            then([], None)
            return
        if not here or not self._turn.acquire(blocking=False):  # join the next write
            self._enqueue(_Slot(items, then))
            return
        result: list[R] | None = None
        error: BaseException | None = None
        try:
            self.calls += 1
            result = self.fn(items)
        except Exception as exc:  # noqa: BLE001 - the caller's to handle, in ``then``
            error = exc
        finally:
            self._turn.release()
            if self._queue:
                with self._cv:
                    self._cv.notify()
        then(result, error)

    def _enqueue(self, slot: _Slot[I, R]) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError(f"{self.name}: the worker is stopping")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"yadtq-{self.name}",
                                                daemon=True)
                self._thread.start()
            self._queue.append(slot)
            self._cv.notify()

    def close(self) -> None:
        """End the writer once the queue is empty (calls after this raise)."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
            with self._turn:  # after the write under way: what queued meanwhile goes together
                with self._cv:
                    batch: list[_Slot[I, R]] = []
                    total = 0
                    for s in self._queue:
                        if batch and total + len(s.items) > self.most:
                            break
                        batch.append(s)
                        total += len(s.items)
                    del self._queue[:len(batch)]
                try:
                    self._send(batch)
                except BaseException as exc:  # the writer must outlive any failure
                    log.exception("%s: unexpected failure of a write", self.name)
                    for s in batch:
                        if s.error is None and len(s.result) != len(s.items):
                            s.error = exc
                finally:
                    for s in batch:
                        s.done.release()
            for s in batch:  # after the turn: another write can go while these run
                if s.then is not None:
                    try:
                        s.then(s.result if s.error is None else None, s.error)
                    except Exception:  # the writer must outlive any failure
                        log.exception("%s: handling a written answer failed", self.name)

    def _send(self, batch: list[_Slot[I, R]]) -> None:
        if len(batch) > 1:
            answers: list[R] | None
            try:
                self.calls += 1
                answers = self.fn([item for s in batch for item in s.items])
            except Exception:  # noqa: BLE001 - sent again per caller below, errors to their owner
                answers = None
            if answers is not None:
                at = 0
                for s in batch:
                    s.result = answers[at:at + len(s.items)]
                    at += len(s.items)
                return
        for s in batch:
            try:
                self.calls += 1
                s.result = self.fn(s.items)
            except Exception as exc:  # noqa: BLE001 - handed to the caller that owns the items
                s.error = exc
