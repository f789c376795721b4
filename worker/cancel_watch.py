"""The cancel watch: a thread that finds, once a second, whether a running task was cancelled, and
marks it for the watchdog (which interrupts it as it does at a time limit).

Why a polled flag and not a pub/sub push: the flag (``cancel_requested`` in the task's hash, set by
``Client.cancel``) is durable, so a worker that was disconnected when the cancel came, or restarted,
still finds it; a push is lost by a subscriber that is not connected at that instant and would need
this poll as a fallback anyway.

What is read: ``CANCEL`` bumps a counter (``Keys.cancel_requests``) whenever it flags a running
task. A busy worker reads that counter once a second (one ``GET``); only when it moved does it read
the flags of its running tasks (one pipelined round trip, an ``HEXISTS`` each), and once more a
second later, for a task whose START had returned but which was not yet in the worker's list of
running tasks at the first read. Every ``FULL_READ_SECONDS`` it reads the flags anyway (a counter
lost with a Redis restart). With 1,000 ``async def`` tasks in flight per worker the flag of each had
been read every second: 1,000 commands a second per worker, ~5% of a busy worker's time. Nothing is
read while the worker is idle.
"""

from __future__ import annotations

import logging
import threading
import time

from worker.state import RunnerStatus
from yadtq.cancel import Cancels
from yadtq.errors import ServiceUnavailable, StoreError
from yadtq.store import RedisStore

log = logging.getLogger("yadtq.worker")

CANCEL_POLL_SECONDS = 1.0
"""How often the cancel-request counter is read (while tasks run)."""
FULL_READ_SECONDS = 30.0
"""How often the running tasks' flags are read even though the counter did not move."""


class CancelWatch:
    """Reads the running task's cancel flag every ``interval`` seconds on its own thread."""

    def __init__(self, store: RedisStore, status: RunnerStatus, stopping: threading.Event,
                 interval: float = CANCEL_POLL_SECONDS) -> None:
        self.cancels, self.status, self.stopping = Cancels(store), status, stopping
        self.interval = interval
        self._counter: int | None = None
        """The counter's value at the last flag read that worked (None: none yet, or unreadable)."""
        self._again = False
        """Read the flags at the next look too (the counter moved at this one)."""
        self._read_at = float("-inf")
        self.thread = threading.Thread(target=self._loop, name="yadtq-cancel-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _loop(self) -> None:
        while not self.stopping.wait(self.interval):
            self.check()

    def check(self) -> bool:
        """One look at each running task: True if one was cancelled (and is now marked for the
        watchdog). A Redis that cannot answer now is asked again next time."""
        with self.status.lock:
            tasks = [r for r in self.status.running.values() if r.cancel_seen is None]
        if not tasks:
            return False
        try:
            counter = self.cancels.counter()
            now = time.monotonic()
            moved = counter is None or counter != self._counter  # unreadable: as if it moved
            if not (moved or self._again or now - self._read_at >= FULL_READ_SECONDS):
                return False
            requested = self.cancels.requested([r.task_id for r in tasks])
        except (ServiceUnavailable, StoreError) as exc:
            log.debug("could not read the cancel flags of %d running tasks: %s", len(tasks), exc)
            return False
        self._counter, self._again, self._read_at = counter, moved, now
        found = False
        for running in tasks:
            if running.task_id not in requested:
                continue
            with self.status.lock:
                if self.status.running.get(running.key) is not running:
                    continue  # it ended meanwhile: FINISH wrote it cancelled
                running.cancel_seen = time.monotonic()
                running.interrupts = 0
            log.info("task %s: cancel requested", running.task_id)
            found = True
        return found
