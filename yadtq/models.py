"""The task and worker model: frozen dataclasses and ``str`` enums, no I/O."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from yadtq.keys import DEFAULT_PRIORITY, DEFAULT_QUEUE

JSONValue = Any
"""A value that survives ``json.dumps``/``json.loads`` unchanged (numbers, strings, lists, ...)."""


class TaskState(StrEnum):
    """Where a task is in its life. ``completed``, ``failed`` and ``cancelled`` are final.
    ``scheduled``: waiting for its due time (a delay, an ETA or a retry's backoff) in the due set,
    not yet on Kafka. ``cancelled``: cancelled on request (``Client.cancel``) before it started, or
    interrupted while it ran; never retried."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES: frozenset[TaskState] = frozenset({TaskState.COMPLETED, TaskState.FAILED,
                                                TaskState.CANCELLED})
"""The states a task never leaves (but for ``retry`` of a failed one)."""

STATES: tuple[TaskState, ...] = (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.IN_PROGRESS,
                                 TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)
"""Every state, in the order of a task's life (the order of counters and filters)."""


class WorkerStatus(StrEnum):
    """A worker's health, derived from its heartbeat: ``dead`` when the heartbeat key expired,
    ``stalled`` when it is fresh but says the runner makes no progress, ``late`` when it is old."""

    ALIVE = "alive"
    LATE = "late"
    STALLED = "stalled"
    DEAD = "dead"


@dataclass(frozen=True)
class HistoryEntry:
    """One state change: what, when (epoch seconds), by which worker, in which attempt."""

    state: TaskState
    at: float
    worker: str | None = None
    attempt: int = 0
    note: str | None = None


@dataclass(frozen=True)
class Task:
    """A task as stored in Redis."""

    id: str
    name: str
    args: tuple[JSONValue, ...]
    state: TaskState = TaskState.QUEUED
    result: JSONValue = None
    error: str | None = None
    attempt: int = 0
    worker: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    history: tuple[HistoryEntry, ...] = ()
    due_at: float | None = None
    """When a ``scheduled`` task is due (epoch seconds); kept after it ran (None: never delayed)."""
    queue: str = DEFAULT_QUEUE
    """The named queue it goes through (``yadtq.keys.queue_topic``): its Kafka topic."""
    priority: str = DEFAULT_PRIORITY
    """``high``, ``normal`` or ``low``: a topic of its own per queue, drained in that order."""
    problem: str | None = None
    """What is wrong with the stored record (a missing or ill-typed field, bad JSON, bytes that
    are not UTF-8), or None. A task with a problem keeps its id; its other fields are best effort."""

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.created_at)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as seen through its heartbeat."""

    id: str
    host: str
    pid: int
    status: WorkerStatus
    last_beat: float
    started_at: float
    current_task: str | None = None
    done: int = 0
    failed: int = 0
    partitions: tuple[int, ...] = ()
    """Partitions assigned to this worker now, as its consumer's slots
    (``yadtq.broker_types.SLOT_STRIDE``): for its first queue at ``normal`` priority, the topic's own
    partition numbers."""
    stalled: str | None = None
    """Why the worker's runner makes no progress (status ``stalled``), from its heartbeat."""
    beat_age: float | None = None
    """Seconds since its last beat when the listing was read, on Redis's clock: a live worker's by
    its heartbeat key's TTL, a dead one's by the time Redis recorded its last beat; for a live
    worker of an older version (no ``ttl_ms``) by the reader's clock."""

    def since_beat(self, now: float | None = None) -> float:
        """Seconds since its last beat now: from ``beat_age`` when known (the viewer's and the
        worker's clocks need not agree), else from the viewer's clock."""
        if self.beat_age is not None:
            return self.beat_age
        return max(0.0, (now or time.time()) - self.last_beat)

    def uptime(self, now: float | None = None) -> float:
        """How long it has run (a dead worker: until its last beat). Both ends of
        ``last_beat - started_at`` come from the worker's own clock."""
        if self.status is WorkerStatus.DEAD:
            return max(0.0, self.last_beat - self.started_at)
        return max(0.0, self.last_beat - self.started_at + self.since_beat(now))


@dataclass(frozen=True)
class Health:
    """Whether the client can reach each service right now, and why not."""

    redis_ok: bool
    kafka_ok: bool
    redis_error: str | None = None
    kafka_error: str | None = None
    lag: int | None = None
    """Messages of the tasks topics that the workers' group has not committed yet, over all
    partitions of every queue (None: not known, e.g. Kafka unreachable)."""
    queue_lag: tuple[tuple[str, int], ...] = ()
    """The same per queue, by queue name (empty when not known)."""


@dataclass(frozen=True)
class RepairStats:
    """What the reconciler repaired, over all its rounds (the ``repairs`` hash)."""

    runs: int = 0
    resent_queued: int = 0
    """Tasks ``queued`` with no message behind them, sent again."""
    requeued_in_progress: int = 0
    """Tasks ``in-progress`` on a dead worker, put back to ``queued`` and sent again."""
    last_run_at: float | None = None
    last_leader: str | None = None
    """The worker that ran the last round."""
    last_repaired: int = 0
    """Tasks repaired by the last round."""


@dataclass(frozen=True)
class View:
    """One dashboard refresh's data (``RedisStore.view``)."""

    tasks: list[Task]
    counts: dict[TaskState, int]
    throughput: list[int]
    """Tasks finished in each of the last seconds, oldest first."""
    workers: list[WorkerInfo]
    repairs: RepairStats = field(default_factory=RepairStats)


@dataclass(frozen=True)
class Outcome:
    """The end of one attempt, to be written with a compare-and-set on the attempt."""

    task_id: str
    attempt: int
    state: TaskState
    result: Any = None
    error: str | None = None
    note: str | None = None
    delay: float = 0.0
    """For a ``scheduled`` outcome (a retry): seconds from now (Redis's clock) until it is due."""


@dataclass(frozen=True)
class Beat:
    """One worker heartbeat."""

    worker_id: str
    host: str
    pid: int
    started_at: float
    current_task: str | None
    done: int
    failed: int
    partitions: tuple[int, ...] = ()
    stalled: str = ""
    """Why the runner makes no progress (the worker shows as ``stalled``); empty when it is fine."""
    progress_at: float = 0.0
    """When the runner last made progress (epoch seconds)."""
