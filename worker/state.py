"""What the consume loop and the runner share: the messages waiting for a runner thread, the tasks
running now, the runner's status (read by the watchdog and the heartbeat), and the worker's policy
for Redis calls."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from worker.priority import LEVELS, TURN_EVERY, level_of
from yadtq.broker_types import Record
from yadtq.errors import ServiceUnavailable, StoreError

if TYPE_CHECKING:
    from worker.execute import Interrupt
    from worker.inflight import Track
    from yadtq.registry import TaskSpec
    from yadtq.wire import Envelope

    Job = tuple[Envelope, TaskSpec]

log = logging.getLogger("yadtq.worker")
T = TypeVar("T")

STORE_TRIES = 3
"""Tries of a request Redis refuses for good before the task or message is given up."""


Item = tuple["Track", Record, "Job | None | bool"]
"""A message in the runner's hands: its partition's track, the record, and its task once validated
(``None``: dead-lettered; ``False``: not validated yet)."""


class WorkQueue:
    """Messages waiting for a free runner thread, in runs of consecutive messages ("units"), one
    line per priority level: a thread takes from the highest level first (``worker.priority``),
    so a high task polled while normal ones wait in the worker starts before them, but a lower
    line waiting is served once per ``TURN_EVERY`` units taken above it (never starved)."""

    def __init__(self) -> None:
        self._lines: list[deque[list[Item]]] = [deque() for _ in range(LEVELS)]  # high, normal, low
        self._passed = [0] * LEVELS  # units taken above each line while it waited
        self._lock = threading.Lock()  # guards the lines
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        """One token per unit put: a thread waits for a token (a C queue: far cheaper than a
        Condition's wait and notify with 64 threads), then takes the highest unit there is. A
        token whose unit ``clear`` dropped finds none and waits again."""
        self._closed = False
        self.queued = 0
        """Messages waiting (read without the lock: an estimate for flow control)."""

    def put(self, unit: list[Item], front: bool = False) -> None:
        """Queue messages of one level (a unit ``split`` made, or part of one); ``front``: before
        what waits at the same level."""
        if not unit:
            return
        line = level_of(unit[0][1].partition)
        with self._lock:
            if front:
                self._lines[line].appendleft(unit)
            else:
                self._lines[line].append(unit)
            self.queued += len(unit)
        self._tokens.put(None)

    def split(self, unit: list[Item]) -> None:
        """Queue delivered messages, one unit per level in the order given (a poll's records:
        split once here, so a unit's remainder put back after each chunk is not split again)."""
        parts: dict[int, list[Item]] = {}
        for item in unit:
            parts.setdefault(level_of(item[1].partition), []).append(item)
        for part in parts.values():
            self.put(part)

    def get(self) -> list[Item] | None:
        """The next unit, highest level first (waits for one); None once closed."""
        while True:
            self._tokens.get()
            try:
                unit = self._take()
            except BaseException:  # a late interrupt between the token and the unit: give it back
                self._tokens.put(None)
                raise
            if unit is not None or self._closed:
                return unit

    def _take(self) -> list[Item] | None:
        """The highest unit there is, None if none (its unit was cleared) or closed."""
        with self._lock:
            if self._closed:
                self._tokens.put(None)  # wake the next thread: it ends too
                return None
            if not any(self._lines):
                return None
            first = next(i for i, line in enumerate(self._lines) if line)
            waiting = [i for i in range(first + 1, LEVELS) if self._lines[i]]
            for i in waiting:
                self._passed[i] += 1
            due = [i for i in waiting if self._passed[i] > TURN_EVERY]
            taken = due[0] if due else first
            self._passed[taken] = 0
            unit = self._lines[taken].popleft()
            self.queued -= len(unit)
            return unit

    def top_level(self) -> int | None:
        """The highest priority level with messages waiting (0 high), None if none wait."""
        with self._lock:
            return next((i for i, line in enumerate(self._lines) if line), None)

    def clear(self) -> int:
        """Drop what waits (not started: redelivered after this worker leaves); how many."""
        with self._lock:
            dropped, self.queued = self.queued, 0
            self._lines = [deque() for _ in range(LEVELS)]
            return dropped

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._tokens.put(None)


@dataclass
class Running:
    """A task a runner thread is executing now (read by the watchdog and the heartbeat)."""

    task_id: str
    name: str
    attempt: int
    record: Record
    track: Track
    key: object
    """Its key in ``RunnerStatus.running`` (a sync task's thread ident)."""
    stop: Callable[[type[Interrupt]], object]
    """Stops it (the watchdog calls it with the interrupt's kind): raises the interrupt in a sync
    task's thread, cancels an ``async def`` task's coroutine."""
    deadline: float
    """``time.monotonic()`` at which its time limit is over."""
    limit: float
    interrupts: int = 0
    """Interrupts sent so far (for the time limit, or for the cancel once one is seen)."""
    cancel_seen: float | None = None
    """``time.monotonic()`` at which the worker learned that a cancel was requested (None: none)."""


class RunnerStatus:
    """What the runner is doing, for the other threads (always read and written under ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[object, Running] = {}
        """The tasks running now, by key (a sync task's thread ident)."""
        self.active = 0
        """Runner threads busy with messages (starting, running or writing them)."""
        self.writing = 0
        """Outcome writes posted and not yet done (their messages are not finished before)."""
        self.progress_at = time.time()
        """Last time the runner started or finished something (or was idle)."""
        self.done = 0
        self.failed = 0
        self.fenced = 0

    def progress(self) -> None:
        self.progress_at = time.time()

    def oldest(self) -> Running | None:
        """The task running the longest (the heartbeat shows it)."""
        return min(self.running.values(), key=lambda r: r.deadline - r.limit, default=None)


class RedisCalls:
    """Calls to the store with the worker's error policy: a transient error (Redis unreachable,
    loading, busy) is waited out until the worker stops (then ``None``); a permanent one is tried
    ``STORE_TRIES`` times, then raised as ``StoreError`` for the caller to confine."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def call(self, fn: Callable[[], T], what: str) -> T | None:
        delay = 0.1
        warned = False
        refused = 0
        while True:
            try:
                result = fn()
                if warned:
                    log.warning("Redis is back (%s)", what)
                return result
            except ServiceUnavailable as exc:
                if not warned:
                    log.warning("Redis unavailable (%s), retrying: %s", what, exc)
                    warned = True
            except StoreError as exc:
                refused += 1
                if refused >= STORE_TRIES:
                    raise
                log.warning("Redis refused %s (try %d of %d): %s", what, refused, STORE_TRIES, exc)
            if self._stopping.wait(delay):
                log.warning("stopping while Redis is down: %s not written", what)
                return None
            delay = min(2.0, delay * 2)
