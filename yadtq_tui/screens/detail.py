"""The detail view of one task: every field, every history entry; refreshed while open."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from yadtq.models import Task, TaskState
from yadtq_tui.data import Context
from yadtq_tui.messages import TaskLoaded
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
        self._timer: Timer | None = None

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
        self._load(self.shown.id)

    def show(self, task: Task) -> None:
        """Render ``task``."""
        self.shown = task
        self.query_one("#detail-title", Static).update(
            Text(f"Task {task.short_id} · {clean(task.name, 40)}"))
        self.query_one(TaskDetail).show_task(task, self.context.clock(), self.context.tz)
        self.query_one("#detail-retry-button", Button).disabled = task.state is not TaskState.FAILED

    def _schedule(self) -> None:
        self._timer = self.set_timer(REFRESH_SECONDS, self._reload, name="detail-refresh")

    def _reload(self) -> None:
        self._load(self.shown.id)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False,
          description="task refresh")
    def _load(self, task_id: str) -> None:
        worker = get_current_worker()
        message = TaskLoaded.fetch(self.context.service, task_id)
        if not worker.is_cancelled:
            self.post_message(message)

    def on_task_loaded(self, message: TaskLoaded) -> None:
        """Show the fresh task, or why it could not be read (keeping what is shown)."""
        self._schedule()
        status = self.query_one("#detail-status", Static)
        if message.task is not None:
            status.update(Text(""))
            status.remove_class("-visible")
            if message.task != self.shown:
                self.show(message.task)
            return
        if message.not_found:
            text = "⚠ This task no longer exists (reset?). Showing what was last read."
        else:
            text = f"⚠ Could not refresh: {clean(message.error, 160)} — showing last data"
        status.update(Text(text))
        status.add_class("-visible")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Keep refreshing after an unexpected error."""
        if event.state is WorkerState.ERROR:
            self.notify(f"Task refresh failed: {event.worker.error}", severity="error",
                        markup=False)
            self._schedule()

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)

    def action_retry(self) -> None:
        """Hand the task back to the dashboard to retry (failed tasks only)."""
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
