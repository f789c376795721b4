"""The runner: executes the messages the consume loop hands over, on ``concurrency`` threads.

For each message: decode and validate it (an invalid one is dead-lettered), mark it ``in-progress``
in Redis (a new attempt, compare-and-set), run the registered function, and write the outcome
(compare-and-set on the attempt). A failed attempt that may be retried is written ``scheduled``,
due after an exponential backoff: the scheduler sends it again then; the runner moves on at once.
Consecutive tasks of one partition whose names are known to run fast share one start and one
finish round trip (chunks of up to 256), and so do ``async def`` tasks (handed to the event loop
at once, each writes its outcome when it ends); any other task runs in a chunk of its own, so a
task is marked in-progress only when it really starts. The threads take chunks from one queue: a long task
holds its thread only, never the messages behind it.

Whatever one message or one task does is confined to it: a message Redis refuses for good is
dead-lettered with the reason, a task that misbehaves ends ``failed`` with a readable error, and a
message is never dropped. A message is finished in ``worker.inflight`` once its outcome is written
(or it is dead-lettered or skipped); the consume loop commits each partition only that far.
"""

from __future__ import annotations

import logging
import threading
import time

from worker.aio import AsyncLoop
from worker.execute import (
    Interrupt,
    Result,
    TaskCancelled,
    TimeLimitExceeded,
    interrupt_thread,
    log_result,
    run_task,
)
from worker.inflight import InFlight, Track
from worker.messages import CANCELLED as CANCELLED  # re-exported: START's answer
from worker.messages import NOT_ALONE, REFUSED, Job, not_started, validate
from worker.metrics import Metrics
from worker.outbox import Outbox
from worker.outcomes import OutcomeWriter
from worker.procpool import ProcPool, default_size
from worker.starts import Starter
from worker.state import Item, RedisCalls, RunnerStatus, Running, WorkQueue
from worker.suspects import Suspects
from yadtq.broker_types import Record
from yadtq.models import Outcome, TaskState
from yadtq.registry import Registry, TaskSpec
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.worker")
FAST_TASK_SECONDS = 0.005
MAX_CHUNK = 256
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
EXTRA_STARTS = 2
"""Starts beyond ``max_attempts`` a task gets when its earlier attempts never finished because the
worker died or was restarted under it (``deaths``; a start taken over from a worker that still
runs, its partition handed over, is not one); past that it is failed as a task that kills its
worker."""


def backoff(attempt: int, base: float | None = None) -> float:
    """Seconds before retrying after ``attempt`` failed: ``base`` (the ``retry_backoff`` setting,
    else ``RETRY_BASE_SECONDS``) doubled per attempt, at most ``RETRY_MAX_SECONDS`` (or ``base``)."""
    first = RETRY_BASE_SECONDS if base is None else base
    return float(min(max(RETRY_MAX_SECONDS, first), first * 2.0 ** min(attempt - 1, 60)))


