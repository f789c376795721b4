"""The worker loop.

Main thread: owns the Kafka consumer (kafka-python is not thread-safe). It polls a batch, pauses the
assigned partitions, hands the batch to the runner thread and keeps polling (paused) while the batch
runs, so the worker stays in its consumer group however long a task takes. When the batch is done it
commits the offsets and resumes. It also enforces time limits.

Runner thread: for each message, decode and validate it, mark it ``in-progress`` in Redis (new attempt,
compare-and-set), run the registered function, retry it with exponential backoff, write the outcome
(compare-and-set on the attempt). Consecutive tasks whose names are known to run fast are started
and finished in chunks (one Redis round trip each per chunk of up to 256), and any other task runs
in a chunk of its own, so a task is marked in-progress only when it really starts.

Offsets are committed only after the final state of every message up to them is written to Redis
(at-least-once). Heartbeats come from a third thread.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.execute import Result, TimeLimitExceeded, interrupt_thread, run_task
from yadtq.broker_types import Record
from yadtq.errors import DecodeError, InvalidTask, ServiceUnavailable
from yadtq.models import TaskState
from yadtq.registry import Registry, TaskSpec
from yadtq.settings import Settings
from yadtq.store import Beat, Outcome, RedisStore
from yadtq.wire import Envelope, decode

log = logging.getLogger("yadtq.worker")

FAST_TASK_SECONDS = 0.005
MAX_CHUNK = 256
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class Consumer(Protocol):
    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]: ...
    def assignment(self) -> set[int]: ...
    def pause(self, partitions: set[int]) -> None: ...
    def resume(self, partitions: set[int]) -> None: ...
    def commit(self, offsets: dict[int, int]) -> None: ...
    def close(self) -> None: ...


class Producer(Protocol):
    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None: ...
    def close(self) -> None: ...


ConsumerFactory = Callable[[Settings, str, Callable[[set[int]], None], Callable[[set[int]], None]],
                           Consumer]
ProducerFactory = Callable[[Settings], Producer]


@dataclass
class Batch:
    records: list[Record]
    done: threading.Event = field(default_factory=threading.Event)
    processed: dict[int, int] = field(default_factory=dict)
    """partition -> next offset to commit (every record before it has its final state written)."""


@dataclass
class Running:
    """The task the runner is executing right now (read by the watchdog and the heartbeat)."""

    task_id: str
    deadline: float
    interrupted: bool = False


def backoff(attempt: int) -> float:
    return float(min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** (attempt - 1)))


def escape(text: str, limit: int = 300) -> str:
    """One log-safe line: newlines and control characters escaped, so task data cannot forge lines."""
    out = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return out if len(out) <= limit else out[:limit] + "..."


class Worker:
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
        self._consumer_factory = consumer_factory or _kafka_consumer
        self._producer_factory = producer_factory or _kafka_producer
        self._producer: Producer | None = None
        self.stopping = threading.Event()
        self.done = 0
        self.failed = 0
        self.fenced = 0
        self.running: Running | None = None
        self._running_lock = threading.Lock()
        self._batches: queue.Queue[Batch | None] = queue.Queue()
        self._runner: threading.Thread | None = None
        self._assigned: set[int] = set()
        self._revoked_during_batch: set[int] = set()
        self._pending: list[Record] = []
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
        consumer = self._consumer_factory(self.settings, self.id, self._on_revoked, self._on_assigned)
        self._consumer = consumer
        heart = threading.Thread(target=self._heartbeat_loop, name="yadtq-heartbeat", daemon=True)
        heart.start()
        self._start_runner()
        log.info("worker %s started: tasks %s, topic %s, group %s", self.id,
                 ", ".join(self.registry.names()), self.settings.topic, self.settings.group)
        handled = 0
        last_work = time.monotonic()
        try:
            while not self.stopping.is_set():
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

    # ------------------------------------------------------------------ main thread
    def _process(self, consumer: Consumer, records: list[Record]) -> int:
        partitions = consumer.assignment()
        consumer.pause(partitions)
        self._revoked_during_batch = set()
        batch = Batch(records)
        self._batch = batch
        self._batches.put(batch)
        last_poll = time.monotonic()
        while not batch.done.wait(0.05):
            self._watchdog()
            if time.monotonic() - last_poll > 0.5:
                # Stay in the group while the task runs. Paused partitions return nothing; records of
                # partitions assigned by a rebalance meanwhile are kept for the next batch.
                extra = consumer.poll(timeout_ms=0)
                if extra:
                    consumer.pause(consumer.assignment())
                    self._pending.extend(extra)
                last_poll = time.monotonic()
        self._batch = None
        offsets = {p: o for p, o in batch.processed.items()
                   if p not in self._revoked_during_batch and p in consumer.assignment()}
        self._commit(consumer, offsets)
        consumer.resume(consumer.assignment())
        return len(records)

    def _commit(self, consumer: Consumer, offsets: dict[int, int]) -> None:
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
        self._assigned -= partitions
        self._pending = [r for r in self._pending if r.partition not in partitions]
        log.info("partitions revoked: %s", sorted(partitions))

    def _on_assigned(self, partitions: set[int]) -> None:
        self._assigned |= partitions
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

    def _run_batch(self, batch: Batch) -> None:
        """Validate the batch, then run it in chunks: consecutive tasks known to be fast share one
        start and one finish round trip; a task not known to be fast runs in a chunk of its own,
        so no task shows in-progress while it waits behind a slow one."""
        items = [(rec, self._validate(rec)) for rec in batch.records]
        i = 0
        while i < len(items):
            if self.stopping.is_set():
                return  # the rest is not committed: redelivered after we leave the group
            j = i
            while j < len(items) and j - i < MAX_CHUNK and self._known_fast(items[j][1]):
                j += 1
            j = max(j, i + 1)
            if self._run_chunk(items[i:j], batch) is None:
                return
            i = j

    def _known_fast(self, job: tuple[Envelope, TaskSpec] | None) -> bool:
        if job is None or job[1].fn is None:
            return True  # dead-lettered or failed at once: no time to wait behind
        seconds = self._seconds.get(job[1].name)
        return seconds is not None and seconds < FAST_TASK_SECONDS

    def _run_chunk(self, chunk: list[tuple[Record, tuple[Envelope, TaskSpec] | None]],
                   batch: Batch) -> bool | None:
        """Run a chunk; True when done, None if stopped before the chunk was finished."""
        jobs = [job for _, job in chunk if job is not None]
        envs = [env for env, _ in jobs]
        attempts = self._with_redis(lambda: self.store.start(self.id, envs), "mark in-progress")
        if attempts is None:
            return None
        outcomes: list[Outcome] = []
        stopped_at: int | None = None
        for idx, ((env, spec), attempt) in enumerate(zip(jobs, attempts, strict=True)):
            if attempt <= 0:
                log.info("task %s skipped: %s", env.id,
                         "already final (duplicate delivery)" if attempt == 0 else "cleared by reset")
                continue
            if self.stopping.is_set() and idx > 0:
                stopped_at = idx
                break
            outcome, seconds = self._execute(env, spec, attempt)
            previous = self._seconds.get(spec.name)
            self._seconds[spec.name] = seconds if previous is None else 0.8 * previous + 0.2 * seconds
            if outcome is None:
                if self.stopping.is_set():  # stopped during a retry backoff: queued, hand back
                    stopped_at = idx + 1
                    break
                continue  # the retry was taken by another worker or cleared: nothing to write
            outcomes.append(outcome)
        if stopped_at is not None:
            # started but not run: hand them back (queued) so the next owner starts them cleanly
            for (env, _spec), attempt in zip(jobs[stopped_at:], attempts[stopped_at:], strict=True):
                if attempt > 0:
                    outcomes.append(Outcome(env.id, attempt, TaskState.QUEUED,
                                            note="handed back at shutdown"))
        written = self._with_redis(lambda: self.store.finish(self.id, outcomes), "write results")
        if written is None:
            return None
        for outcome, ok in zip(outcomes, written, strict=True):
            if not ok:
                self.fenced += 1
                log.warning("task %s attempt %d: outcome discarded, a newer attempt owns the task",
                            outcome.task_id, outcome.attempt)
        if stopped_at is not None:
            return None
        for rec, _ in chunk:
            batch.processed[rec.partition] = rec.offset + 1
        return True

    def _validate(self, rec: Record) -> tuple[Envelope, TaskSpec] | None:
        try:
            env = decode(rec.value)
        except DecodeError as exc:
            self._dead_letter(rec, str(exc))
            return None
        try:
            spec, args = self.registry.validate(env.name, env.args)
        except InvalidTask as exc:
            reason = str(exc)
            if reason.startswith("unknown task"):
                reason = f"unknown task {env.name!r} on worker {self.id}"
            self._dead_letter(rec, reason)
            return (env, TaskSpec(env.name, None, (), description=reason))
        return (Envelope(env.id, spec.name, args, env.created_at), spec)

    def _dead_letter(self, rec: Record, reason: str) -> None:
        log.warning("dead-lettering message %s/%d: %s", rec.partition, rec.offset, escape(reason))
        try:
            if self._producer is None:
                self._producer = self._producer_factory(self.settings)
            self._producer.dead_letter(rec, reason, self.id)
        except Exception as exc:  # noqa: BLE001 - never block the partition on the dead-letter topic
            log.error("could not write to the dead-letter topic: %s", exc)

    def _execute(self, env: Envelope, spec: TaskSpec, attempt: int) -> tuple[Outcome | None, float]:
        max_attempts = spec.max_attempts or self.settings.default_max_attempts
        limit = spec.time_limit or self.settings.default_time_limit
        total = 0.0
        while True:
            if spec.fn is None:
                self.failed += 1
                return Outcome(env.id, attempt, TaskState.FAILED,
                               error=spec.description or f"unknown task {env.name!r}"), 0.0
            with self._running_lock:
                self.running = Running(env.id, time.monotonic() + limit)
            try:
                try:
                    result = run_task(spec, env.args)
                finally:
                    with self._running_lock:
                        self.running = None
            except TimeLimitExceeded:
                self.running = None
                result = Result(False, error=f"time limit of {limit:g} s exceeded", retryable=True,
                                seconds=limit)
            total += result.seconds
            self._log_result(env, attempt, result)
            if result.ok:
                self.done += 1
                return Outcome(env.id, attempt, TaskState.COMPLETED, result=result.value), total
            if not result.retryable or attempt >= max_attempts:
                self.failed += 1
                note = f"after {attempt} attempts" if attempt > 1 else None
                return Outcome(env.id, attempt, TaskState.FAILED, error=result.error,
                               note=note), total
            delay = backoff(attempt)
            retry = Outcome(env.id, attempt, TaskState.QUEUED, error=result.error,
                            note=f"retry in {delay:g} s")
            if self._with_redis(functools.partial(self.store.finish, self.id, [retry]), "retry") is None:
                return None, total
            if self.stopping.wait(delay):
                return None, total  # queued again; redelivered to whoever owns the partition next
            started = self._with_redis(lambda: self.store.start(self.id, [env]), "restart")
            if not started or started[0] <= 0:
                return None, total
            attempt = started[0]

    def _log_result(self, env: Envelope, attempt: int, result: Result) -> None:
        args = f" args={escape(repr(env.args))}" if self.settings.log_args else ""
        if result.ok:
            log.debug("task %s %s attempt %d completed in %.3f s%s", env.id, env.name, attempt,
                      result.seconds, args)
        else:
            log.info("task %s %s attempt %d failed: %s%s", env.id, env.name, attempt,
                     escape(result.error or ""), args)

    def _with_redis(self, fn: Callable[[], Any], what: str) -> Any:
        """Call ``fn`` until Redis answers; None if the worker is stopping meanwhile."""
        delay = 0.1
        warned = False
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
                if self.stopping.wait(delay):
                    log.warning("stopping while Redis is down: %s not written", what)
                    return None
                delay = min(2.0, delay * 2)

    # ------------------------------------------------------------------ heartbeat thread
    def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            running = self.running
            beat = Beat(self.id, self.host, os.getpid(), self.started_at,
                        running.task_id if running else None, self.done, self.failed,
                        tuple(self._assigned))
            try:
                self.store.heartbeat(beat, self.settings.heartbeat_ttl)
            except ServiceUnavailable as exc:
                log.debug("heartbeat failed: %s", exc)
            if self.stopping.wait(interval):
                return


def _kafka_consumer(settings: Settings, worker_id: str, on_revoked: Callable[[set[int]], None],
                    on_assigned: Callable[[set[int]], None]) -> Consumer:
    from yadtq.broker import TaskConsumer, ensure_topics

    ensure_topics(settings)
    return TaskConsumer(settings, worker_id, on_revoked, on_assigned)


def _kafka_producer(settings: Settings) -> Producer:
    from yadtq.broker import TaskProducer

    return TaskProducer(settings)
