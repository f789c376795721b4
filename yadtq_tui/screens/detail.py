"""The detail view of one task: every field, every history entry; refreshed while open."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static
from textual.worker import Worker, WorkerState

from yadtq.models import Task, TaskState
from yadtq_tui.data import Context, read_task
from yadtq_tui.messages import TaskLoaded
from yadtq_tui.poller import Poller, Read
from yadtq_tui.text import clean
from yadtq_tui.widgets import TaskDetail

REFRESH_SECONDS = 1.0
"""The open task is re-read this long after the previous read finished."""


class DetailScreen(ModalScreen[Task | None]):
    """Shows one task. Dismisses with the task when the user asks to retry it, else None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", tooltip="Back to the dashboard", id="detail-close"),
        Binding("v", "close", "Close", show=False),
        Binding("y", "retry", "Retry", tooltip="Retry this failed task (new attempt, same id)",
                id="detail-retry"),
        Binding("R", "retry", "Retry", show=False),
    ]

    def __init__(self, task: Task, context: Context) -> None:
        super().__init__(id="detail")
        self.shown = task
        """The task as last read (``task`` is taken by Textual)."""
        self.context = context
        self.refresher = Poller(self, self._next_read, interval=REFRESH_SECONDS, group="detail",
                                description="task refresh")
        """Re-reads the task while the view is open."""

    def compose(self) -> ComposeResult:
        """Title, body, buttons."""
        with Vertical(id="detail-dialog", classes="dialog"):
            yield Static(Text(""), id="detail-title", classes="dialog-title")
            yield Static(Text(""), id="detail-status")
            with VerticalScroll(id="detail-scroll"):
                yield TaskDetail(id="detail-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Retry (y)", id="detail-retry-button", variant="warning")
                yield Button("Close (Esc)", id="detail-close-button", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        """Show the task (the table's copy, without history), read it whole at once, then keep it
        fresh."""
        self.query_one("#detail-scroll").focus()
        self.show(self.shown)
        self.refresher.now()

    def show(self, task: Task) -> None:
        """Render ``task``."""
        self.shown = task
        self.query_one("#detail-title", Static).update(
            Text(f"Task {task.short_id} · {clean(task.name, 40)}"))
        self.query_one(TaskDetail).show_task(task, self.context.clock(), self.context.tz)
        self.query_one("#detail-retry-button", Button).disabled = (
            task.state is not TaskState.FAILED or task.problem is not None)

    def _next_read(self) -> Read:
        return partial(_load, self.context, self.shown.id)

    def on_task_loaded(self, message: TaskLoaded) -> None:
        """Show the fresh task, or why it could not be read (keeping what is shown)."""
        result = message.result
        status = self.query_one("#detail-status", Static)
        if result.task is not None:
            status.update(Text(""))
            status.remove_class("-visible")
            if result.task != self.shown:
                self.show(result.task)
            return
        if result.not_found:
            text = "⚠ This task no longer exists (reset?). Showing what was last read."
        else:
            text = f"⚠ Could not refresh: {clean(result.error, 160)} — showing last data"
        status.update(Text(text))
        status.add_class("-visible")

    def on_screen_resume(self) -> None:
        """A screen on top (help) closed: run the refresh held back meanwhile."""
        self.refresher.resume()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Schedule the next refresh; report an unexpected error and keep refreshing."""
        self.refresher.finished(event)
        if event.state is WorkerState.ERROR:
            self.notify(f"Task refresh failed: {event.worker.error}", severity="error",
                        markup=False)

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)

    def action_retry(self) -> None:
        """Hand the task back to the dashboard to retry (failed tasks only)."""
        if self.shown.problem is not None:
            self.notify(f"Task {self.shown.short_id} cannot be retried: its stored record is "
                        "malformed (see Problem).", severity="warning", markup=False)
            return
        if self.shown.state is not TaskState.FAILED:
            self.notify(f"Only failed tasks can be retried; task {self.shown.short_id} is "
                        f"{self.shown.state.value}.", severity="warning", markup=False)
            return
        self.dismiss(self.shown)

    @on(Button.Pressed, "#detail-retry-button")
    def _retry_pressed(self) -> None:
        self.action_retry()

    @on(Button.Pressed, "#detail-close-button")
    def _close_pressed(self) -> None:
        self.action_close()


def _load(context: Context, task_id: str) -> TaskLoaded:
    """One read of the task, as the message to post (blocking: runs in the refresh worker)."""
    return TaskLoaded(read_task(context.service, task_id))
