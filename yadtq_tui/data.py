"""What the dashboard reads from YADTQ, as plain data. No Textual import.

The dashboard talks to one injected service object (``DashboardService``; a ``yadtq.Client`` is
one). ``refresh`` makes every read of one refresh and returns an
immutable ``Snapshot`` (or why it could not), ``read_task`` reads one task; both block and run in
thread workers, never on the UI thread. ``Services`` tracks what the health checks said.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Protocol

from yadtq.cancel import CancelResult
from yadtq.errors import InvalidTask, ServiceUnavailable, StoreError, TaskNotFound
from yadtq.models import (
    STATES,
    Health,
    RepairStats,
    Task,
    TaskState,
    View,
    WorkerInfo,
    WorkerStatus,
)
from yadtq.registry import TaskSpec
from yadtq.schedules import ScheduleInfo
from yadtq.text import format_count

Clock = Callable[[], float]
"""Returns the current time in epoch seconds (``time.time``; tests inject a fixed clock)."""

FILTER_CYCLE: tuple[TaskState | None, ...] = (None, *STATES)
"""The task table's filter cycles all -> each state in ``STATES`` order -> all."""

QUEUE_SCAN = 1000
"""With a queue filter, the table shows the tasks of that queue among this many newest tasks
(of the state filter): tasks are indexed by state, not by queue."""
THROUGHPUT_SECONDS = 60
"""The sparkline covers the last minute, one bar per second."""
RATE_WINDOW = 10
"""The rate shown next to the sparkline averages the last ten seconds."""


class DashboardService(Protocol):
    """Every call the dashboard makes, and nothing else.

    ``describe`` only formats settings; every other method may block and may raise
    ``yadtq.errors.ServiceUnavailable`` (a service cannot be reached) or
    ``yadtq.errors.StoreError`` (Redis refused the request) (``parse``, ``submit``, ``expand_id``,
    ``retry`` and ``cancel`` also ``yadtq.errors.InvalidTask``, ``get``, ``expand_id``, ``retry`` and
    ``cancel`` ``yadtq.errors.TaskNotFound``, ``cancel`` ``yadtq.errors.TaskFinished``); the dashboard calls
    them from thread workers only. ``health`` never raises: it says which service is down.
    """

    def describe(self) -> str:
        """Where the data lives, for people (``yadtq on redis://host:6379/0``, no password)."""
        ...

    def parse(self, text: str) -> tuple[str, tuple[Any, ...]]:
        """A typed command line as a task name and validated arguments."""
        ...

    def submit(self, name: str, args: Iterable[Any] = (), *, delay: Any = None,
               eta: Any = None) -> str:
        """Record and enqueue one task; its id once Kafka has it. With ``delay`` (seconds or a
        text such as ``30s``) or ``eta``: recorded ``scheduled``, sent when due."""
        ...

    def get(self, task_id: str) -> Task:
        """One task with its history."""
        ...

    def expand_id(self, text: str) -> str:
        """The full id for what was typed: the id, or a unique prefix of one found in Redis
        (``InvalidTask`` if too short or shared, ``TaskNotFound`` if no id starts with it)."""
        ...

    def view(self, state: TaskState | None = None, limit: int = 50, seconds: int = 60) -> View:
        """One refresh's data: newest tasks, counts, throughput, workers."""
        ...

    def retry(self, task_id: str) -> str:
        """Queue a failed task again (a new attempt, same id)."""
        ...

    def cancel(self, task_id: str) -> CancelResult:
        """Cancel a queued, scheduled or running task."""
        ...

    def reset(self) -> int:
        """Delete every task; how many there were."""
        ...

    def health(self) -> Health:
        """Whether Redis and Kafka answer, each with its own error, and the consumer lag."""
        ...

    def task_specs(self) -> builtins.list[TaskSpec]:
        """The known tasks (the local ones when Redis is unreachable)."""
        ...

    def schedules(self) -> builtins.list[ScheduleInfo]:
        """The periodic schedules the workers published (malformed ones with ``problem``)."""
        ...


