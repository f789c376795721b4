"""Time limits and cancels, enforced from the main thread: interrupt a task at its limit (or once
its cancel is seen), again every second while it goes on, and name it for escalation once its
grace period is over too."""

from __future__ import annotations

import logging
import time

from worker.execute import Interrupt, TaskCancelled, TimeLimitExceeded
from worker.inflight import InFlight
from worker.runner import Runner
from worker.state import Running
from yadtq.errors import YadtqError
from yadtq.models import Outcome, TaskState
from yadtq.store import RedisStore

log = logging.getLogger("yadtq.worker")

REINTERRUPT_SECONDS = 1.0
SCAN_SECONDS = 0.05
"""``due()`` is true this long after the last scan: the consume loop turns up to 100 times a
second while the runner is full, and a scan reads every running task (up to ``ASYNC_LIMIT`` async
ones and ``--concurrency`` sync ones): at 1,000 in flight that was 6% of a worker's CPU in an I/O
drain (py-spy). Limits, grace periods and re-interrupts are seconds apart; 50 ms is not seen."""


class Watchdog:
    """Watches the tasks of one runner. ``check()`` is called often by the consume loop."""

    def __init__(self, runner: Runner, grace: float) -> None:
        self.runner, self.grace = runner, grace
        self._scanned = float("-inf")

    def due(self) -> bool:
        """True when ``SCAN_SECONDS`` have passed since the last ``check()``."""
        return time.monotonic() - self._scanned >= SCAN_SECONDS

    def check(self) -> Running | None:
        """Interrupt each task over its limit or cancelled; return one whose grace period is over
        too (it did not stop: blocked in C code, or swallowing the interrupt). A cancel takes over
        from a time limit: its interrupts start afresh."""
        # under the lock: a runner thread removes its task under it too, so a task that has
        # already returned is never interrupted
        self._scanned = now = time.monotonic()
        with self.runner.status.lock:
            for running in list(self.runner.status.running.values()):
                if self._check(running, now):
                    return running
        return None

    def _check(self, running: Running, now: float) -> bool:
        since: float
        kind: type[Interrupt]
        if running.cancel_seen is not None:
            since, kind = running.cancel_seen, TaskCancelled
        elif now >= running.deadline:
            since, kind = running.deadline, TimeLimitExceeded
        else:
            return False
        if now >= since + self.grace:
            return True
        if now >= since + running.interrupts * REINTERRUPT_SECONDS:
            if running.interrupts == 0:
                if kind is TaskCancelled:
                    log.warning("task %s was cancelled; interrupting it", running.task_id)
                else:
                    log.warning("task %s is over its time limit of %g s; interrupting it",
                                running.task_id, running.limit)
            running.interrupts += 1
            running.stop(kind)
        return False

    def stalled(self) -> str:
        """Why the runner is making no progress, or "" (sent with every heartbeat)."""
        if any(t.ident is not None for t in self.runner.threads) and not self.runner.alive():
            return "a runner thread ended"
        with self.runner.status.lock:
            tasks = list(self.runner.status.running.values())
        now = time.monotonic()
        for running in tasks:
            if running.cancel_seen is not None and now - running.cancel_seen > REINTERRUPT_SECONDS:
                return (f"task {running.task_id} ({running.name}) was cancelled "
                        f"{now - running.cancel_seen:.0f} s ago and has not stopped")
            over = now - running.deadline
            if over > 0:
                return (f"task {running.task_id} ({running.name}) is {over:.0f} s over its time "
                        f"limit of {running.limit:g} s and has not stopped")
        return ""

    def escalate(self, stuck: Running, store: RedisStore, worker_id: str, inflight: InFlight) -> None:
        """Write ``stuck`` failed (cancelled) and finished, stop the runner taking work, and give
        the other tasks in hand the grace period to finish (so the commit can pass them; those
        still running then are redelivered to the next owner). The caller restarts the process."""
        grace = self.grace
        why = (f"time limit of {stuck.limit:g} s exceeded" if stuck.cancel_seen is None
               else "cancelled while running")
        log.error("task %s (%s) did not stop %g s after its %s; ending it and restarting the "
                  "worker", stuck.task_id, stuck.name, grace,
                  "cancel" if stuck.cancel_seen is not None else f"time limit of {stuck.limit:g} s")
        outcome = Outcome(stuck.task_id, stuck.attempt,
                          TaskState.FAILED if stuck.cancel_seen is None else TaskState.CANCELLED,
                          error=f"{why}, and the task did not stop within {grace:g} s more (blocked "
                                "in C code or ignoring the interrupt): its worker process was "
                                "restarted")
        try:
            written = store.finish(worker_id, [outcome])
        except YadtqError as exc:
            log.error("could not write the stuck task's outcome (it will be redelivered): %s", exc)
            written = [False]
        status = self.runner.status
        if written[0]:
            with status.lock:
                status.failed += stuck.cancel_seen is None
            inflight.finish(stuck.track, stuck.record.offset)
        self.runner.stop()
        self.runner.work.clear()
        until = time.monotonic() + grace
        while time.monotonic() < until:
            with status.lock:
                if status.active <= 1:  # the stuck task's thread only
                    break
            self.check()
            time.sleep(0.05)
