"""The live task table: one row per task of the newest page, updated in place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType

from yadtq.models import Task, TaskState
from yadtq_tui.text import format_args, format_duration, format_value, literal
from yadtq_tui.widgets.live_table import LiveTable, Row

STATE_ICONS = {
    TaskState.SCHEDULED: "◷",
    TaskState.QUEUED: "○",
    TaskState.IN_PROGRESS: "▶",
    TaskState.COMPLETED: "✔",
    TaskState.FAILED: "✘",
    TaskState.CANCELLED: "⊘",
}
"""A symbol per state, so states differ even without colour."""
INVALID_LABEL = "⚠ invalid"
"""The state shown for a task whose stored record is malformed (``Task.problem``)."""

COLUMNS = (
    ("id", "ID"),
    ("task", "Task"),
    ("args", "Arguments"),
    ("state", "State"),
    ("outcome", "Result / error"),
    ("worker", "Worker"),
    ("attempt", "Att"),
    ("age", "Age"),
    ("queue", "Queue"),
)

ARGS_WIDTH = 24
OUTCOME_WIDTH = 36
WORKER_WIDTH = 18
QUEUE_WIDTH = 12


def due_text(task: Task, now: float) -> str:
    """``due in 25s`` (or ``due 1s ago`` while the scheduler sends it)."""
    if task.due_at is None:
        return ""
    left = task.due_at - now
    return f"due in {format_duration(left)}" if left >= 0 else f"due {format_duration(-left)} ago"


def state_label(state: TaskState) -> str:
    """``✔ completed``."""
    return f"{STATE_ICONS.get(state, '?')} {state.value}"


def task_state_label(task: Task) -> str:
    """``state_label`` of the task's state, or ``⚠ invalid`` when its record is malformed (its
    state is then a guess)."""
    return INVALID_LABEL if task.problem is not None else state_label(task.state)


class TaskTable(LiveTable):
    """Tasks newest first; each state has its own component class (styled in ``styles.tcss``)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "task-table--scheduled",
        "task-table--queued",
        "task-table--in-progress",
        "task-table--completed",
        "task-table--failed",
        "task-table--cancelled",
        "task-table--invalid",
        "task-table--error",
        "task-table--muted",
        "task-table--name",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "View", show=False,
                tooltip="Open the highlighted task's detail view"),
    ]

    def on_mount(self) -> None:
        """Add the columns."""
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._made: dict[str, tuple[Task, str, tuple[Text, ...]]] = {}
        """Each shown task's cells but its age, with the task and due text they were made from."""
        self._ages: dict[str, Text] = {}
        self._queue_cells: dict[tuple[str, str], Text] = {}
        self._styles: tuple[Style, ...] = ()

    def state_style(self, task: Task) -> str:
        """The component class name for the task's state (``task-table--invalid`` for a
        malformed record)."""
        return "task-table--invalid" if task.problem is not None else f"task-table--{task.state.value}"

    def task_row(self, task: Task, now: float) -> Row:
        """The cells of one task."""
        return task.id, (*self._cells(task, now), self._age(task, now), self._queue(task))

    def _cells(self, task: Task, now: float) -> tuple[Text, ...]:
        """Every cell of ``task`` but its age; made again only when the task (or, for a scheduled
        task, its due text) changed, so an unchanged row costs a comparison, not eight Texts."""
        due = due_text(task, now) if task.state is TaskState.SCHEDULED else ""
        made = self._made.get(task.id)
        if made is not None and made[1] == due and made[0] == task:
            return made[2]
        muted = self.style_of("task-table--muted")
        if task.problem is not None:
            outcome = literal(task.problem, self.style_of("task-table--error"), OUTCOME_WIDTH)
        elif task.state is TaskState.FAILED:
            outcome = literal(task.error or "", self.style_of("task-table--error"), OUTCOME_WIDTH)
        elif task.state is TaskState.COMPLETED:
            outcome = literal(format_value(task.result), "", OUTCOME_WIDTH)
        elif task.state is TaskState.SCHEDULED:  # due in 25s (a retry: after its last error)
            outcome = literal(due + (f" · {task.error}" if task.error else ""), muted,
                              OUTCOME_WIDTH)
        elif task.state is TaskState.CANCELLED:
            outcome = literal(task.error or "cancelled", muted, OUTCOME_WIDTH)
        else:
            outcome = Text("")
        cells = (
            literal(task.short_id, muted),
            literal(task.name, self.style_of("task-table--name"), 16),
            literal(format_args(task.args), "", ARGS_WIDTH),
            literal(task_state_label(task), self.style_of(self.state_style(task))),
            outcome,
            # a queued task (new, or retried) has no worker yet; the last one is in the detail view
            literal("" if task.state in (TaskState.QUEUED, TaskState.SCHEDULED)
                    else task.worker or "", muted,
                    WORKER_WIDTH),
            literal(str(task.attempt)),
        )
        self._made[task.id] = (task, due, cells)
        return cells

    def _queue(self, task: Task) -> Text:
        """The queue's cell (with the priority when not ``normal``: ``emails high``), one per
        queue and level (most tasks share a few)."""
        key = (task.queue, task.priority)
        cell = self._queue_cells.get(key)
        if cell is None:
            text = task.queue if task.priority == "normal" else f"{task.queue} {task.priority}"
            cell = self._queue_cells[key] = literal(
                text, self.style_of("task-table--muted"), QUEUE_WIDTH)
        return cell

    def _age(self, task: Task, now: float) -> Text:
        text = format_duration(task.age(now))
        age = self._ages.get(task.id)
        if age is None or age.plain != text:
            age = self._ages[task.id] = literal(text, self.style_of("task-table--muted"))
        return age

    def show_tasks(self, tasks: Sequence[Task], now: float) -> None:
        """Show ``tasks`` (newest first) as of ``now``."""
        styles = tuple(self.style_of(c) for c in sorted(self.COMPONENT_CLASSES))
        if styles != self._styles:  # a new theme: every cell again
            self._styles = styles
            self._made.clear()
            self._ages.clear()
            self._queue_cells.clear()
        rows = [self.task_row(t, now) for t in tasks]
        if len(self._made) > len(rows):  # forget the tasks that left the page
            shown = {key for key, _ in rows}
            self._made = {k: v for k, v in self._made.items() if k in shown}
            self._ages = {k: v for k, v in self._ages.items() if k in shown}
        self.sync_rows(rows)