@dataclass(frozen=True)
class Snapshot:
    """Everything one refresh of the dashboard shows."""

    state_filter: TaskState | None
    """The filter the tasks were listed with (None = all states)."""
    tasks: tuple[Task, ...]
    """The newest tasks (of ``state_filter``), newest first: one page, never everything."""
    counts: Mapping[TaskState, int]
    """Tasks per state, from the counters."""
    throughput: tuple[int, ...]
    """Tasks finished in each of the last ``THROUGHPUT_SECONDS`` seconds, oldest first."""
    workers: tuple[WorkerInfo, ...]
    """Every known worker, alive, stalled, late or dead."""
    specs: tuple[TaskSpec, ...] | None
    """The known tasks, when this refresh read them (they change rarely), else None."""
    fetch_seconds: float = 0.0
    """How long the reads took."""
    repairs: RepairStats = RepairStats()
    """What the workers' reconciler repaired so far."""
    queue_filter: str | None = None
    """The queue the tasks were filtered by (None = every queue)."""

    @property
    def total(self) -> int:
        """Tasks in every state."""
        return sum(self.counts.values())

    @property
    def matching(self) -> int:
        """Tasks that match the filter (the table shows at most one page of them)."""
        if self.state_filter is None:
            return self.total
        return self.counts.get(self.state_filter, 0)

    @property
    def rate(self) -> float:
        """Tasks finished per second over the last ``RATE_WINDOW`` seconds."""
        return rate(self.throughput)

    def worker_counts(self) -> dict[WorkerStatus, int]:
        """Workers per status."""
        out = dict.fromkeys(WorkerStatus, 0)
        for w in self.workers:
            out[w.status] += 1
        return out


@dataclass(frozen=True)
class RefreshFailed:
    """A refresh that could not read its data."""

    error: str
    """Why (the service's own words)."""
    specs: tuple[TaskSpec, ...] | None
    """The known tasks, when the refresh was to read them (the local ones work without Redis)."""


@dataclass(frozen=True)
class TaskRead:
    """One task as read for the detail view or the id prompt, or why it could not be read."""

    task: Task | None
    error: str | None = None
    not_found: bool = False
    """True when the service answered but has no such task."""


def fetch_snapshot(service: DashboardService, state_filter: TaskState | None, limit: int, *,
                   with_specs: bool = False, queue: str | None = None) -> Snapshot:
    """Read one refresh's data (blocking; raises ``ServiceUnavailable``); with ``queue``, the
    newest ``limit`` tasks of that queue among the newest ``QUEUE_SCAN``."""
    started = time.perf_counter()
    view = service.view(state_filter, limit=limit if queue is None else max(limit, QUEUE_SCAN),
                        seconds=THROUGHPUT_SECONDS)
    tasks = tuple(view.tasks) if queue is None else \
        tuple(t for t in view.tasks if t.queue == queue)[:limit]
    specs = tuple(service.task_specs()) if with_specs else None
    return Snapshot(state_filter, tasks, view.counts, tuple(view.throughput),
                    tuple(view.workers), specs, time.perf_counter() - started, view.repairs, queue)


def refresh(service: DashboardService, state_filter: TaskState | None, limit: int, *,
            with_specs: bool = False, queue: str | None = None) -> Snapshot | RefreshFailed:
    """``fetch_snapshot``, or why it failed (blocking; never raises ``ServiceUnavailable`` or
    ``StoreError``)."""
    try:
        return fetch_snapshot(service, state_filter, limit, with_specs=with_specs, queue=queue)
    except (ServiceUnavailable, StoreError) as exc:
        return RefreshFailed(str(exc), tuple(service.task_specs()) if with_specs else None)


def read_task(service: DashboardService, task_id: str) -> TaskRead:
    """Read one task, given its id or a unique prefix of one (blocking; never raises
    ``ServiceUnavailable``, ``StoreError``, ``InvalidTask`` or ``TaskNotFound``)."""
    try:
        return TaskRead(service.get(service.expand_id(task_id)))
    except (TaskNotFound, InvalidTask) as exc:
        return TaskRead(None, str(exc), not_found=True)
    except (ServiceUnavailable, StoreError) as exc:
        return TaskRead(None, str(exc))


@dataclass(frozen=True)
class SchedulesRead:
    """The periodic schedules as read for the schedules screen, or why they could not be."""

    schedules: tuple[ScheduleInfo, ...] | None
    error: str | None = None


def read_schedules(service: DashboardService) -> SchedulesRead:
    """Read the schedules (blocking; never raises ``ServiceUnavailable`` or ``StoreError``)."""
    try:
        return SchedulesRead(tuple(service.schedules()))
    except (ServiceUnavailable, StoreError) as exc:
        return SchedulesRead(None, str(exc))


def next_filter(current: TaskState | None) -> TaskState | None:
    """The filter after ``current`` in ``FILTER_CYCLE``."""
    index = FILTER_CYCLE.index(current) if current in FILTER_CYCLE else 0
    return FILTER_CYCLE[(index + 1) % len(FILTER_CYCLE)]


def next_queue(current: str | None, known: Iterable[str]) -> str | None:
    """The queue filter after ``current``: every queue (None) -> each known queue, sorted -> None."""
    cycle: list[str | None] = [None, *sorted(set(known))]
    index = cycle.index(current) if current in cycle else 0
    return cycle[(index + 1) % len(cycle)]


