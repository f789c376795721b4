"""The worker loop.

Main thread: owns the Kafka consumer (kafka-python is not thread-safe). It polls a batch, pauses the
assigned partitions, hands the batch to the runner thread and keeps polling (paused) while the batch
runs, so the worker stays in its consumer group however long a task takes. When the batch is done it
commits the offsets and resumes. It also enforces time limits.

Runner thread: runs each batch (``worker.runner.TaskRunner``: validate, mark in-progress, run,
retry, write the outcome, all compare-and-set on the attempt).

Offsets are committed only after the final state of every message up to them is written to Redis
(at-least-once). Heartbeats come from a third thread.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time

from worker.execute import TimeLimitExceeded, interrupt_thread
from worker.interfaces import (
    Consumer,
    ConsumerFactory,
    Producer,
    ProducerFactory,
    kafka_consumer,
    kafka_producer,
)
from worker.runner import Batch, Running, TaskRunner
from yadtq.broker_types import Record
from yadtq.errors import ServiceUnavailable
from yadtq.registry import Registry
from yadtq.settings import Settings
from yadtq.store import Beat, RedisStore

log = logging.getLogger("yadtq.worker")

REJOIN_AFTER_SECONDS = 30.0
"""A member whose group join has not finished after this long leaves and joins again. Our
workers keep polling, so a real rebalance takes seconds; kafka-python 3.0 members were seen
stuck in a join for good (alive, no partitions) while the others shared the work."""


class Worker(TaskRunner):
    """One worker process's consumer loop. ``run()`` returns when stopped (or in finite mode)."""

    def __init__(self, settings: Settings, registry: Registry, *, store: RedisStore | None = None,
                 consumer_factory: ConsumerFactory | None = None,
                 producer_factory: ProducerFactory | None = None,
                 worker_id: str | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store or RedisStore(settings)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.host = socket.gethostname()
        self.started_at = time.time()
        self._consumer_factory = consumer_factory or kafka_consumer
        self._producer_factory = producer_factory or kafka_producer
        self._producer: Producer | None = None
        self.stopping = threading.Event()
        self.done = 0
        self.failed = 0
        self.fenced = 0
        self.running: Running | None = None
        self._running_lock = threading.Lock()
        self._batches: queue.Queue[Batch | None] = queue.Queue()
        self._runner: threading.Thread | None = None
        self._assigned: frozenset[int] = frozenset()
        """Replaced, never mutated: the heartbeat thread reads it while rebalances change it."""
        self._revoked_during_batch: set[int] = set()
        self._pending: list[Record] = []
        self._committed: dict[int, int] = {}
        self._seconds: dict[str, float] = {}
        """Average run time per task name: decides which tasks may share a chunk."""
        self._batch: Batch | None = None
        self._consumer: Consumer | None = None

    # ------------------------------------------------------------------ public
    def request_stop(self) -> None:
        """Warm stop: finish the current task, write it, commit, leave the group."""
        self.stopping.set()

    def run(self, max_tasks: int | None = None, idle_exit: float | None = None) -> int:
        """Consume until stopped; ``max_tasks``/``idle_exit`` give a finite mode for tests."""
        self._with_redis(lambda: self.store.publish_specs(
            [s.to_public() for s in self.registry.specs()]), "publish task names")
        consumer = self._connect()
        if consumer is None:
            return 0
        self._consumer = consumer
        heart = threading.Thread(target=self._heartbeat_loop, name="yadtq-heartbeat", daemon=True)
        heart.start()
        self._start_runner()
        log.info("worker %s started: tasks %s, topic %s, group %s", self.id,
                 ", ".join(self.registry.names()), self.settings.topic, self.settings.group)
        handled = 0
        last_work = time.monotonic()
        unjoined_since: float | None = None
        try:
            while not self.stopping.is_set():
                if consumer.joined():
                    unjoined_since = None
                elif unjoined_since is None:
                    unjoined_since = time.monotonic()
                elif time.monotonic() - unjoined_since > REJOIN_AFTER_SECONDS:
                    fresh = self._rejoin(consumer)
                    if fresh is None:
                        break  # stopped while reconnecting (the old consumer is closed again: harmless)
                    consumer, unjoined_since = fresh, None
                    continue
                if self._pending:
                    records, self._pending = self._pending, []
                else:
                    records = consumer.poll(timeout_ms=200)
                if not records:
                    if idle_exit is not None and time.monotonic() - last_work > idle_exit:
                        break
                    continue
                handled += self._process(consumer, records)
                last_work = time.monotonic()
                if max_tasks is not None and handled >= max_tasks:
                    break
        finally:
            self._batches.put(None)
            final = {p: o for p, o in self._committed.items() if p in self._assigned}
            if final:  # make the last asynchronous commits durable before leaving the group
                try:
                    consumer.commit(final, wait=True)
                except Exception as exc:  # noqa: BLE001
                    log.warning("final commit failed (done tasks will be skipped on redelivery): %s",
                                exc)
            try:
                consumer.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the consumer: %s", exc)
            self.stopping.set()
            heart.join(timeout=2)
            try:
                self.store.remove_worker(self.id)
            except ServiceUnavailable:
                pass
            if self._producer is not None:
                self._producer.close()
            log.info("worker %s stopped after %d tasks (%d failed)", self.id, self.done + self.failed,
                     self.failed)
        return handled

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
        except Exception as exc:  # noqa: BLE001
            log.warning("closing the stuck consumer: %s", exc)
        self._assigned = frozenset()
        self._committed.clear()
        self._pending = []
        fresh = self._connect()
        self._consumer = fresh
        return fresh

    # ------------------------------------------------------------------ main thread
    def _process(self, consumer: Consumer, records: list[Record]) -> int:
        self._revoked_during_batch = set()
        batch = Batch(records)
        self._batch = batch
        self._batches.put(batch)
        last_poll = time.monotonic()
        paused = False
        while not batch.done.wait(0.05):
            self._watchdog()
            if time.monotonic() - last_poll > 0.5:
                # Stay in the group while the task runs: poll with every partition paused (paused
                # only now: a batch that ends sooner never polls, and pausing would cost the
                # consumer its prefetched records and a fetch round trip). Records of partitions
                # assigned by a rebalance meanwhile are kept for the next batch.
                if not paused:
                    consumer.pause(consumer.assignment())
                    paused = True
                extra = consumer.poll(timeout_ms=0)
                if extra:
                    consumer.pause(consumer.assignment())
                    self._pending.extend(extra)
                last_poll = time.monotonic()
        self._batch = None
        offsets = {p: o for p, o in batch.processed.items()
                   if p not in self._revoked_during_batch and p in consumer.assignment()}
        self._commit(consumer, offsets)
        if paused:
            consumer.resume(consumer.assignment())
        return len(records)

    def _commit(self, consumer: Consumer, offsets: dict[int, int]) -> None:
        """Commit after the batch's outcomes are in Redis. While running, asynchronously: a lost
        commit only means a redelivery, which Redis shows as already done and skips. At shutdown
        (and if sending fails), synchronously with retries."""
        if not offsets:
            return
        self._committed.update(offsets)
        if not self.stopping.is_set():
            try:
                consumer.commit(offsets, wait=False)
                return
            except Exception as exc:  # noqa: BLE001
                log.warning("asynchronous commit not sent, committing synchronously: %s", exc)
        for attempt in range(1, 6):
            try:
                consumer.commit(offsets)
                return
            except Exception as exc:  # noqa: BLE001 - lost partitions, broker down...
                if self.stopping.is_set() and attempt >= 2:
                    log.warning("commit failed at shutdown (tasks will be redelivered and "
                                "skipped as already done): %s", exc)
                    return
                log.warning("commit failed (attempt %d): %s", attempt, exc)
                time.sleep(min(2.0, 0.2 * attempt))
        log.error("giving up committing %s; those tasks will be redelivered and skipped", offsets)

    def _on_revoked(self, partitions: set[int]) -> None:
        """Called inside ``poll`` on a rebalance: let the running batch finish briefly, commit what
        is done on the partitions we lose, and forget records we will no longer own."""
        batch = self._batch
        if batch is not None:
            batch.done.wait(min(5.0, self.settings.session_timeout_ms / 2000))
            offsets = {p: o for p, o in batch.processed.items() if p in partitions}
            if offsets and self._consumer is not None:
                try:
                    self._consumer.commit(offsets)
                except Exception as exc:  # noqa: BLE001
                    log.warning("commit on revoke failed: %s", exc)
        self._revoked_during_batch |= partitions
        self._assigned = self._assigned - partitions
        for p in partitions:
            self._committed.pop(p, None)
        self._pending = [r for r in self._pending if r.partition not in partitions]
        log.info("partitions revoked: %s", sorted(partitions))

    def _on_assigned(self, partitions: set[int]) -> None:
        self._assigned = self._assigned | partitions
        log.info("partitions assigned: %s", sorted(partitions))

    def _watchdog(self) -> None:
        # under the lock: the runner clears ``running`` under it too, so a task that has already
        # returned is never interrupted
        with self._running_lock:
            running = self.running
            if running and not running.interrupted and time.monotonic() > running.deadline:
                running.interrupted = True
                if self._runner is not None:
                    log.warning("task %s is over its time limit; interrupting it", running.task_id)
                    interrupt_thread(self._runner, TimeLimitExceeded)

    # ------------------------------------------------------------------ runner thread
    def _start_runner(self) -> None:
        self._runner = threading.Thread(target=self._runner_loop, name="yadtq-runner", daemon=True)
        self._runner.start()

    def _runner_loop(self) -> None:
        while True:
            try:
                batch = self._batches.get()
            except TimeLimitExceeded:  # a late interrupt: nothing was running
                continue
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except (Exception, TimeLimitExceeded):  # noqa: BLE001 - must not kill the runner
                log.exception("runner failed on a batch; its uncommitted tasks will be redelivered")
                batch.processed.clear()
            finally:
                batch.done.set()

    def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            running = self.running
            try:
                beat = Beat(self.id, self.host, os.getpid(), self.started_at,
                            running.task_id if running else None, self.done, self.failed,
                            tuple(self._assigned))
                self.store.heartbeat(beat, self.settings.heartbeat_ttl)
            except ServiceUnavailable as exc:
                log.debug("heartbeat failed: %s", exc)
            except Exception:  # noqa: BLE001 - a heartbeat thread that dies makes a live worker "dead"
                log.exception("heartbeat failed")
            if self.stopping.wait(interval):
                return
