"""The body of the detail view: every field of one task and its whole history."""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from yadtq.models import Task, TaskState
from yadtq_tui.text import format_args, format_duration, format_time, format_value, literal
from yadtq_tui.widgets.task_table import due_text, state_label, task_state_label


class TaskDetail(Static):
    """Fields, then a table of history entries; every value is literal text."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "task-detail--label",
        "task-detail--scheduled",
        "task-detail--queued",
        "task-detail--in-progress",
        "task-detail--completed",
        "task-detail--failed",
        "task-detail--cancelled",
        "task-detail--invalid",
        "task-detail--error",
        "task-detail--muted",
    }

    def _style(self, name: str) -> str:
        return str(self.get_component_rich_style(f"task-detail--{name}", partial=True))

    def show_task(self, task: Task, now: float, tz: tzinfo | None = None) -> None:
        """Render ``task`` as of ``now``; timestamps in ``tz``."""
        self.update(self.render_task(task, now, tz))

    def render_task(self, task: Task, now: float, tz: tzinfo | None = None) -> Group:
        """The renderable for ``task``."""
        label = self._style("label")
        muted = self._style("muted")
        fields = Table.grid(padding=(0, 2))
        fields.add_column(style=label, no_wrap=True)
        fields.add_column(overflow="fold")
        none = Text("—", style=muted)
        result = (literal(format_value(task.result), "", 4000, keep_newlines=True)
                  if task.state is TaskState.COMPLETED or task.result is not None else none)
        error = (literal(task.error, self._style("error"), 4000, keep_newlines=True)
                 if task.error else none)
        age = format_duration(now - task.created_at)
        created = f"{format_time(task.created_at, tz)}  ({age} ago)"
        rows = [
            ("ID", literal(task.id)),
            ("Task", literal(task.name)),
            ("Arguments", literal(format_args(task.args) or "(none)", "", 4000)),
            ("State", literal(task_state_label(task),
                              self._style("invalid" if task.problem else task.state.value))),
            ("Result", result),
            ("Error", error),
            ("Worker", literal(task.worker) if task.worker else none),
            ("Attempts", literal(str(task.attempt))),
            ("Created", literal(created)),
            ("Updated", literal(format_time(task.updated_at, tz)) if task.updated_at else none),
        ]
        if task.due_at is not None:  # delayed, or retried after a backoff
            when = format_time(task.due_at, tz)
            rows.insert(4, ("Due", literal(f"{when}  ({due_text(task, now)})" if task.state is
                                           TaskState.SCHEDULED else when)))
        if task.problem is not None:
            rows.insert(4, ("Problem", literal(
                f"the stored record is malformed: {task.problem} (other fields are best effort)",
                self._style("error"), 4000, keep_newlines=True)))
        for name, value in rows:
            fields.add_row(Text(name), value)
        n = len(task.history)
        # every stored task has at least one entry: none means the table's brief copy, still loading
        title = f"History ({n} entr{'y' if n == 1 else 'ies'})" if n else "History (loading…)"
        history = Table(title=Text(title, style=label),
                        title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                        pad_edge=False)
        for column in ("When", "State", "Attempt", "Worker", "Note"):
            history.add_column(column, header_style=label, overflow="fold")
        for entry in task.history:
            history.add_row(
                literal(format_time(entry.at, tz)),
                literal(state_label(entry.state), self._style(entry.state.value)),
                literal(str(entry.attempt)),
                literal(entry.worker or "—", muted),
                literal(entry.note or "", muted, 200),
            )
        return Group(fields, Text(""), history)
