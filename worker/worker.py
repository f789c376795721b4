"""One worker process: the consume loop and the parts it owns.

Parts (each an object with explicit dependencies; they share only the runner's queue, the offsets
in flight and the runner's status):

- the consume loop (this class, main thread): owns the Kafka consumer (kafka-python is not
  thread-safe). It polls, hands each message to the runner as soon as a thread can take it (up to
  ``concurrency`` tasks at once, from any partition, several from one), keeps polling (with
  partitions paused while the runner has enough waiting) so the worker stays in its group however
  long a task takes, and commits each partition up to its lowest unfinished offset
  (``worker.inflight``): only after the final state of every message before it is written to
  Redis (at-least-once), and only from this thread. On a rebalance the runner starts no more tasks
  of the partitions that moved.
- the committer (``worker.commits``): finished offsets, committed ``commit_after`` seconds later.
- the runner (``worker.runner``, ``concurrency`` threads): validates and runs the tasks; what the
  loop and the runner share is in ``worker.state`` and ``worker.inflight``.
- the watchdog (``worker.watchdog``, called here): time limits and cancels; a task that does not
  stop ``stuck_grace`` after its limit (or its cancel) is failed (cancelled), its offset committed,
  and the process exits with ``EXIT_RESTART`` so the supervisor starts a fresh one (a thread stuck
  in C cannot be killed).
- the cancel watch (``worker.cancel_watch``, its own thread): reads the running tasks' cancel flags
  once a second.
- the heartbeat (``worker.heartbeat``, its own thread): health with a TTL, ``stalled`` included.
- the reconciler (``worker.repair``, its own thread): repairs tasks that nothing will deliver.
- the retention sweeper (``worker.retention``, its own thread): removes expired finished tasks.
- the scheduler (``worker.scheduler``, its own thread): sends due tasks when this worker leads.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from worker.cancel_watch import CancelWatch
from worker.commits import Committer
from worker.heartbeat import Heartbeat, Identity
from worker.inflight import InFlight
from worker.interfaces import (
    Consumer,
    ConsumerFactory,
    OffsetsFactory,
    ProducerFactory,
    kafka_consumer,
    kafka_offsets,
    kafka_producer,
)
from worker.metrics import Metrics
from worker.outbox import Outbox
from worker.polling import POLL_WHILE_FULL_SECONDS, Poller
from worker.recycle import EXIT_RECYCLE, Recycle
from worker.repair import Reconciler
from worker.retention import Sweeper
from worker.runner import Runner
from worker.scheduler import Scheduler
from worker.stall import StallCheck
from worker.state import Running
from worker.watchdog import Watchdog
from yadtq.broker_types import Record
from yadtq.due import DueSet
from yadtq.errors import ServiceUnavailable, StoreError, YadtqError
from yadtq.registry import Registry
from yadtq.settings import Settings
from yadtq.store import RedisStore

log = logging.getLogger("yadtq.worker")

EXIT_RESTART = 75
"""Exit code of a worker that must be replaced (a task that will not stop, a runner that keeps
failing): the supervisor starts a new worker process."""
REJOIN_AFTER_SECONDS = 30.0
"""A member whose group join has not finished after this long leaves and joins again. Our
workers keep polling, so a real rebalance takes seconds; kafka-python 3.0 members were seen
stuck in a join for good (alive, no partitions) while the others shared the work."""
STALL_CHECK_SECONDS = 5.0
"""While idle, how often the worker checks that its consumer still delivers what waits
(``worker.stall``): a stalled partition is found 5-10 s after the last work."""
RUNNER_FAILURES_BEFORE_RESTART = 3
STAGE_SECONDS = 0.1
"""How often the committable offsets are taken (they are committed ``commit_after`` later)."""
RECOMMIT_SECONDS = 5.0
"""How often the committed offsets are sent again: an asynchronous commit can fail unseen (say
during a rebalance), and an idle partition would otherwise keep its old offset for good (the
reconciler waits on committed offsets)."""


class Worker:
    """One worker process's consume loop. ``run()`` returns when stopped (or in finite mode);
    ``exit_code`` is then ``EXIT_RESTART`` if the process should be replaced."""

    def __init__(self, settings: Settings, registry: Registry, *, store: RedisStore | None = None,
                 consumer_factory: ConsumerFactory | None = None,
                 producer_factory: ProducerFactory | None = None,
                 offsets_factory: OffsetsFactory | None = None,
                 worker_id: str | None = None, repair: bool = True,
                 metrics: Metrics | None = None, schedule: bool = True) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store or RedisStore(settings)
        self.identity = Identity(worker_id or f"{socket.gethostname()}-{os.getpid()}",
                                 socket.gethostname(), os.getpid(), time.time())
        self.id = self.identity.id
        self.stopping = threading.Event()
        self.exit_code = 0
        self.metrics = metrics or Metrics()
        self.outbox = Outbox(settings, producer_factory or kafka_producer, self.id,
                             self.metrics.dead_lettered.inc)
        self.inflight = InFlight()
        self.runner = Runner(settings, registry, self.store, self.outbox, self.id, self.stopping,
                             self.metrics, self.inflight)
        self.metrics.running(lambda: len(self.runner.status.running))
        self.watchdog = Watchdog(self.runner, settings.stuck_grace)
        self.cancel_watch = CancelWatch(self.store, self.runner.status, self.stopping)
        self.heartbeat = Heartbeat(self.store, settings, self.identity, self.runner.status,
                                   self.watchdog.stalled, lambda: tuple(self._assigned), self.stopping)
        self.reconciler = (Reconciler(settings, self.store, offsets_factory or kafka_offsets,
                                      self.outbox, self.id, self.stopping, self.metrics.repaired)
                           if repair else None)
        self.sweeper = Sweeper(settings, self.store, self.id, self.stopping) if repair else None
        self.scheduler = (Scheduler(settings, DueSet(self.store), self.outbox, self.id, self.stopping)
                          if schedule else None)
        self._consumer_factory = consumer_factory or kafka_consumer
        self._consumer: Consumer | None = None
        self._assigned: frozenset[int] = frozenset()
        """Replaced, never mutated: the heartbeat thread reads it while rebalances change it."""
        self.stall = StallCheck()
        self.poller = Poller(settings, self.runner.work, self.inflight, self.runner.idle,
                             self.stopping)
        self.commits = Committer(settings.commit_after,
                                 lambda: self.stopping.is_set() or bool(self.exit_code))
        self.recycle = Recycle(settings.max_memory_mb, settings.max_tasks_per_process)
        self.recycled: str | None = None
        """Why this process stopped for a fresh one (``worker.recycle``), if it did."""

    def _threads(self) -> list[Heartbeat | CancelWatch | Reconciler | Sweeper | Scheduler]:
        """The parts with a thread of their own, besides the runner."""
        return [part for part in (self.heartbeat, self.cancel_watch, self.reconciler, self.sweeper,
                                  self.scheduler) if part is not None]

    @property
    def done(self) -> int:
        return self.runner.status.done

    @property
    def failed(self) -> int:
        return self.runner.status.failed

    # ------------------------------------------------------------------ public
    def request_stop(self) -> None:
        """Warm stop: finish the running tasks, write them, commit, leave the group."""
        self.stopping.set()

    def run(self, max_tasks: int | None = None, idle_exit: float | None = None) -> int:
        """Consume until stopped; ``max_tasks``/``idle_exit`` give a finite mode for tests."""
        specs = [s.to_public() for s in self.registry.specs()]
        try:
            self.runner.redis.call(lambda: self.store.publish_specs(specs), "publish task names")
        except StoreError as exc:
            log.error("could not publish the task names: %s", exc)
        consumer = self._connect()
        if consumer is None:
            return 0
        self._consumer = consumer
        self.runner.start()
        for part in self._threads():
            part.start()
        log.info("worker %s started: tasks %s, queues %s, group %s, Kafka consumer %s", self.id,
                 ", ".join(self.registry.names()), ",".join(self.settings.queue_list()),
                 self.settings.group, type(consumer).__name__)
        too_low = self.recycle.too_low()
        if too_low:
            log.error("%s", too_low)
        handled = 0
        try:
            handled = self._consume(consumer, max_tasks, idle_exit)
        finally:
            self._shutdown()
            if self.recycled and not self.exit_code:
                self.exit_code = EXIT_RECYCLE
        return handled

    # ------------------------------------------------------------------ the loop
    def _consume(self, consumer: Consumer, max_tasks: int | None, idle_exit: float | None) -> int:
        handled = 0
        last_work = last_recommit = last_stage = time.monotonic()
        unjoined_since: float | None = None
        while not self.stopping.is_set() and not self.exit_code:
            now = time.monotonic()
            if now - last_recommit > RECOMMIT_SECONDS:
                self.commits.recommit(consumer)
                last_recommit = now
            if consumer.joined():
                unjoined_since = None
            elif unjoined_since is None:
                unjoined_since = now
            elif now - unjoined_since > REJOIN_AFTER_SECONDS:
                fresh = self._rejoin(consumer, "join", f"joining the consumer group has not "
                                                       f"finished after {REJOIN_AFTER_SECONDS:.0f} s")
                if fresh is None:
                    break  # stopped while reconnecting
                consumer, unjoined_since = fresh, None
                continue
            if not self._healthy(consumer):
                break
            self.recycled = self.recycle.reason(self.done + self.failed)
            if self.recycled:
                log.warning("worker %s %s: finishing the tasks it runs, handing back the others; a "
                            "fresh process takes over", self.id, self.recycled)
                self.stopping.set()
                break
            if now - last_stage > STAGE_SECONDS:
                self._stage(consumer)
                last_stage = now
            records = self.poller.take(consumer)
            if records:
                self.stall.busy()
                handled += self._dispatch(records)
                last_work = time.monotonic()
                if max_tasks is not None and handled >= max_tasks:
                    break
            elif not self.runner.idle():
                self.stall.busy()
                last_work = time.monotonic()
            elif idle_exit is not None and time.monotonic() - last_work > idle_exit:
                break
            else:
                with self.runner.status.lock:
                    self.runner.status.progress()  # idle is progress: nothing is stuck
                stalled = self.stall.check(consumer, self.poller.paused, STALL_CHECK_SECONDS)
                if stalled:
                    fresh = self._rejoin(consumer, "stalled", (
                        "the Kafka consumer delivered nothing for over "
                        f"{STALL_CHECK_SECONDS:g} s while messages waited (partition: waiting "
                        f"{stalled}) and the worker was idle"), logging.ERROR)
                    if fresh is None:
                        break
                    consumer, unjoined_since = fresh, None
        self._drain(consumer)
        return handled

    def _healthy(self, consumer: Consumer) -> bool:
        """Check the running tasks (escalating a stuck one) and the runner; False to end the loop."""
        stuck = self.watchdog.check() if self.watchdog.due() else None
        if stuck is not None:
            self._escalate(consumer, stuck)
            return False
        if not self.runner.alive() or self.runner.failures >= RUNNER_FAILURES_BEFORE_RESTART:
            log.error("the runner %s; restarting the worker",
                      f"failed on {self.runner.failures} chunks in a row"
                      if self.runner.alive() else "lost a thread")
            self.exit_code = EXIT_RESTART
            self._stage(consumer)
            self.commits.commit_aged(consumer, wait=True)
            return False
        return True

    def _stage(self, consumer: Consumer) -> None:
        self.commits.stage(consumer, self.inflight.committable())
        self.commits.commit_aged(consumer)

    def _dispatch(self, records: list[Record]) -> int:
        self.runner.submit(self.inflight.add(records))
        return len(records)

    def _drain(self, consumer: Consumer) -> None:
        """Let the tasks in hand finish (the waiting ones too, unless stopping), still watching
        them, committing and staying in the group."""
        if self.exit_code:
            return
        while True:
            if self.stopping.is_set():
                self.runner.work.clear()  # not started: redelivered after we leave the group
            if self.runner.idle() or not self._healthy(consumer):
                break
            if time.monotonic() - self.poller.last_poll > POLL_WHILE_FULL_SECONDS:
                try:  # what it returns is redelivered: not committed
                    self.poller.keep_alive(consumer)
                except YadtqError as exc:
                    log.warning("poll while finishing failed: %s", exc)
            self._stage(consumer)
            time.sleep(0.02)
        self._stage(consumer)

    # ------------------------------------------------------------------ escalation
    def _escalate(self, consumer: Consumer, stuck: Running) -> None:
        """A task did not stop after its time limit (or its cancel) plus the grace period: fail it
        (cancel it), let the others finish, commit past them, end the process for a fresh one."""
        self.watchdog.escalate(stuck, self.store, self.id, self.inflight)
        self.exit_code = EXIT_RESTART
        self.commits.stage(consumer, self.inflight.committable())
        self.commits.commit_aged(consumer, wait=True)

    # ------------------------------------------------------------------ group membership
    def _connect(self) -> Consumer | None:
        """The consumer, once Kafka answers: a worker started before (or during a restart of) the
        broker waits for it instead of exiting. None if stopped meanwhile."""
        delay = 0.5
        while True:
            try:
                return self._consumer_factory(self.settings, self.id, self._on_revoked,
                                              self._on_assigned)
            except ServiceUnavailable as exc:
                log.warning("Kafka not ready, retrying in %.1f s: %s", delay, exc)
            if self.stopping.wait(delay):
                return None
            delay = min(5.0, delay * 2)

    def _rejoin(self, consumer: Consumer, reason: str, why: str,
                level: int = logging.WARNING) -> Consumer | None:
        """Leave the group with a new consumer (``REJOIN_AFTER_SECONDS``, ``worker.stall``), counted
        under ``reason`` (``yadtq_consumer_renewals_total``); None if stopped."""
        self.metrics.renewals.labels(reason).inc()
        log.log(level, "worker %s: %s; leaving the group and joining with a new consumer", self.id,
                why)
        try:
            consumer.close()
        except YadtqError as exc:
            log.warning("closing the stuck consumer: %s", exc)
        self._assigned = frozenset()
        self.inflight.revoke()
        self.poller.reset()
        self.commits.forget()
        fresh = self._connect()
        self._consumer = fresh
        self.stall.busy()  # a new consumer: what the old one had waiting says nothing of it
        return fresh

    def _on_revoked(self, partitions: set[int]) -> None:
        """On a rebalance (on Kafka's network thread: no consumer calls here). The runner starts no
        more tasks of these partitions; their running tasks get a moment to finish, so the next
        owner does not run them again. Nothing of them is committed by us any more (never past an
        unfinished task): the next owner skips the finished ones as final."""
        gone = self.inflight.revoke(partitions)
        wait_until = time.monotonic() + min(2.0, self.settings.session_timeout_ms / 4000)
        while gone and time.monotonic() < wait_until:
            with self.runner.status.lock:
                # running, or run and its outcome still on its way to Redis: the next owner would
                # find it in-progress under a worker that still runs and run it again
                if not self.runner.status.writing and \
                        not any(r.track in gone for r in self.runner.status.running.values()):
                    break
            time.sleep(0.02)
        self._assigned = self._assigned - partitions
        self.poller.revoked(partitions)
        self.commits.forget(partitions)
        log.info("partitions revoked: %s", sorted(partitions))

    def _on_assigned(self, partitions: set[int]) -> None:
        self._assigned = self._assigned | partitions
        self.poller.assigned(partitions)
        log.info("partitions assigned: %s", sorted(partitions))

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        """Stop taking work, make the last commits durable, leave the group, stop the other parts.
        A runner stuck in a task is left behind (a daemon thread): the process is about to end."""
        self.runner.stop()
        consumer = self._consumer
        if consumer is not None:
            if not self.exit_code:
                self.commits.commit_aged(consumer, wait=True)
            final = self.commits.committed(self._assigned)
            if final and not self.exit_code:  # make the asynchronous commits durable
                try:
                    consumer.commit(final)
                except YadtqError as exc:
                    log.warning("final commit failed (done tasks will be skipped on redelivery): %s",
                                exc)
            try:
                consumer.close()
            except YadtqError as exc:
                log.warning("closing the consumer: %s", exc)
        self.stopping.set()
        for part in self._threads():
            part.join(timeout=2)
        for closing in (self.runner.procs, self.runner.starts, self.runner.outcomes):
            closing.close()
        try:
            self.store.remove_worker(self.id)
        except YadtqError:
            pass
        self.outbox.close()
        log.info("worker %s stopped after %d tasks (%d failed)%s", self.id, self.done + self.failed,
                 self.failed, "; restarting" if self.exit_code == EXIT_RESTART else "")
