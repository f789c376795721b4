"""The worker-health panel: every known worker, alive, late or dead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from yadtq.models import Task, WorkerInfo, WorkerStatus
from yadtq_tui.text import format_duration, literal
from yadtq_tui.widgets.live_table import LiveTable, Row

STATUS_ICONS = {WorkerStatus.ALIVE: "●", WorkerStatus.LATE: "◐", WorkerStatus.DEAD: "✘"}

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
        dead = worker.status is WorkerStatus.DEAD
        cells = (
            literal(worker.id, status if dead else "", 28),
            literal(worker.host, muted, 20),
            literal(str(worker.pid) if worker.pid else "", muted),
            literal(f"{STATUS_ICONS.get(worker.status, '?')} {worker.status.value}", status),
            literal(current, "", 28),
            literal(str(worker.done)),
            literal(str(worker.failed)),
            literal(format_duration(worker.uptime(now))),
            literal(f"{format_duration(now - worker.last_beat)} ago", muted),
        )
        return worker.id, cells

    def show_workers(self, workers: Sequence[WorkerInfo], now: float,
                     names: Mapping[str, Task]) -> None:
        """Show ``workers`` (alive first, then late, then dead; by id within each)."""
        order = {WorkerStatus.ALIVE: 0, WorkerStatus.LATE: 1, WorkerStatus.DEAD: 2}
        ranked = sorted(workers, key=lambda w: (order.get(w.status, 3), w.id))
        self.sync_rows([self.worker_row(w, now, names) for w in ranked])
