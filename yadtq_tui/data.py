"""What the dashboard reads from YADTQ, as plain data. No Textual import.

The dashboard talks to one injected service object (``yadtq.Client`` or anything with the
same methods, see ``DashboardService``); ``fetch_snapshot`` makes every read of one refresh and
returns an immutable ``Snapshot``. It runs in a thread worker, never on the UI thread.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Protocol

from yadtq.models import Health, Task, TaskState, View, WorkerInfo, WorkerStatus
from yadtq.registry import TaskSpec

Clock = Callable[[], float]
"""Returns the current time in epoch seconds (``time.time``; tests inject a fixed clock)."""

STATES: tuple[TaskState, ...] = (TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED,
                                 TaskState.FAILED)
FILTER_CYCLE: tuple[TaskState | None, ...] = (None, *STATES)
"""The task table's filter cycles all -> queued -> in-progress -> completed -> failed -> all."""

THROUGHPUT_SECONDS = 60
"""The sparkline covers the last minute, one bar per second."""
RATE_WINDOW = 10
"""The rate shown next to the sparkline averages the last ten seconds."""


class DashboardService(Protocol):
    """The part of ``yadtq.Client`` the dashboard uses. Every method may block and may raise
    ``yadtq.errors.ServiceUnavailable``; the dashboard calls them from thread workers only."""

    def parse(self, text: str) -> tuple[str, tuple[Any, ...]]: ...
    def submit(self, name: str, args: Iterable[Any] = ()) -> str: ...
    def get(self, task_id: str) -> Task: ...
    def view(self, state: TaskState | None = None, limit: int = 50, seconds: int = 60) -> View: ...
    def retry(self, task_id: str) -> str: ...
    def reset(self) -> int: ...
    def health(self) -> Health: ...
    def task_specs(self) -> builtins.list[TaskSpec]: ...
    def close(self) -> None: ...


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
    """Every known worker, alive, late or dead."""
    specs: tuple[TaskSpec, ...] | None
    """The known tasks, when this refresh read them (they change rarely), else None."""
    fetch_seconds: float = 0.0
    """How long the reads took."""

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


def fetch_snapshot(service: DashboardService, state_filter: TaskState | None, limit: int, *,
                   with_specs: bool = False) -> Snapshot:
    """Read one refresh's data (blocking; raises ``ServiceUnavailable``)."""
    started = time.perf_counter()
    view = service.view(state_filter, limit=limit, seconds=THROUGHPUT_SECONDS)
    specs = tuple(service.task_specs()) if with_specs else None
    return Snapshot(state_filter, tuple(view.tasks), view.counts, tuple(view.throughput),
                    tuple(view.workers), specs, time.perf_counter() - started)


def next_filter(current: TaskState | None) -> TaskState | None:
    """The filter after ``current`` in ``FILTER_CYCLE``."""
    index = FILTER_CYCLE.index(current) if current in FILTER_CYCLE else 0
    return FILTER_CYCLE[(index + 1) % len(FILTER_CYCLE)]


def rate(throughput: Sequence[int], window: int = RATE_WINDOW) -> float:
    """Average per second over the last ``window`` entries."""
    recent = list(throughput)[-window:]
    return sum(recent) / window if recent else 0.0


def resolve_id(typed: str, known: Iterable[str]) -> str:
    """A full task id for ``typed``: itself, or the one id among ``known`` it is a prefix of.

    Lets people type the 8-character short id shown in the table; anything else is returned as typed
    (stripped and lower-cased) for ``Client.get`` to find or refuse.
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
