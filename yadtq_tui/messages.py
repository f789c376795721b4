"""Typed messages that carry results from thread workers back to the UI thread.

Workers never touch widgets: they post one of these (``post_message`` is thread-safe) and the
screen applies it on the UI thread. Messages carry data only; the reads that make them are in
``yadtq_tui.data`` and ``yadtq_tui.actions``. ``SnapshotReady`` and ``TaskLoaded`` define
``can_replace`` so a backlog of refreshes collapses into the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from yadtq.models import Health
from yadtq.registry import TaskSpec
from yadtq_tui.data import SchedulesRead, Snapshot, TaskRead


@dataclass
class SnapshotReady(Message):
    """A refresh finished: the data to show."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot makes an older unprocessed one useless."""
        return isinstance(message, SnapshotReady)


@dataclass
class PollFailed(Message):
    """A refresh could not read its data: keep the last data and show why (the health check
    says which service is down)."""

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
    """A retry, a cancel or a reset finished (or failed)."""

    action: str
    """``retry``, ``cancel`` or ``reset``."""
    message: str
    """What to tell the user."""
    ok: bool = True


@dataclass
class TaskLoaded(Message):
    """One task read for the detail view or the id prompt, or why it could not be."""

    result: TaskRead

    def can_replace(self, message: Message) -> bool:
        """Only the newest read of a task matters."""
        return isinstance(message, TaskLoaded)


@dataclass
class SchedulesLoaded(Message):
    """The periodic schedules read for the schedules screen, or why they could not be."""

    result: SchedulesRead

    def can_replace(self, message: Message) -> bool:
        """Only the newest read matters."""
        return isinstance(message, SchedulesLoaded)
