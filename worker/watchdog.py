"""Time limits, enforced from the main thread: interrupt a task at its limit, again every second
while it goes on, and name it for escalation once its grace period is over too."""

from __future__ import annotations

import logging
import time

from worker.execute import TimeLimitExceeded, interrupt_thread
from worker.runner import Runner
from worker.state import Running

log = logging.getLogger("yadtq.worker")

REINTERRUPT_SECONDS = 1.0


class Watchdog:
    """Watches one runner. ``check()`` is called often by the consume loop."""

    def __init__(self, runner: Runner, grace: float) -> None:
        self.runner, self.grace = runner, grace

    def check(self) -> Running | None:
        """Interrupt a task over its limit; return it once it is over its limit plus the grace
        period (it did not stop: blocked in C code, or swallowing the interrupt)."""
        status = self.runner.status
        # under the lock: the runner clears ``running`` under it too, so a task that has already
        # returned is never interrupted
        with status.lock:
            running = status.running
            if running is None:
                return None
            now = time.monotonic()
            if now < running.deadline:
                return None
            if now >= running.deadline + self.grace:
                return running
            if now >= running.deadline + running.interrupts * REINTERRUPT_SECONDS:
                if running.interrupts == 0:
                    log.warning("task %s is over its time limit of %g s; interrupting it",
                                running.task_id, running.limit)
                running.interrupts += 1
                interrupt_thread(self.runner.thread, TimeLimitExceeded)
        return None

    def stalled(self) -> str:
        """Why the runner is making no progress, or "" (sent with every heartbeat)."""
        if self.runner.thread.ident is not None and not self.runner.alive():
            return "the runner thread ended"
        with self.runner.status.lock:
            running = self.runner.status.running
            if running is None:
                return ""
            over = time.monotonic() - running.deadline
            if over <= 0:
                return ""
            return (f"task {running.task_id} ({running.name}) is {over:.0f} s over its time limit "
                    f"of {running.limit:g} s and has not stopped")
