"""The client object: what programs, the CLI and the dashboard use to talk to YADTQ.

    from yadtq import Client
    client = Client()                      # settings from YADTQ_* variables
    task_id = client.submit("ADD", [2, 3])
    client.get(task_id).state              # queued / in-progress / completed / failed / cancelled

Submitting writes the task as ``queued`` in Redis, then sends it to Kafka and waits for the broker's
acknowledgement. If Kafka refuses or cannot be reached, the caller gets ``ServiceUnavailable`` and the
task is marked ``failed`` ("not enqueued"), so nothing is left looking ``queued`` forever.
Tasks submitted with ``wait=False`` are sent at normal interpreter exit even without ``flush()``;
what cannot be sent then is counted in one line on stderr.
"""

from __future__ import annotations

import builtins
import functools
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from yadtq import broker_types, ids
from yadtq import when as _when
from yadtq.batcher import BackgroundSubmitter
from yadtq.batcher import drain_at_exit as _drain_at_exit
from yadtq.broker_types import LagReader, Producer, ProducerFactory, kafka_producer
from yadtq.cancel import CancelResult, Cancels
from yadtq.due import DueSet
from yadtq.enqueue import send_recorded
from yadtq.errors import InvalidTask, ServiceUnavailable, StoreError, TaskNotFound, YadtqError
from yadtq.keys import check_priority
from yadtq.models import Health, RepairStats, Task, TaskState, View, WorkerInfo
from yadtq.registry import Registry, TaskSpec, default_registry
from yadtq.retention import Retention
from yadtq.schedule_store import ScheduleStore
from yadtq.schedules import ScheduleInfo
from yadtq.settings import Settings, redact_url
from yadtq.store import RedisStore
from yadtq.waiting import Finished
from yadtq.wire import Envelope

ASYNC_LINGER_MS = 0
"""Producer linger for ``wait=False`` submits: none; the background submitter batches a burst
itself (``yadtq.batcher.BUSY_LINGER_SECONDS``) and sends a lone task at once."""


