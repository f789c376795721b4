"""The worker-health panel: every known worker, alive, stalled, late or dead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from yadtq.models import Task, WorkerInfo, WorkerStatus
from yadtq_tui.text import format_duration, literal
from yadtq_tui.widgets.live_table import LiveTable, Row

STATUS_ICONS = {WorkerStatus.ALIVE: "●", WorkerStatus.STALLED: "⊘", WorkerStatus.LATE: "◐",
                WorkerStatus.DEAD: "✘"}
"""A symbol per status, so statuses differ even without colour."""
STATUS_ORDER = (WorkerStatus.ALIVE, WorkerStatus.STALLED, WorkerStatus.LATE, WorkerStatus.DEAD)
"""The panel's order: working, then the ones that need a look (stalled, late), then dead."""

COLUMNS = (
    ("worker", "Worker"),
    ("host", "Host"),
    ("pid", "PID"),
    ("status", "Status"),
    ("current", "Current task"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("uptime", "Uptime"),
    ("beat", "Last beat"),
)


class WorkerPanel(LiveTable):
    """One row per worker; its status has its own component class (styled in ``styles.tcss``)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "worker-panel--alive",
        "worker-panel--stalled",
        "worker-panel--late",
        "worker-panel--dead",
        "worker-panel--muted",
    }

    def on_mount(self) -> None:
        """Add the columns."""
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def worker_row(self, worker: WorkerInfo, now: float, names: Mapping[str, Task]) -> Row:
        """The cells of one worker; ``names`` maps task ids to known tasks (for the task's name)."""
        muted = self.style_of("worker-panel--muted")
        status = self.style_of(f"worker-panel--{worker.status.value}")
        current = ""
        if worker.current_task:
            task = names.get(worker.current_task)
            current = worker.current_task[:8] + (f" {task.name}" if task else "")
        elif worker.status is WorkerStatus.STALLED:
            current = stalled_reason(worker)  # e.g. the runner thread ended: no task to name
        dead = worker.status is WorkerStatus.DEAD
        cells = (
            literal(worker.id, status if dead else "", 28),
            literal(worker.host, muted, 20),
            literal(str(worker.pid) if worker.pid else "", muted),
            literal(f"{STATUS_ICONS.get(worker.status, '?')} {worker.status.value}", status),
            literal(current, status if worker.status is WorkerStatus.STALLED else "", 28),
            literal(str(worker.done)),
            literal(str(worker.failed)),
            literal(format_duration(worker.uptime(now))),
            literal(f"{format_duration(worker.since_beat(now))} ago", muted),
        )
        return worker.id, cells

    def show_workers(self, workers: Sequence[WorkerInfo], now: float,
                     names: Mapping[str, Task]) -> None:
        """Show ``workers`` in ``STATUS_ORDER``, by id within each status."""
        order = {status: i for i, status in enumerate(STATUS_ORDER)}
        ranked = sorted(workers, key=lambda w: (order.get(w.status, len(order)), w.id))
        self.sync_rows([self.worker_row(w, now, names) for w in ranked])


def stalled_reason(worker: WorkerInfo) -> str:
    """Why ``worker`` is stalled, with its current task's id shortened to the 8 characters the
    tables show (the reason is the worker's own words, e.g. "task <id> (ADD) is 40 s over its
    time limit of 10 s and has not stopped")."""
    reason = worker.stalled or "no reason given"
    if worker.current_task:
        reason = reason.replace(worker.current_task, worker.current_task[:8])
    return reason


def stalled_notes(workers: Sequence[WorkerInfo]) -> list[str]:
    """One line per stalled worker, by id: ``⊘ <worker> stalled: <reason>``."""
    return [f"{STATUS_ICONS[WorkerStatus.STALLED]} {w.id} stalled: {stalled_reason(w)}"
            for w in sorted(workers, key=lambda w: w.id) if w.status is WorkerStatus.STALLED]