class Runner:
    """Runs messages on ``settings.concurrency`` threads. Owns its threads, its queue and
    ``status``; the store, the registry, the outbox and the offsets in flight are handed in."""

    def __init__(self, settings: Settings, registry: Registry, store: RedisStore, outbox: Outbox,
                 worker_id: str, stopping: threading.Event, metrics: Metrics | None = None,
                 inflight: InFlight | None = None) -> None:
        self.settings, self.registry, self.store = settings, registry, store
        self.outbox, self.worker_id, self.stopping = outbox, worker_id, stopping
        self.metrics = metrics or Metrics()
        self.status = RunnerStatus()
        self.redis = RedisCalls(stopping)
        self.inflight = inflight or InFlight()
        self.work = WorkQueue()
        self.threads = [threading.Thread(target=self._loop, name=f"yadtq-runner-{i}", daemon=True)
                        for i in range(settings.concurrency)]
        self.failures = 0
        """Chunks in a row that failed unexpectedly (the consume loop restarts the process)."""
        self._alive, self._alive_at = True, 0.0
        self.aio = AsyncLoop()
        self._ended: list[tuple[Track, Record, Outcome]] = []
        """Outcomes of ``async def`` tasks ended in this turn of the loop (its thread only)."""
        self.procs = ProcPool(registry, default_size(settings.concurrency))
        self.starts = Starter(store, worker_id, self.redis)
        self.suspects = Suspects()
        self.outcomes = OutcomeWriter(store, worker_id, self.redis, self.status, self.metrics, outbox)
        self._seconds: dict[str, float] = {}
        """Average run time per task name: decides which tasks may share a chunk."""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def submit(self, items: list[tuple[Track, Record]]) -> None:
        """Queue delivered messages (validated by the thread that takes them)."""
        self.work.split([(track, rec, False) for track, rec in items])

    def stop(self) -> None:
        """Start nothing more: each thread ends after the messages in its hands."""
        self.work.close()

    def alive(self) -> bool:  # every thread alive: looked at twice a second at most (64 cost)
        now = time.monotonic()
        if now - self._alive_at > 0.5:
            self._alive, self._alive_at = all(t.is_alive() for t in self.threads), now
        return self._alive

    def idle(self) -> bool:
        """Nothing waits and nothing is in a runner thread's hands."""
        with self.status.lock:
            return (self.work.queued == 0 and self.status.active == 0 and not self.status.running
                    and self.status.writing == 0)

    def _loop(self) -> None:
        while True:
            try:
                unit = self.work.get()
            except Interrupt:  # a late interrupt: nothing was running
                continue
            if unit is None:
                return
            with self.status.lock:
                self.status.active += 1
            chunk: list[Item] = []
            try:
                chunk = self._take_chunk(unit)
                if chunk and not self.stopping.is_set():  # else redelivered after we leave
                    self._run_chunk(chunk)
            except BaseException as exc:  # noqa: BLE001 - must not kill the thread: queued again
                self._failed(chunk, exc)
            finally:
                with self.status.lock:
                    self.status.running.pop(threading.get_ident(), None)
                    self.status.active -= 1
                    self.status.progress()

    def _failed(self, chunk: list[Item], exc: BaseException) -> None:
        """Something nobody foresaw failed on ``chunk``: queue its unfinished messages again (the
        consume loop restarts the process after ``RUNNER_FAILURES_BEFORE_RESTART`` in a row)."""
        log.error("runner failed on %d message(s); queueing them again", len(chunk), exc_info=exc)
        self.failures += 1
        self.work.put([it for it in chunk if self.inflight.is_pending(it[0], it[1].offset)])

    # ------------------------------------------------------------------ a unit
    def _take_chunk(self, unit: list[Item]) -> list[Item]:
        """Validate the unit, take its first chunk and queue the rest again (in front: another free
        thread takes it at once, and with one thread the order is kept). A chunk is consecutive
        tasks of one partition known to be fast (one start and one finish round trip for all), or
        else one task alone, so no task shows in-progress while it waits behind a slow one."""
        items, i = unit, 0  # validated as far as the chunk reaches (a unit may be 500 long)
        while i < len(items) and not items[i][0].live:
            i += 1  # not started: the partition's next owner reads it from the committed offset
        if i == len(items):
            return []
        track = items[i][0]
        j = i
        while j < len(items) and j - i < MAX_CHUNK and items[j][0] is track:
            if items[j][2] is False:
                items[j] = (items[j][0], items[j][1], self.validate(items[j][1]))
            if not self._known_fast(items[j][2]):  # type: ignore[arg-type]
                break
            j += 1
        j = max(j, i + 1)
        self.work.put(items[j:], front=True)
        return items[i:j]

    def _known_fast(self, job: Job | None) -> bool:
        if job is None or job[1].fn is None:
            return True  # dead-lettered or failed at once: no time to wait behind
        if job[1].is_async:
            return True  # launched on the event loop: it leaves the thread at once
        seconds = self._seconds.get(job[1].name)
        return seconds is not None and seconds < FAST_TASK_SECONDS

    def validate(self, rec: Record) -> Job | None:
        """The task a record asks for, or None (dead-lettered). Never raises."""
        return validate(rec, self.registry, self.outbox, self.worker_id)

    # ------------------------------------------------------------------ a chunk
    def _run_chunk(self, chunk: list[Item], alone: bool = False) -> None:
        """Start, run and write a chunk (one partition's messages). Started tasks not run because
        the worker is stopping or the partition moved meanwhile are handed back ``queued``. A task
        still in-progress from a start ``SUSPECT_AGE`` old or older, by a worker that is gone, is not
        started but queued again, to run alone (``worker/suspects.py``); from a worker that still
        runs (a hand-over), or a younger one, it is taken over at once."""
        if not alone and len(chunk) == 1 and self.suspects.take(chunk[0]):
            with self.suspects.turn():  # seconds may have passed: still ours?
                if chunk[0][0].live and not self.stopping.is_set():
                    self._run_chunk(chunk, alone=True)
            return
        jobs = [(idx, track, rec, job) for idx, (track, rec, job) in enumerate(chunk) if job]
        started = self.starts.start([job[0] for _, _, _, job in jobs], alone)  # type: ignore[index]
        if started is None:
            return
        attempts, refusals, deaths = started
        outcomes: list[tuple[Record, Outcome]] = []
        launched: set[int] = set()  # chunk indexes of async tasks: finished by their own write
        again: list[int] = []  # chunk indexes of suspects: queued again, each to run alone
        ended = threading.Event() if alone else None
        stop_at: int | None = None  # chunk index of the first record not finished
        for (idx, track, rec, (env, spec)), attempt in zip(jobs, attempts, strict=True):  # type: ignore[misc]
            if attempt == NOT_ALONE:
                self.suspects.add(chunk[idx])
                again.append(idx)
                continue
            if attempt <= 0 or attempt == REFUSED:
                self._not_started(rec, env, attempt, refusals.get(env.id, ""))
                continue
            if (self.stopping.is_set() and idx > 0) or not track.live:
                stop_at = idx
                break
            died = deaths.get(env.id, 0)
            if spec.is_async and self._refusal(env, spec, attempt, died) is None:
                self._launch(rec, track, env, spec, attempt, ended)  # finished once written
                launched.add(idx)
                continue
            outcomes.append((rec, self._execute(rec, track, env, spec, attempt, died)))
        if stop_at is not None:
            # started but not run: hand them back (queued) so the next owner starts them cleanly
            for (idx, _track, rec, (env, _spec)), attempt in zip(jobs, attempts, strict=True):  # type: ignore[misc]
                if idx >= stop_at and attempt > 0:
                    outcomes.append((rec, Outcome(env.id, attempt, TaskState.QUEUED,
                                                  note="handed back (worker stopping or partition moved)")))
        done = [it for idx, it in enumerate(chunk[:len(chunk) if stop_at is None else stop_at])
                if idx not in launched and idx not in again]
        for idx in reversed(again):
            self.work.put([chunk[idx]], front=True)

        def finished() -> None:
            if not again or len(again) < len(jobs):  # only suspects queued again: no success
                self.failures = 0
            for track, rec, _ in done:
                self.inflight.finish(track, rec.offset)

        self.outcomes.write(outcomes, finished, lambda exc: self._failed(chunk, exc))
        if ended is not None and launched:  # a suspect coroutine: the next one waits for it
            ended.wait(self.suspects.alone_seconds)

    def _not_started(self, rec: Record, env: Envelope, code: int, reason: str) -> None:
        not_started(rec, env, code, reason, self.outbox)

    # ------------------------------------------------------------------ one task
    def _refusal(self, env: Envelope, spec: TaskSpec, attempt: int, deaths: int = 0) -> Outcome | None:
        """The outcome of a task that is not run at all (unknown here, or its workers died with it
        too often)."""
        if spec.fn is None:
            self._count(env.name, ok=False)
            return Outcome(env.id, attempt, TaskState.FAILED,
                           error=spec.description or f"unknown task {env.name!r}")
        max_attempts = spec.max_attempts or self.settings.default_max_attempts
        if deaths >= max_attempts + EXTRA_STARTS:
            self._count(env.name, ok=False)
            return Outcome(env.id, attempt, TaskState.FAILED,
                           error=f"started {attempt} times and never finished: its worker died or "
                                 f"was restarted with it in hand {deaths} times; not started again")
        return None

    def _execute(self, rec: Record, track: Track, env: Envelope, spec: TaskSpec,
                 attempt: int, deaths: int = 0) -> Outcome:
        refused = self._refusal(env, spec, attempt, deaths)
        if refused is not None:
            return refused
        limit = spec.time_limit or self.settings.default_time_limit
        return self._outcome(env, spec, attempt, self._call(rec, track, env, spec, attempt, limit))

    def _outcome(self, env: Envelope, spec: TaskSpec, attempt: int, result: Result) -> Outcome:
        max_attempts = spec.max_attempts or self.settings.default_max_attempts
        self._log_result(env, attempt, result)
        if result.cancelled:
            self.metrics.finished(env.name, TaskState.CANCELLED)
            return Outcome(env.id, attempt, TaskState.CANCELLED, error=result.error,
                           note="interrupted on request")
        if result.ok:
            self._count(env.name, ok=True)
            return Outcome(env.id, attempt, TaskState.COMPLETED, result=result.value)
        if not result.retryable or attempt >= max_attempts:
            self._count(env.name, ok=False)
            note = f"after {attempt} attempts" if attempt > 1 else None
            return Outcome(env.id, attempt, TaskState.FAILED, error=result.error, note=note)
        # the retry waits in the due set, not here: the worker moves on at once
        delay = backoff(attempt, self.settings.retry_backoff)
        self.metrics.retried(env.name)
        return Outcome(env.id, attempt, TaskState.SCHEDULED, error=result.error,
                       note=f"retry in {delay:g} s", delay=delay)

    def _call(self, rec: Record, track: Track, env: Envelope, spec: TaskSpec, attempt: int,
              limit: float) -> Result:
        me = threading.current_thread()
        key = me.ident or 0
        with self.status.lock:
            self.status.running[key] = Running(env.id, env.name, attempt, rec, track, key,
                                               lambda kind: interrupt_thread(me, kind),
                                               time.monotonic() + limit, limit)
            self.status.progress()
        started = time.perf_counter()
        try:
            try:
                if spec.isolation == "process":
                    return self.procs.run(spec, env.args)
                return run_task(spec, env.args)
            finally:
                with self.status.lock:
                    self.status.running.pop(key, None)
                    self.status.progress()
        except TimeLimitExceeded:
            return Result(False, error=f"time limit of {limit:g} s exceeded", retryable=True,
                          seconds=limit)
        except TaskCancelled:
            return Result(False, error="cancelled while running", cancelled=True,
                          seconds=time.perf_counter() - started)

    def _launch(self, rec: Record, track: Track, env: Envelope, spec: TaskSpec,
                attempt: int, ended: threading.Event | None = None) -> None:
        """Hand an ``async def`` task to the event loop; the outcome writer's thread writes its
        outcome (the loop never waits for Redis, and no runner thread is woken for it)."""
        limit = spec.time_limit or self.settings.default_time_limit
        key = ("async", env.id, attempt)

        def done(result: Result) -> None:  # on the loop's thread: must not wait for Redis
            with self.status.lock:
                self.status.running.pop(key, None)
            if not self._ended:
                self.aio.after_turn(self._write_ended)
            self._ended.append((track, rec, self._outcome(env, spec, attempt, result)))
            if ended is not None:
                ended.set()

        with self.status.lock:  # before it can end: ``done`` removes it
            running = Running(env.id, env.name, attempt, rec, track, key, lambda kind: None,
                              time.monotonic() + limit, limit)
            self.status.running[key] = running
        running.stop = self.aio.launch(spec, env.args, limit, done)

    def _write_ended(self) -> None:
        """On the loop's thread: hand the outcomes of the coroutines that ended in one turn of the
        loop to the outcome writer together (one post, one wake-up of its thread)."""
        ended, self._ended = self._ended, []

        def finished() -> None:
            for track, rec, _ in ended:
                self.inflight.finish(track, rec.offset)

        self.outcomes.write([(rec, outcome) for _, rec, outcome in ended], finished,
                            lambda exc: self._failed([(t, rec, False) for t, rec, _ in ended], exc),
                            here=False)

    def _count(self, name: str, ok: bool) -> None:
        self.metrics.finished(name, TaskState.COMPLETED if ok else TaskState.FAILED)
        with self.status.lock:
            if ok:
                self.status.done += 1
            else:
                self.status.failed += 1

    def learn(self, name: str, seconds: float) -> None:
        previous = self._seconds.get(name)
        self._seconds[name] = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def _log_result(self, env: Envelope, attempt: int, result: Result) -> None:
        self.learn(env.name, result.seconds)
        self.metrics.attempt(env.name, result.seconds)
        log_result(env, attempt, result, self.settings.log_args)
