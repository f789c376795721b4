"""The periodic scheduler: every worker runs this loop; the one holding the lock fires the due
periods of the schedules declared in its task modules (``yadtq.schedules``).

Exactly one run per period does not depend on the lock: each period's task has an id derived from
(schedule, period start), and the ``FIRE`` script creates it only if the schedule's marker (the
latest period fired, kept in Redis for good) is behind that period, moving the marker in the same
call. A second scheduler racing for the same period creates nothing and sends nothing. The lock (a
token-checked Redis lock with a short TTL, as the reconciler's) only saves the other workers the
work; when its holder dies, another worker takes over within ``LOCK_TTL`` seconds.

Time is Redis's clock (``TIME``), never the worker's. After downtime (no worker, or the lock
changing hands) only the latest missed period of each schedule runs, once. A new schedule starts
with the period after the one in which it is first seen. A crash between creating a period's task
and sending it leaves it ``queued`` with no message: the reconciler (``worker.repair``) re-sends
it. A failed send is left to the reconciler in the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from worker.interfaces import kafka_producer
from worker.outbox import Outbox
from yadtq import lua_periodic
from yadtq.errors import YadtqError
from yadtq.keys import DEFAULT_QUEUE
from yadtq.schedule_store import PUBLISH_EVERY, ScheduleStore
from yadtq.schedules import Schedule
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.periodic")

LOCK = "periodic"
LOCK_TTL = 3.0
"""Seconds the scheduler lock lives without renewal: how long a dead leader delays the schedules."""
MAX_SLEEP = 1.0
"""Longest pause between two rounds (the lock is renewed every round; standbys retry as often)."""
MIN_SLEEP = 0.02


class Locks(Protocol):
    """The lock calls the scheduler makes (``RedisStore`` has them)."""

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool: ...
    def release_lock(self, name: str, owner: str) -> None: ...


class PeriodicScheduler:
    """Fires due periods of ``schedules`` while this worker holds the scheduler lock."""

    def __init__(self, store: RedisStore, outbox: Outbox, schedules: list[Schedule],
                 worker_id: str, stopping: threading.Event) -> None:
        self.store = ScheduleStore(store)
        self.outbox, self.schedules = outbox, schedules
        self.worker_id, self.stopping = worker_id, stopping
        self.locks: Locks = store
        """Where the scheduler lock lives (the store; a test may pass one that always grants)."""
        self._next: dict[str, float] = {}
        """Per schedule, the Redis time from which its next period is due (a cache)."""
        self.fired = 0
        """Tasks this scheduler created and sent."""
        self.thread = threading.Thread(target=self._loop, name="yadtq-periodic", daemon=True)

    def start(self) -> None:
        if self.schedules:
            self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _loop(self) -> None:
        # connect the producer before leading: its first connection can take seconds, and a
        # leader stalled past the lock's TTL hands the schedules over (and skips periods)
        self.outbox.resend([])
        published_at = float("-inf")
        while not self.stopping.is_set():
            pause = MAX_SLEEP
            if time.monotonic() - published_at > PUBLISH_EVERY:
                try:
                    removed = self.store.publish(self.schedules)
                    published_at = time.monotonic()
                    if removed:
                        log.info("removed schedules no worker published for a day: %s",
                                 ", ".join(removed))
                except YadtqError as exc:  # listing them is not needed to fire them
                    log.warning("could not publish the schedules: %s", exc)
            try:
                pause = self.run_once()
            except YadtqError as exc:
                log.warning("periodic round failed: %s", exc)
            except Exception:  # the scheduler must outlive any one bad round (a documented boundary)
                log.exception("periodic round failed")
            if self.stopping.wait(pause):
                break
        try:
            self.locks.release_lock(LOCK, self.worker_id)
        except YadtqError:
            pass
        self.outbox.close()

    def run_once(self) -> float:
        """One round if this worker leads; returns the seconds to wait before the next."""
        if not self.locks.acquire_lock(LOCK, self.worker_id, LOCK_TTL):
            return MAX_SLEEP
        now = self.store.now()
        wake = now + MAX_SLEEP
        for schedule in self.schedules:
            due_at = self._next.get(schedule.name)
            if due_at is None or now >= due_at:
                try:
                    self._fire_due(schedule, now)
                except YadtqError as exc:  # this schedule again next round; the others go on
                    log.warning("schedule %s: could not fire: %s", schedule.name, exc)
                    continue
                nxt = schedule.next_after(now)
                self._next[schedule.name] = float("inf") if nxt is None else nxt
            wake = min(wake, self._next[schedule.name])
        return max(MIN_SLEEP, min(MAX_SLEEP, wake - self.store.now()))

    def _fire_due(self, schedule: Schedule, now: float) -> None:
        period = schedule.period_start(now)
        if period is None:
            return
        fired = self.store.fire(schedule, period)
        if fired.code == lua_periodic.FIRE_MARKER_REPAIRED:
            log.warning("schedule %s: its last-period marker was malformed; reset to period %d "
                        "(that period does not run)", schedule.name, period)
        elif fired.code == lua_periodic.FIRE_FUTURE:
            log.error("schedule %s: period %d is after Redis's clock; not fired", schedule.name,
                      period)
        if not fired.created:
            return
        env = Envelope(schedule.task_id(period), schedule.task, schedule.args, fired.created_at,
                       schedule.queue or DEFAULT_QUEUE)
        (err,) = self.outbox.resend([env])
        if err is not None:
            log.warning("schedule %s: task %s created but not sent (the reconciler will send it): "
                        "%s", schedule.name, env.id, err)
            return
        self.fired += 1
        log.info("schedule %s: period %d fired as task %s", schedule.name, period, env.id)


def start_periodic(settings: Settings, store: RedisStore, schedules: list[Schedule],
                   worker_id: str, stopping: threading.Event) -> PeriodicScheduler:
    """Start the scheduler thread of a worker (it does nothing without schedules). It has its
    own producer, closed when its loop ends: a send in flight at shutdown is not cut off by the
    worker closing its own."""
    outbox = Outbox(settings, kafka_producer, worker_id)
    scheduler = PeriodicScheduler(store, outbox, schedules, worker_id, stopping)
    scheduler.start()
    return scheduler


__all__ = ["LOCK", "LOCK_TTL", "PeriodicScheduler", "start_periodic"]
