"""Typed messages that carry results from thread workers back to the UI thread.

Workers never touch widgets: they post one of these (``post_message`` is thread-safe) and the
screen applies it on the UI thread. ``SnapshotReady`` and ``TaskLoaded`` define ``can_replace`` so a
backlog of refreshes collapses into the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from yadtq.errors import ServiceUnavailable, TaskNotFound
from yadtq.models import Health, Task
from yadtq.registry import TaskSpec
from yadtq_tui.data import DashboardService, Snapshot


@dataclass
class SnapshotReady(Message):
    """A refresh finished: the data to show."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot makes an older unprocessed one useless."""
        return isinstance(message, SnapshotReady)


@dataclass
class PollFailed(Message):
    """A refresh could not read Redis: keep the last data and show why."""

    error: str
    specs: tuple[TaskSpec, ...] | None = None
    """The known tasks, when the refresh was to read them (the local ones work without Redis)."""


@dataclass
class HealthChecked(Message):
    """The result of a Redis + Kafka health check."""

    health: Health


@dataclass
class SubmitFinished(Message):
    """A task typed in the form was submitted, refused as invalid, or could not be enqueued."""

    text: str
    """What was typed."""
    task_id: str | None = None
    """The new task's id when it was enqueued."""
    label: str = ""
    """The task as parsed, e.g. ``ADD 2 3``."""
    error: str | None = None
    """Why it was not enqueued."""
    invalid: bool = False
    """True when the input itself is wrong (nothing was sent anywhere)."""


@dataclass
class ActionFinished(Message):
    """A retry or a reset finished (or failed)."""

    action: str
    """``retry`` or ``reset``."""
    message: str
    """What to tell the user."""
    ok: bool = True


@dataclass
class TaskLoaded(Message):
    """One task read from Redis (for the detail view or the id prompt), or why it could not be."""

    task: Task | None
    error: str | None = None
    not_found: bool = False
    """True when Redis answered but has no such task."""

    def can_replace(self, message: Message) -> bool:
        """Only the newest read of a task matters."""
        return isinstance(message, TaskLoaded)

    @classmethod
    def fetch(cls, service: DashboardService, task_id: str) -> TaskLoaded:
        """Read one task (blocking: call it from a thread worker) into a message."""
        try:
            return cls(service.get(task_id))
        except TaskNotFound as exc:
            return cls(None, str(exc), not_found=True)
        except ServiceUnavailable as exc:
            return cls(None, str(exc))
