"""Why an action cannot apply to a task as the dashboard last read it (no Textual import).

The dashboard says so at once, in a notification, instead of asking the service; the service
checks again (the task may have changed since the last refresh) and its refusal is shown too.
"""

from __future__ import annotations

from yadtq.models import Task, TaskState
from yadtq_tui.text import clean

CANCELLABLE = frozenset(s for s in TaskState if not s.is_final)
"""States a task can be cancelled in: every state that is not final."""


def malformed(task: Task, verb: str) -> str | None:
    """Why a task with a malformed record cannot be ``verb`` (``retried``), or None."""
    if task.problem is None:
        return None
    return (f"Task {task.short_id} cannot be {verb}: its stored record is malformed "
            f"({clean(task.problem, 120)}).")


def retry_refusal(task: Task) -> str | None:
    """Why ``task`` cannot be retried, or None (only failed tasks can)."""
    if (why := malformed(task, "retried")) is not None:
        return why
    if task.state is not TaskState.FAILED:
        return f"Only failed tasks can be retried; task {task.short_id} is {task.state.value}."
    return None


def cancel_refusal(task: Task) -> str | None:
    """Why ``task`` cannot be cancelled, or None (queued, scheduled and running tasks can)."""
    if (why := malformed(task, "cancelled")) is not None:
        return why
    if task.state not in CANCELLABLE:
        return (f"Task {task.short_id} is already {task.state.value}: only queued, scheduled or "
                "running tasks can be cancelled.")
    return None
