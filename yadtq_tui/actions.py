"""``Actions``: what the user changes or looks up (submit, retry, cancel, reset, a task by id), off
the UI thread.

A plain object owned by the App, given the service. Each method starts a thread worker on the App
(so the request finishes even if the screen that asked closes; unexpected errors reach
``YadtqApp.on_worker_state_changed``) and posts one typed message with the outcome to
``reply_to``, the screen that asked. Nothing here touches a widget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.message import Message
from textual.message_pump import MessagePump
from textual.worker import Worker

from yadtq.errors import InvalidTask, ServiceUnavailable, StoreError, TaskFinished, TaskNotFound
from yadtq.models import Task
from yadtq.when import due, split_text
from yadtq_tui.data import DashboardService, read_task
from yadtq_tui.messages import ActionFinished, SubmitFinished, TaskLoaded
from yadtq_tui.text import clean, format_args, format_count


class Actions:
    """Runs the service's blocking calls for the user's actions; answers with messages."""

    def __init__(self, app: App[Any], service: DashboardService) -> None:
        self.app = app
        """Runs the workers."""
        self.service = service
        """What every call goes to."""

    def submit(self, text: str, reply_to: MessagePump, refuse: str | None = None) -> Worker[None]:
        """Parse ``text`` and submit it; ``refuse`` (why a service is down) stops a valid task
        before anything is sent. Answers ``SubmitFinished``."""
        return self._run(lambda: self._submit(text, refuse), reply_to, "submit")

    def retry(self, task: Task, reply_to: MessagePump) -> Worker[None]:
        """Queue the failed ``task`` again (a new attempt, same id). Answers ``ActionFinished``."""
        return self._run(lambda: self._retry(task), reply_to, "retry")

    def cancel(self, task: Task, reply_to: MessagePump) -> Worker[None]:
        """Cancel ``task`` (queued: it never starts; running: its worker interrupts it). Answers
        ``ActionFinished``."""
        return self._run(lambda: self._cancel(task), reply_to, "cancel")

    def reset(self, reply_to: MessagePump) -> Worker[None]:
        """Delete every task. Answers ``ActionFinished``."""
        return self._run(self._reset, reply_to, "reset")

    def look_up(self, task_id: str, reply_to: MessagePump) -> Worker[None]:
        """Read one task (the newest request wins). Answers ``TaskLoaded``."""
        return self._run(lambda: TaskLoaded(read_task(self.service, task_id)), reply_to, "lookup",
                         exclusive=True, description="task lookup")

    def _run(self, call: Callable[[], Message], reply_to: MessagePump, group: str, *,
             exclusive: bool = False, description: str | None = None) -> Worker[None]:
        def work() -> None:
            reply_to.post_message(call())

        return self.app.run_worker(work, thread=True, group=group, exclusive=exclusive,
                                   exit_on_error=False, description=description or group)

    # ------------------------------------------------------------------ blocking parts (threads)
    def _submit(self, text: str, refuse: str | None) -> SubmitFinished:
        command, delay, eta = split_text(text)  # ADD 2 3 in 30s / at 2026-12-01T09:00
        try:
            name, args = self.service.parse(command)
            when = due(delay, eta)
        except InvalidTask as exc:
            return SubmitFinished(text, error=str(exc), invalid=True)
        label = f"{name} {format_args(args)}".strip()
        if when is not None:
            label += f" in {delay}" if delay is not None else f" at {eta}"
        if refuse is not None:
            return SubmitFinished(text, label=label, error=(
                f"{refuse}: {label} was not submitted; try again when the banner is gone"))
        try:
            task_id = (self.service.submit(name, args) if when is None
                       else self.service.submit(name, args, delay=delay, eta=eta))
        except InvalidTask as exc:
            return SubmitFinished(text, label=label, error=str(exc), invalid=True)
        except (ServiceUnavailable, StoreError) as exc:  # StoreError says "Redis refused: ..."
            return SubmitFinished(text, label=label, error=f"not submitted: {exc}")
        return SubmitFinished(text, task_id=task_id, label=label)

    def _retry(self, task: Task) -> ActionFinished:
        label = clean(f"{task.name} {format_args(task.args)}".strip(), 60)
        try:
            self.service.retry(task.id)
        except (InvalidTask, TaskNotFound, ServiceUnavailable, StoreError) as exc:
            return ActionFinished("retry", f"Not retried: {exc}", ok=False)
        return ActionFinished("retry", f"Retrying {label} (task {task.short_id}): queued again "
                                       f"as attempt {task.attempt + 1} of the same task, same id.")

    def _cancel(self, task: Task) -> ActionFinished:
        label = clean(f"{task.name} {format_args(task.args)}".strip(), 60)
        try:
            result = self.service.cancel(task.id)
        except (InvalidTask, TaskNotFound, TaskFinished, ServiceUnavailable, StoreError) as exc:
            return ActionFinished("cancel", f"Not cancelled: {exc}", ok=False)
        if result.running:
            return ActionFinished("cancel", f"Cancelling {label} (task {task.short_id}): it is "
                                            "running; its worker interrupts it within a second.")
        return ActionFinished("cancel", f"Cancelled {label} (task {task.short_id}): it was "
                                        f"{result.previous.value} and will not start.")

    def _reset(self) -> ActionFinished:
        try:
            deleted = self.service.reset()
        except (ServiceUnavailable, StoreError) as exc:
            return ActionFinished("reset", f"Not reset: {exc}", ok=False)
        return ActionFinished("reset", f"Reset: deleted {format_count(deleted)} "
                                       f"task{'s' if deleted != 1 else ''}.")
