"""What the consume loop and the runner share: the batch in hand, the task running now, the
runner's status (read by the watchdog and the heartbeat), and the worker's policy for Redis calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from yadtq.broker_types import Record
from yadtq.errors import ServiceUnavailable, StoreError

log = logging.getLogger("yadtq.worker")
T = TypeVar("T")

STORE_TRIES = 3
"""Tries of a request Redis refuses for good before the task or message is given up."""


@dataclass
class Batch:
    """One poll's records, shared by the consume loop (main thread) and the runner."""

    records: list[Record]
    done: threading.Event = field(default_factory=threading.Event)
    processed: dict[int, int] = field(default_factory=dict)
    """partition -> next offset to commit (every record before it has its final state written)."""
    revoked: frozenset[int] = frozenset()
    """Partitions taken away during the batch: their tasks are not started any more."""
    failed: bool = False
    """The runner failed unexpectedly on this batch: the consume loop seeks back to ``processed``."""

    def first_offset(self, partition: int) -> int | None:
        return min((r.offset for r in self.records if r.partition == partition), default=None)

    def resume_at(self) -> dict[int, int]:
        """partition -> first offset not finished (where a seek back must start)."""
        out: dict[int, int] = {}
        for rec in self.records:
            if rec.partition not in out:
                out[rec.partition] = self.processed.get(rec.partition, rec.offset)
        return out


@dataclass
class Running:
    """The task the runner is executing now (read by the watchdog and the heartbeat)."""

    task_id: str
    name: str
    attempt: int
    record: Record
    batch: Batch
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
        self.running: Running | None = None
        self.progress_at = time.time()
        """Last time the runner started or finished something (or was idle)."""
        self.done = 0
        self.failed = 0
        self.fenced = 0

    def progress(self) -> None:
        self.progress_at = time.time()


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
