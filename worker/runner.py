"""The runner side of a worker: what happens to a batch of messages on the runner thread.

For each message: decode and validate it (invalid ones are dead-lettered), mark it ``in-progress``
in Redis (a new attempt, compare-and-set), run the registered function, retry it with exponential
backoff, and write the outcome (compare-and-set on the attempt). Consecutive tasks whose names are
known to run fast share one start and one finish round trip (chunks of up to 256); any other task
runs in a chunk of its own, so a task is marked in-progress only when it really starts.
``Worker`` (worker/worker.py) owns the consumer and builds on this class.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.execute import Result, TimeLimitExceeded, run_task
from worker.interfaces import Producer, ProducerFactory
from yadtq.broker_types import Record
from yadtq.errors import DecodeError, InvalidTask, ServiceUnavailable
from yadtq.models import TaskState
from yadtq.registry import Registry, TaskSpec
from yadtq.settings import Settings
from yadtq.store import Outcome, RedisStore
from yadtq.text import literal
from yadtq.wire import Envelope, decode

log = logging.getLogger("yadtq.worker")

FAST_TASK_SECONDS = 0.005
MAX_CHUNK = 256
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


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


class TaskRunner:
    """Runs batches of messages (on the runner thread). State shared with ``Worker``."""

    settings: Settings
    registry: Registry
    store: RedisStore
    id: str
    stopping: threading.Event
    done: int
    failed: int
    fenced: int
    running: Running | None
    _running_lock: threading.Lock
    _seconds: dict[str, float]
    _producer: Producer | None
    _producer_factory: ProducerFactory

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
        log.warning("dead-lettering message %s/%d: %s", rec.partition, rec.offset, literal(reason, 300))
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
        args = f" args={literal(repr(env.args), 300)}" if self.settings.log_args else ""
        if result.ok:
            log.debug("task %s %s attempt %d completed in %.3f s%s", env.id, env.name, attempt,
                      result.seconds, args)
        else:
            log.info("task %s %s attempt %d failed: %s%s", env.id, env.name, attempt,
                     literal(result.error or "", 300), args)

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
