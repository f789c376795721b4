"""One worker process: the consume loop and the parts it owns.

Parts (each an object with explicit dependencies; they share only the batch queue and the runner's
status):

- the consume loop (this class, main thread): owns the Kafka consumer (kafka-python is not
  thread-safe). It polls a batch, hands it to the runner, keeps polling with its partitions paused
  while the batch runs (so the worker stays in its group however long a task takes), commits what
  is finished (during the batch every second, and at its end), and on a rebalance stops the runner
  from starting tasks of partitions that moved. Offsets are committed only after the final state of
  every message up to them is written to Redis (at-least-once), and only from this thread.
- the committer (``worker.commits``): finished offsets, committed ``commit_after`` seconds later.
- the runner (``worker.runner``, its own thread): validates and runs the batch's tasks; what the
  loop and the runner share is in ``worker.state``.
- the watchdog (``worker.watchdog``, called here): time limits and cancels; a task that does not
  stop ``stuck_grace`` after its limit (or its cancel) is failed (cancelled), its offset committed,
  and the process exits with ``EXIT_RESTART`` so the supervisor starts a fresh one (a thread stuck
  in C cannot be killed).
- the cancel watch (``worker.cancel_watch``, its own thread): reads the running task's cancel flag
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
from worker.repair import Reconciler
from worker.retention import Sweeper
from worker.runner import Runner
from worker.scheduler import Scheduler
from worker.state import Batch, Running
from worker.watchdog import Watchdog
from yadtq.broker_types import Record
from yadtq.due import DueSet
from yadtq.errors import ServiceUnavailable, StoreError, YadtqError
from yadtq.models import Outcome, TaskState
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
RUNNER_FAILURES_BEFORE_RESTART = 3
PROGRESS_COMMIT_SECONDS = 1.0
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
        self.runner = Runner(settings, registry, self.store, self.outbox, self.id, self.stopping,
                             self.metrics)
        self.metrics.running(lambda: int(self.runner.status.running is not None))
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
        self._batch: Batch | None = None
        self._pending: list[Record] = []
        self.commits = Committer(settings.commit_after,
                                 lambda: self.stopping.is_set() or bool(self.exit_code))
        self._lock = threading.Lock()
        """Guards ``_pending``: rebalance callbacks run on Kafka's thread."""
        self._runner_failures = 0

    def _threads(self) -> list[Heartbeat | CancelWatch | Reconciler | Sweeper | Scheduler]:
        """The parts with a thread of their own, besides the runner."""
        return [part for part in (self.heartbeat, self.cancel_watch, self.reconciler, self.sweeper,
                                  self.scheduler) if part is not None]

    @property
    def batch(self) -> Batch | None:
        """The batch the runner has now (None between batches)."""
        return self._batch

    @property
    def done(self) -> int:
        return self.runner.status.done

    @property
    def failed(self) -> int:
        return self.runner.status.failed

    # ------------------------------------------------------------------ public
    def request_stop(self) -> None:
        """Warm stop: finish the current task, write it, commit, leave the group."""
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
        log.info("worker %s started: tasks %s, topic %s, group %s", self.id,
                 ", ".join(self.registry.names()), self.settings.topic, self.settings.group)
        handled = 0
        try:
            handled = self._consume(consumer, max_tasks, idle_exit)
        finally:
            self._shutdown()
        return handled

    # ------------------------------------------------------------------ the loop
    def _consume(self, consumer: Consumer, max_tasks: int | None, idle_exit: float | None) -> int:
        handled = 0
        last_work = last_recommit = time.monotonic()
        unjoined_since: float | None = None
        while not self.stopping.is_set() and not self.exit_code:
            if time.monotonic() - last_recommit > RECOMMIT_SECONDS:
                self.commits.recommit(consumer)
                last_recommit = time.monotonic()
            if consumer.joined():
                unjoined_since = None
            elif unjoined_since is None:
                unjoined_since = time.monotonic()
            elif time.monotonic() - unjoined_since > REJOIN_AFTER_SECONDS:
                fresh = self._rejoin(consumer)
                if fresh is None:
                    break  # stopped while reconnecting
                consumer, unjoined_since = fresh, None
                continue
            self.commits.commit_aged(consumer)
            with self._lock:
                records, self._pending = self._pending, []
            if not records:
                try:
                    records = consumer.poll(timeout_ms=200)
                except YadtqError as exc:
                    log.warning("poll failed: %s", exc)
                    self.stopping.wait(0.5)
                    continue
            if not records:
                if idle_exit is not None and time.monotonic() - last_work > idle_exit:
                    break
                with self.runner.status.lock:
                    self.runner.status.progress()  # idle is progress: nothing is stuck
                continue
            handled += self._process(consumer, records)
            last_work = time.monotonic()
            if max_tasks is not None and handled >= max_tasks:
                break
        return handled

    def _process(self, consumer: Consumer, records: list[Record]) -> int:
        batch = Batch(records)
        self._batch = batch
        self.runner.submit(batch)
        last_poll = last_commit = time.monotonic()
        paused = False
        while not batch.done.wait(0.05):
            stuck = self.watchdog.check()
            if stuck is not None:
                self._escalate(consumer, stuck)
                return len(records)
            if not self.runner.alive():
                log.error("the runner thread ended; restarting the worker")
                self.commits.stage(consumer, batch)
                self.exit_code = EXIT_RESTART
                return len(records)
            now = time.monotonic()
            if now - last_poll > 0.5:
                # Stay in the group while the task runs: poll with every partition paused (paused
                # only now: a batch that ends sooner never polls, and pausing would cost the
                # consumer its prefetched records and a fetch round trip). Records of partitions
                # assigned by a rebalance meanwhile are kept for the next batch.
                try:
                    if not paused:
                        consumer.pause(consumer.assignment())
                        paused = True
                    extra = consumer.poll(timeout_ms=0)
                    if extra:
                        consumer.pause(consumer.assignment())
                        with self._lock:
                            self._pending.extend(extra)
                except YadtqError as exc:
                    log.warning("poll during a batch failed: %s", exc)
                last_poll = time.monotonic()
            if now - last_commit > PROGRESS_COMMIT_SECONDS:
                self.commits.stage(consumer, batch)
                self.commits.commit_aged(consumer)
                last_commit = now
        self._batch = None
        self.commits.stage(consumer, batch)
        self.commits.commit_aged(consumer)
        if batch.failed:
            self._seek_back(consumer, batch)
        else:
            self._runner_failures = 0
        if paused:
            try:
                consumer.resume(consumer.assignment())
            except YadtqError as exc:
                log.warning("resume failed: %s", exc)
        return len(records)

    def _seek_back(self, consumer: Consumer, batch: Batch) -> None:
        """The runner failed on this batch: read its partitions again from the first unfinished
        offsets (what was finished is skipped as final). Repeated failures restart the process."""
        self._runner_failures += 1
        targets = {p: o for p, o in batch.resume_at().items() if p not in batch.revoked}
        with self._lock:
            self._pending = [r for r in self._pending if r.partition not in targets]
        for p, offset in targets.items():
            try:
                consumer.seek(p, offset)
            except YadtqError as exc:
                log.warning("seek back on partition %d failed: %s", p, exc)
        if self._runner_failures >= RUNNER_FAILURES_BEFORE_RESTART:
            log.error("the runner failed on %d batches in a row; restarting the worker",
                      self._runner_failures)
            self.exit_code = EXIT_RESTART

    # ------------------------------------------------------------------ escalation
    def _escalate(self, consumer: Consumer, stuck: Running) -> None:
        """A task did not stop after its time limit (or its cancel) plus the grace period: fail it
        (cancel it), commit past it (the tasks before it are finished), and end the process for a
        fresh one."""
        grace = self.settings.stuck_grace
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
        batch, rec = stuck.batch, stuck.record
        try:
            written = self.store.finish(self.id, [outcome])
        except YadtqError as exc:
            log.error("could not write the stuck task's outcome (it will be redelivered): %s", exc)
            written = [False]
        if written[0]:
            with self.runner.status.lock:
                self.runner.status.failed += stuck.cancel_seen is None
            first_unfinished = batch.processed.get(rec.partition, batch.first_offset(rec.partition))
            if first_unfinished == rec.offset and rec.partition not in batch.revoked:
                batch.processed[rec.partition] = rec.offset + 1
        self.exit_code = EXIT_RESTART
        self.commits.stage(consumer, batch)
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

    def _rejoin(self, consumer: Consumer) -> Consumer | None:
        """Leave the group with a new consumer (see ``REJOIN_AFTER_SECONDS``); None if stopped."""
        log.warning("worker %s: joining the consumer group has not finished after %.0f s; "
                    "leaving and joining again", self.id, REJOIN_AFTER_SECONDS)
        try:
            consumer.close()
        except YadtqError as exc:
            log.warning("closing the stuck consumer: %s", exc)
        self._assigned = frozenset()
        self.commits.forget()
        with self._lock:
            self._pending = []
        fresh = self._connect()
        self._consumer = fresh
        return fresh

    def _on_revoked(self, partitions: set[int]) -> None:
        """On a rebalance (on Kafka's network thread: no consumer calls here). The runner starts no
        more tasks of these partitions; a task of theirs that is running gets a moment to finish, so
        the next owner does not run it again. Their finished offsets are not committed by us: the
        next owner skips those tasks as final."""
        batch = self._batch
        if batch is not None:
            batch.revoked = batch.revoked | frozenset(partitions)
            wait_until = time.monotonic() + min(2.0, self.settings.session_timeout_ms / 4000)
            while time.monotonic() < wait_until:
                running = self.runner.status.running
                if running is None or running.batch is not batch \
                        or running.record.partition not in partitions:
                    break
                time.sleep(0.02)
        self._assigned = self._assigned - partitions
        self.commits.forget(partitions)
        with self._lock:
            self._pending = [r for r in self._pending if r.partition not in partitions]
        log.info("partitions revoked: %s", sorted(partitions))

    def _on_assigned(self, partitions: set[int]) -> None:
        self._assigned = self._assigned | partitions
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
        try:
            self.store.remove_worker(self.id)
        except YadtqError:
            pass
        self.outbox.close()
        log.info("worker %s stopped after %d tasks (%d failed)%s", self.id, self.done + self.failed,
                 self.failed, "; restarting" if self.exit_code == EXIT_RESTART else "")