class Client:
    """Submit, inspect, retry and reset tasks; list workers; report service health."""

    def __init__(self, settings: Settings | None = None, *, store: RedisStore | None = None,
                 producer_factory: ProducerFactory | None = None,
                 kafka_ping: Callable[[Settings], None] | None = None,
                 offsets_factory: Callable[[Settings], Any] | None = None,
                 registry: Registry | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.store = store or RedisStore(self.settings)
        self._producer_factory = producer_factory or kafka_producer
        self._kafka_ping = kafka_ping or broker_types.kafka_ping
        # the consumer lag is read from the real Kafka only when Kafka itself is not replaced
        factory = offsets_factory or (broker_types.kafka_offsets if kafka_ping is None else None)
        self._lag = LagReader(self.settings, factory) if factory is not None else None
        self._producer: Producer | None = None
        self._async_producer: Producer | None = None
        self._submitter: BackgroundSubmitter | None = None
        self._registry = (registry or default_registry).copy()
        self._unconfirmed_errors: list[tuple[str, Exception]] = []
        self._errors_lock = threading.Lock()
        self._producer_lock = threading.Lock()
        self._cancels: Cancels | None = None
        self._finished: Finished | None = None
        self.due = DueSet(self.store)
        """Tasks scheduled for later (``delay=``/``eta=``)."""

    def describe(self) -> str:
        """Where this client's data lives, for people: ``<key prefix> on <Redis URL>``, the
        password masked (``yadtq on redis://:***@host:6379/0``), or on ``Sentinel <addresses>
        (<service>)``."""
        url = (f"Sentinel {self.settings.redis_sentinels} ({self.settings.redis_service})"
               if self.settings.redis_sentinels else redact_url(self.settings.redis_url))
        return f"{self.settings.key_prefix} on {url}" if url else self.settings.key_prefix

    # ------------------------------------------------------------------ tasks names
    def registry(self, refresh: bool = True) -> Registry:
        """Local tasks plus those that running workers published to Redis."""
        if refresh:
            try:
                for data in self.store.published_specs():
                    try:
                        self._registry.add_spec(TaskSpec.from_public(data))
                    except (KeyError, TypeError, ValueError):
                        continue
            except (ServiceUnavailable, StoreError):
                pass
        return self._registry

    def task_specs(self) -> list[TaskSpec]:
        return self.registry().specs()

    def parse(self, text: str) -> tuple[str, tuple[Any, ...]]:
        """Validate a command line such as ``ADD 2 3``; ``InvalidTask`` says what is wrong."""
        spec, args = self._lookup_registry(lambda reg: reg.parse(text))
        return spec.name, args

    def _lookup_registry(self, fn: Callable[[Registry], tuple[TaskSpec, tuple[Any, ...]]]
                         ) -> tuple[TaskSpec, tuple[Any, ...]]:
        try:
            return fn(self.registry(refresh=False))
        except InvalidTask as exc:
            if not str(exc).startswith("unknown task"):
                raise
        return fn(self.registry(refresh=True))

    # ------------------------------------------------------------------ submit
    def submit(self, name: str, args: Iterable[Any] = (), *, wait: bool = True, delay: Any = None,
               eta: Any = None, queue: str | None = None, priority: str | None = None) -> str:
        """Validate, record and enqueue one task; return its id.

        ``delay`` (seconds, a ``timedelta`` or a text such as ``"5m"``) or ``eta`` (a ``datetime``:
        aware, or naive meaning local time) records it ``scheduled`` instead: the scheduling
        worker sends it to Kafka when it is due. Due now or in the past: enqueued at once.
        ``InvalidTask`` for a negative, non-finite or over-a-year delay. ``queue`` (default: the
        task's own, ``@task(queue=...)``, else ``default``) picks the Kafka topic it goes through:
        only workers started with that queue (``--queues``) run it. ``InvalidTask`` for a name
        that is not a queue name; a queue's topic is created on its first use. ``priority``
        (``high``, ``normal``, ``low``; default: the task's own, ``@task(priority=...)``, else
        ``normal``): workers drain a queue's higher levels first, never starving a lower one for
        long (see the README's "Priorities").

        ``wait=True`` (the default) returns once Kafka acknowledged the task and raises
        ``ServiceUnavailable`` if it did not. ``wait=False`` returns at once with the id; the task
        is recorded and sent in the background within milliseconds, in batches (much faster for
        many single submits). A task Redis or Kafka then refuses is not enqueued (marked failed
        where Redis could be reached) and ``flush()`` raises for it; call ``flush()`` (or
        ``close()``) before relying on the tasks, e.g. before reading one back with ``get``.
        """
        return self.submit_many([(name, args)], wait=wait, delay=delay, eta=eta, queue=queue,
                                priority=priority)[0]

    def submit_text(self, text: str, *, delay: Any = None, eta: Any = None,
                    queue: str | None = None, priority: str | None = None) -> str:
        """Submit a command line such as ``ADD 2 3`` (``delay``/``eta`` as ``submit``; the
        dashboard's ``ADD 2 3 in 30s`` suffix is split off by ``yadtq.when.split_text``)."""
        name, args = self.parse(text)
        return self.submit(name, args, delay=delay, eta=eta, queue=queue, priority=priority)

    def submit_many(self, tasks: Sequence[tuple[str, Iterable[Any]]], *, wait: bool = True,
                    delay: Any = None, eta: Any = None, queue: str | None = None,
                    priority: str | None = None) -> list[str]:
        """Validate every task first (nothing is sent if one is invalid), then send them together
        (or schedule them all for ``delay``/``eta``; ``queue`` as ``submit``)."""
        due = _when.due(delay, eta, self.store.clock())
        try:
            if priority is not None:
                check_priority(priority)
            if queue is not None:
                self.settings.queue_topic(queue)
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
        envelopes = []
        now = self.store.clock()
        for i, (name, args) in enumerate(tasks):
            values_in = tuple(args)
            spec, values = self._lookup_registry(
                functools.partial(_validate, name=name, args=values_in))
            # a microsecond apart: "newest first" lists keep the order they were given in
            envelopes.append(Envelope(uuid.uuid4().hex, spec.name, values, now + i * 1e-6,
                                      spec.queue if queue is None else queue,
                                      spec.priority if priority is None else priority))
        for env in envelopes:
            try:
                env.encode()
            except YadtqError as exc:
                raise InvalidTask(str(exc)) from None
        if not envelopes:
            return []
        if due is not None:  # one Redis script, nothing for Kafka yet: never in the background
            self.due.schedule(envelopes, due.seconds, due.relative)
            return [e.id for e in envelopes]
        if not wait:
            self._background().add(envelopes)
            return [e.id for e in envelopes]
        errors = send_recorded(self.store, self._send, envelopes)
        failed = [(e, err) for e, err in zip(envelopes, errors, strict=True) if err is not None]
        for env, err in failed:
            self._not_enqueued(env.id, err)
        if failed:
            first = failed[0][1]
            if len(envelopes) == 1:
                raise ServiceUnavailable(f"task not enqueued: {first}")
            raise ServiceUnavailable(f"{len(failed)} of {len(envelopes)} tasks not enqueued "
                                     f"(marked failed): {first}")
        return [e.id for e in envelopes]

    def _get_producer(self) -> Producer:
        with self._producer_lock:  # the dashboard submits from worker threads
            if self._producer is None:
                self._producer = self._producer_factory(self.settings)
            return self._producer

    def _background(self) -> BackgroundSubmitter:
        with self._producer_lock:
            if self._submitter is None:
                self._submitter = BackgroundSubmitter(
                    self.store.create, self._send_unconfirmed, self._flush_unconfirmed,
                    self._on_async_error)
                _drain_at_exit(self)
            return self._submitter

    def _send_unconfirmed(self, envelopes: Sequence[Envelope]) -> None:
        with self._producer_lock:
            if self._async_producer is None:
                self._async_producer = self._producer_factory(self.settings,
                                                              linger_ms=ASYNC_LINGER_MS)
        self._async_producer.send_async(envelopes, self._on_async_error)

    def _flush_unconfirmed(self, timeout: float) -> None:
        if self._async_producer is not None:
            self._async_producer.flush(timeout)

    def _on_async_error(self, env: Envelope, err: Exception) -> None:
        self._not_enqueued(env.id, err)
        with self._errors_lock:
            self._unconfirmed_errors.append((env.id, err))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait for every ``wait=False`` submit to be acknowledged; raise if any was not
        (those tasks are marked failed, "not enqueued")."""
        if self._submitter is not None:
            self._submitter.flush(timeout)
        with self._errors_lock:
            errors, self._unconfirmed_errors = self._unconfirmed_errors, []
        if errors:
            raise ServiceUnavailable(f"{len(errors)} tasks not enqueued (marked failed where recorded): "
                                     f"{errors[0][1]}")

    def _send(self, envelopes: Sequence[Envelope],
              meanwhile: Callable[[], None] | None = None) -> list[Exception | None]:
        try:
            return self._get_producer().send(envelopes, meanwhile=meanwhile)
        except ServiceUnavailable as exc:
            return [exc] * len(envelopes)
        except Exception as exc:  # noqa: BLE001 - an injected producer (factory) may raise anything
            return [ServiceUnavailable(f"Kafka: {type(exc).__name__}: {exc}")] * len(envelopes)

    def _not_enqueued(self, task_id: str, err: Exception) -> None:
        try:
            self.store.transition(task_id, TaskState.QUEUED, TaskState.FAILED,
                                  note="not enqueued", error=f"not enqueued: {err}", attempt=0)
        except (ServiceUnavailable, StoreError):
            pass  # Redis went away or refused; the record says queued until the reconciler sees it

    # ------------------------------------------------------------------ read
    def get(self, task_id: str) -> Task:
        task_id = ids.check(task_id)
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return task

    def expand_id(self, text: str) -> str:
        """The full id a person typed (``yadtq.ids.expand``): the id, or a unique prefix of one."""
        return ids.expand(self.store.ids_starting, text)

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until the task is completed, failed or cancelled, and return it (woken by the
        worker's announcement, ``yadtq.waiting``). ``TimeoutError`` after ``timeout`` seconds."""
        with self._producer_lock:
            if self._finished is None:
                self._finished = Finished(self.store)
        return self._finished.wait(ids.check(task_id), timeout)

    def list(self, state: TaskState | None = None, limit: int = 50, offset: int = 0, *,
             history: bool = True) -> list[Task]:
        """Newest first, one page (``history=False``: without each task's history, cheaper)."""
        return self.store.list(state, limit, offset, history=history)

    def counts(self) -> dict[TaskState, int]:
        return self.store.counts()

    def total(self, state: TaskState | None = None) -> int:
        return self.store.total(state)

    def finished_per_second(self, seconds: int = 60) -> builtins.list[int]:
        return self.store.finished_per_second(seconds)

    def workers(self) -> builtins.list[WorkerInfo]:
        return self.store.workers(late_after=self.settings.heartbeat_interval * 2)

    def view(self, state: TaskState | None = None, limit: int = 50, seconds: int = 60) -> View:
        """A dashboard's refresh in one round trip: the newest ``limit`` tasks (without history),
        the counts, tasks finished per second over ``seconds``, the workers and the repairs."""
        return self.store.view(state, limit, seconds, late_after=self.settings.heartbeat_interval * 2)

    def repairs(self) -> RepairStats:
        """What the workers' reconciler repaired so far (re-sent and re-queued tasks)."""
        return self.store.repairs()

    def schedules(self) -> builtins.list[ScheduleInfo]:
        """The periodic schedules the workers published, with their next and last run (a
        malformed entry is listed with ``problem`` set)."""
        return ScheduleStore(self.store).infos()

    # ------------------------------------------------------------------ change
    def retry(self, task_id: str) -> str:
        """Run a failed task again: a new attempt of the same task (same id), queued at once."""
        task = self.get(task_id)
        if task.state is not TaskState.FAILED:
            raise InvalidTask(f"only failed tasks can be retried; task {task.short_id} is {task.state}")
        if self.registry(refresh=False).get(task.name) is None:
            self.registry(refresh=True)
        moved = self.store.transition(task.id, TaskState.FAILED, TaskState.QUEUED,
                                      note="retry requested")
        if moved != 1:
            raise InvalidTask(f"task {task.short_id} changed meanwhile; not retried")
        err = self._send([Envelope(task.id, task.name, task.args, task.created_at, task.queue,
                                   task.priority)])[0]
        if err is not None:
            self.store.transition(task.id, TaskState.QUEUED, TaskState.FAILED,
                                  note="retry not enqueued", error=f"not enqueued: {err}")
            raise ServiceUnavailable(f"retry not enqueued: {err}")
        return task.id

    def cancel(self, task_id: str) -> CancelResult:
        """Cancel a task. A queued (or scheduled) one is ``cancelled`` at once and never starts;
        a running one is interrupted by its worker within about a second and ends ``cancelled``
        (``CancelResult.running``), never retried. Raises ``TaskNotFound`` for an unknown id and
        ``TaskFinished`` for a task already completed, failed or cancelled (nothing changes)."""
        task_id = ids.check(task_id)
        if self._cancels is None:
            self._cancels = Cancels(self.store)
        return self._cancels.cancel(task_id)

    def reset(self) -> int:
        """Delete every YADTQ task (this key prefix only, never the whole database). Returns how many."""
        return self.store.reset()

    def purge(self, older_than: float, state: TaskState | None = None) -> int:
        """Delete finished tasks (every final state, or ``state``, which must be final) that
        finished more than ``older_than`` seconds ago, with their index entries and counts (this
        key prefix only). Returns how many. Tasks not finished are never touched."""
        return Retention(self.store).purge(older_than, None if state is None else [state])

    # ------------------------------------------------------------------ health
    def health(self) -> Health:
        redis_error = kafka_error = None
        try:
            self.store.ping()
        except (ServiceUnavailable, StoreError) as exc:
            redis_error = str(exc)
        try:
            self._kafka_ping(self.settings)
        except ServiceUnavailable as exc:
            kafka_error = str(exc)
        queues = self.queue_lag() if kafka_error is None else None
        return Health(redis_error is None, kafka_error is None, redis_error, kafka_error,
                      None if queues is None else sum(queues.values()),
                      tuple(sorted((queues or {}).items())))

    def lag(self) -> int | None:
        """Messages of the tasks topics (every queue's) that the workers' group has not
        committed yet, over all partitions (a partition never committed counts whole); None
        when Kafka cannot say."""
        queues = self.queue_lag()
        return None if queues is None else sum(queues.values())

    def queue_lag(self) -> dict[str, int] | None:
        """``lag`` per queue (every queue whose topic exists); None when Kafka cannot say."""
        if self._lag is None:
            return None
        try:
            return self._lag.by_queue()
        except YadtqError:
            return None

    def close(self) -> None:
        """Flush unconfirmed submits (raising if some failed) and close the producers."""
        try:
            if self._submitter is not None:
                self._submitter.close()
            self.flush()
        finally:
            self._submitter = None
            for producer in (self._producer, self._async_producer):
                if producer is not None:
                    producer.close()
            self._producer = self._async_producer = None
            if self._lag is not None:
                self._lag.close()
            if self._finished is not None:
                self._finished.close()


def _validate(registry: Registry, name: str, args: tuple[Any, ...]) -> tuple[TaskSpec, tuple[Any, ...]]:
    return registry.validate(name, args)