def tasks_title(snap: Snapshot | None, state_filter: TaskState | None,
                queue_filter: str | None) -> str:
    """The task table's title: ``Tasks · failed · queue emails · newest 3 of 40``."""
    text = f"Tasks · {state_filter.value if state_filter else 'all states'}"
    if queue_filter is not None:
        text += f" · queue {queue_filter}"
        if snap is not None and snap.tasks:
            text += f" · newest {len(snap.tasks)}"
    elif snap is not None and snap.matching:
        text += f" · newest {len(snap.tasks)} of {format_count(snap.matching)}"
    return text + "   (f: filter, u: queue)"


def empty_text(snap: Snapshot) -> str:
    """What the empty task table says."""
    if snap.queue_filter is not None:
        return (f"No {snap.state_filter.value + ' ' if snap.state_filter else ''}tasks of queue "
                f"{snap.queue_filter} among the newest {format_count(QUEUE_SCAN)}. "
                "Press u for the next queue.")
    if snap.state_filter is None:
        return "No tasks yet: type one above, e.g. ADD 2 3, and press Enter."
    return (f"No {snap.state_filter.value} tasks (of {format_count(snap.total)} in all). "
            "Press f for the next filter.")


def rate(throughput: Sequence[int], window: int = RATE_WINDOW) -> float:
    """Average per second over the last ``window`` entries."""
    recent = list(throughput)[-window:]
    return sum(recent) / window if recent else 0.0


def resolve_id(typed: str, known: Iterable[str]) -> str:
    """A full task id for ``typed``: itself, or the one id among ``known`` it is a prefix of.

    Lets people type the 8-character short id shown in the table; anything else is returned as typed
    (stripped and lower-cased) for ``read_task`` to expand from Redis (a task not on the page), find
    or refuse.
    """
    want = typed.strip().lower()
    if not want or len(want) >= 32:
        return want
    matches = [k for k in known if k.startswith(want)]
    return matches[0] if len(matches) == 1 else want


@dataclass(frozen=True)
class Context:
    """What every screen of the dashboard is given: the service and how to run."""

    service: DashboardService
    """The injected service object (a ``yadtq.Client``)."""
    clock: Clock = time.time
    """The time used for ages and uptimes."""
    tz: tzinfo | None = None
    """The ``tzinfo`` timestamps are shown in (None = local time)."""
    poll_interval: float = 0.5
    """Seconds between the end of one refresh and the start of the next."""
    health_interval: float = 2.0
    """Seconds between the end of one Redis/Kafka health check and the next."""
    page_size: int = 100
    """How many of the newest tasks the table shows."""
    target: str = ""
    """Where the data lives, for the reset dialog (``yadtq on redis://host:6379/0``)."""


@dataclass
class Services:
    """What the dashboard knows about Redis and Kafka, and about its own refreshes.

    Only health checks say which service is down (``check``); a failed refresh is recorded apart
    (``refresh_failed``), since a read can fail while both services answer a ping.
    """

    redis_error: str | None = None
    """Why the last health check could not reach Redis (None: reachable or not checked yet)."""
    kafka_error: str | None = None
    """Why the last health check could not reach Kafka."""
    redis_up: bool | None = None
    """Redis answered the last health check (None: no check yet)."""
    kafka_up: bool | None = None
    """Kafka answered the last health check."""
    refresh_error: str | None = None
    """Why the last refresh failed (None: it worked)."""

    def check(self, health: Health) -> tuple[list[str], bool]:
        """Record a health check: the names of the services that came back, and whether
        anything shown changed."""
        back = [name for name, before, now in (("Redis", self.redis_error, health.redis_ok),
                                               ("Kafka", self.kafka_error, health.kafka_ok))
                if before is not None and now]
        before = (self.redis_up, self.kafka_up, self.redis_error, self.kafka_error)
        self.redis_up, self.kafka_up = health.redis_ok, health.kafka_ok
        self.redis_error = None if health.redis_ok else health.redis_error or "unreachable"
        self.kafka_error = None if health.kafka_ok else health.kafka_error or "unreachable"
        return back, before != (self.redis_up, self.kafka_up, self.redis_error, self.kafka_error)

    def refresh_failed(self, error: str | None) -> bool:
        """Record a refresh's outcome (None: it worked); True when that is a change."""
        changed = (error is None) != (self.refresh_error is None)
        self.refresh_error = error
        return changed

    def refused(self) -> str | None:
        """Why a submit or retry would fail now (the first unreachable service), or None."""
        if self.redis_error is not None:
            return "Redis is unreachable"
        if self.kafka_error is not None:
            return "Kafka is unreachable"
        return None
