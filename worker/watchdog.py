"""Time limits and cancels, enforced from the main thread: interrupt a task at its limit (or once
its cancel is seen), again every second while it goes on, and name it for escalation once its
grace period is over too."""

from __future__ import annotations

import logging
import time

from worker.execute import Interrupt, TaskCancelled, TimeLimitExceeded, interrupt_thread
from worker.runner import Runner
from worker.state import Running

log = logging.getLogger("yadtq.worker")

REINTERRUPT_SECONDS = 1.0


class Watchdog:
    """Watches one runner. ``check()`` is called often by the consume loop."""

    def __init__(self, runner: Runner, grace: float) -> None:
        self.runner, self.grace = runner, grace

    def check(self) -> Running | None:
        """Interrupt a task over its limit or cancelled; return it once the grace period is over
        too (it did not stop: blocked in C code, or swallowing the interrupt). A cancel takes over
        from a time limit: its interrupts start afresh."""
        status = self.runner.status
        # under the lock: the runner clears ``running`` under it too, so a task that has already
        # returned is never interrupted
        with status.lock:
            running = status.running
            if running is None:
                return None
            now = time.monotonic()
            since: float
            kind: type[Interrupt]
            if running.cancel_seen is not None:
                since, kind = running.cancel_seen, TaskCancelled
            elif now >= running.deadline:
                since, kind = running.deadline, TimeLimitExceeded
            else:
                return None
            if now >= since + self.grace:
                return running
            if now >= since + running.interrupts * REINTERRUPT_SECONDS:
                if running.interrupts == 0:
                    if kind is TaskCancelled:
                        log.warning("task %s was cancelled; interrupting it", running.task_id)
                    else:
                        log.warning("task %s is over its time limit of %g s; interrupting it",
                                    running.task_id, running.limit)
                running.interrupts += 1
                interrupt_thread(self.runner.thread, kind)
        return None

    def stalled(self) -> str:
        """Why the runner is making no progress, or "" (sent with every heartbeat)."""
        if self.runner.thread.ident is not None and not self.runner.alive():
            return "the runner thread ended"
        with self.runner.status.lock:
            running = self.runner.status.running
            if running is None:
                return ""
            now = time.monotonic()
            if running.cancel_seen is not None and now - running.cancel_seen > REINTERRUPT_SECONDS:
                return (f"task {running.task_id} ({running.name}) was cancelled "
                        f"{now - running.cancel_seen:.0f} s ago and has not stopped")
            over = now - running.deadline
            if over <= 0:
                return ""
            return (f"task {running.task_id} ({running.name}) is {over:.0f} s over its time limit "
                    f"of {running.limit:g} s and has not stopped")
