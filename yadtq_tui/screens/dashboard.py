"""The main screen: submit form, live task table, worker panel, status bar and banner.

Two ``Poller`` loops keep it fresh (the data refresh and the Redis/Kafka health check); this screen
lays the widgets out, applies each result to them in place, and hands the user's actions (submit,
retry, cancel, reset, a task by id) to the App's ``Actions``, which answer with typed messages.
"""

from __future__ import annotations

import time
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState

from yadtq.models import STATES, Task, TaskState, WorkerStatus
from yadtq.registry import TaskSpec
from yadtq_tui.actions import Actions
from yadtq_tui.data import Context, Services, Snapshot, empty_text, next_filter, next_queue, tasks_title
from yadtq_tui.messages import (
    ActionFinished,
    HealthChecked,
    PollFailed,
    SnapshotReady,
    SubmitFinished,
)
from yadtq_tui.poller import Poller, Read
from yadtq_tui.reads import read_health, read_snapshot
from yadtq_tui.refusals import cancel_refusal, retry_refusal
from yadtq_tui.screens.confirm_reset import ConfirmResetScreen
from yadtq_tui.screens.detail import DetailScreen
from yadtq_tui.screens.task_id_prompt import TaskIdPrompt
from yadtq_tui.text import clean
from yadtq_tui.widgets import Banner, StatusBar, SubmitForm, TaskTable, TextLine, WorkerPanel
from yadtq_tui.widgets.worker_panel import STATUS_ORDER, stalled_notes

SPECS_EVERY = 20
"""Re-read the known task names every this many refreshes (workers may publish new ones)."""


class DashboardScreen(Screen[None]):
    """Everything on one screen; the App only adds quit and help."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "focus_tasks", "Tasks", tooltip="Move the keyboard to the task table",
                id="tasks"),
        Binding("f", "cycle_filter", "Filter",
                tooltip=f"Show all → {' → '.join(s.value for s in STATES)} tasks", id="filter"),
        Binding("u", "cycle_queue", "Queue", tooltip="Show every queue → each known queue's tasks",
                id="queue"),
        Binding("v", "view", "View", tooltip="Details and history of the highlighted task",
                id="view"),
        Binding("i", "view_by_id", "View id", tooltip="View a task by its (short) id",
                id="view-id"),
        Binding("y", "retry", "Retry", tooltip="Retry the highlighted failed task (new attempt)",
                id="retry"),
        Binding("R", "retry", "Retry", show=False, id="retry-shift"),
        Binding("c", "cancel_task", "Cancel", tooltip="Cancel the highlighted queued or running task",
                id="cancel"),
        Binding("r", "reset", "Reset", tooltip="Delete every task (asks first)", id="reset"),
        Binding("s", "focus_form", "Submit", tooltip="Move the keyboard to the submit form",
                id="submit"),
        Binding("escape", "leave_form", "Table", tooltip="Leave the form: keys work in the table",
                id="leave-form"),
    ]

    state_filter: reactive[TaskState | None] = reactive(None, init=False)
    """The state the task table shows (None = all)."""
    queue_filter: reactive[str | None] = reactive(None, init=False)
    """The queue the task table shows (None = all)."""

    def __init__(self, context: Context, actions: Actions) -> None:
        super().__init__(id="dashboard")
        self.context = context
        self.actions = actions
        """Runs submit, retry, reset and look-ups (owned by the App)."""
        self.services = Services()
        """What the health checks and refreshes said."""
        self.last: Snapshot | None = None
        """The data on screen (kept while Redis is unreachable)."""
        self.polls = 0
        """Refreshes applied so far."""
        self.apply_seconds = 0.0
        """How long the last snapshot took to apply to the widgets (UI thread)."""
        self.refresher = Poller(self, self._next_refresh, interval=context.poll_interval,
                                group="poll", description="refresh")
        """The data refresh loop."""
        self.health_checker = Poller(self, self._next_health_check,
                                     interval=context.health_interval, group="health",
                                     description="health check")
        """The Redis + Kafka health check loop."""
        self._tasks: dict[str, Task] = {}
        self._queues: set[str] = set()
        """Queues seen (in the tasks and the lag per queue): the queue filter's choices."""
        self._fetches = 0
        self._have_specs = False

    def compose(self) -> ComposeResult:
        """Status bar, banner, form, tasks, workers, footer."""
        yield StatusBar(id="status-bar")
        yield Banner(id="banner")
        yield SubmitForm(id="submit-form")
        yield TextLine("Tasks", id="tasks-title", classes="section-title")
        yield Static(Text("No tasks yet: type one above, e.g. ADD 2 3, and press Enter."),
                     id="tasks-empty", classes="empty")
        yield TaskTable(id="tasks")
        yield TextLine("Workers", id="workers-title", classes="section-title")
        yield Static(Text("No workers: start one with yadtq-worker."), id="workers-empty",
                     classes="empty")
        yield WorkerPanel(id="workers")
        yield TextLine(id="workers-stalled")
        yield Footer()

    def on_mount(self) -> None:
        """Focus the form and start polling."""
        self.query_one(SubmitForm).input.focus()
        self._update_titles()
        self.poll_now()
        self.health_checker.now()

    # ------------------------------------------------------------------ widgets
    @property
    def table(self) -> TaskTable:
        """The task table."""
        return self.query_one("#tasks", TaskTable)

    @property
    def form(self) -> SubmitForm:
        """The submit form."""
        return self.query_one(SubmitForm)

    def highlighted_task(self) -> Task | None:
        """The task under the table's cursor (as of the last refresh)."""
        key = self.table.highlighted_key
        return self._tasks.get(key) if key else None

    def _update_titles(self) -> None:
        snap = self.last
        self.query_one("#tasks-title", TextLine).show(
            tasks_title(snap, self.state_filter, self.queue_filter))
        if snap is not None:
            c = snap.worker_counts()
            parts = [f"{c[s]} {s.value}" for s in STATUS_ORDER
                     if c[s] or s is not WorkerStatus.STALLED]  # stalled only when there is one
            self.query_one("#workers-title", TextLine).show("Workers · " + " · ".join(parts))

    # ------------------------------------------------------------------ refresh and health
    def poll_now(self) -> None:
        """Refresh at once (or as soon as the screen on top closes)."""
        self.refresher.now()

    def _next_refresh(self) -> Read:
        self._fetches += 1
        with_specs = not self._have_specs or self._fetches % SPECS_EVERY == 0
        return partial(read_snapshot, self.context, self.state_filter, with_specs, self.queue_filter)

    def _next_health_check(self) -> Read:
        return partial(read_health, self.context)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Show a refresh's data."""
        self._refreshed(None)
        snap = message.snapshot
        if (snap.state_filter, snap.queue_filter) != (self.state_filter, self.queue_filter):
            return  # read before a filter changed
        self.polls += 1
        self._have_specs = self._have_specs or message.snapshot.specs is not None
        self.apply_snapshot(message.snapshot)

    def on_poll_failed(self, message: PollFailed) -> None:
        """Keep the last data and say why; the health check finds which service is down."""
        self._refreshed(message.error)
        if message.specs is not None:
            self._have_specs = True
            self.show_specs(message.specs)

    def _refreshed(self, error: str | None) -> None:
        if self.services.refresh_failed(error):
            self.health_checker.now()  # failing or working again: which service, now
            self.show_services()

    def on_health_checked(self, message: HealthChecked) -> None:
        """Record each service's state; say which came back."""
        back, changed = self.services.check(message.health)
        self.query_one(StatusBar).show_lag(message.health.lag, message.health.queue_lag)
        self._queues.update(name for name, _ in message.health.queue_lag)
        for name in back:
            self.notify(f"{name} is reachable again.", title="Reconnected", markup=False)
        if changed:
            self.show_services()

    def on_screen_resume(self) -> None:
        """The screen on top closed: run the refresh and health check that were held back."""
        self.refresher.resume()
        self.health_checker.resume()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Schedule each loop's next run; report unexpected errors and keep going."""
        for poller in (self.refresher, self.health_checker):
            if poller.finished(event):
                break
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.description} failed: {type(error).__name__}: {error}",
                        severity="error", title="Unexpected error", markup=False)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Update every widget in place from ``snap`` (UI thread)."""
        started = time.perf_counter()
        now = self.context.clock()
        self.last = snap
        self._tasks = {t.id: t for t in snap.tasks}
        self._queues.update(t.queue for t in snap.tasks)
        self.table.show_tasks(snap.tasks, now)
        empty = self.query_one("#tasks-empty", Static)
        if not snap.tasks:
            empty.update(Text(empty_text(snap)))
        empty.set_class(not snap.tasks, "-visible")
        self.query_one(WorkerPanel).show_workers(snap.workers, now, self._tasks)
        self.query_one("#workers-empty").set_class(not snap.workers, "-visible")
        self._show_stalled(snap)
        bar = self.query_one(StatusBar)
        bar.show_counts(snap.counts)
        bar.show_repairs(snap.repairs, self.context.tz)
        bar.show_throughput(snap.throughput)
        if snap.specs is not None:
            self.show_specs(snap.specs)
        self._update_titles()
        self.apply_seconds = time.perf_counter() - started

    def _show_stalled(self, snap: Snapshot) -> None:
        """Under the panel, each stalled worker's reason in full (the row has room for little)."""
        notes = stalled_notes(snap.workers)
        widget = self.query_one("#workers-stalled", TextLine)
        widget.set_class(bool(notes), "-visible")
        if notes:
            widget.show("\n".join(clean(line, 240) for line in notes))

    def show_specs(self, specs: tuple[TaskSpec, ...]) -> None:
        """Known task names and usages, under the form."""
        self.form.set_specs(specs)

    def show_services(self) -> None:
        """The lights in the status bar and the banner."""
        services = self.services
        self.query_one(StatusBar).show_services(services.redis_up, services.kafka_up)
        self.query_one(Banner).show_problems(services.redis_error, services.kafka_error,
                                             have_data=self.polls > 0,
                                             refresh_error=services.refresh_error)

    # ------------------------------------------------------------------ submit
    @on(SubmitForm.Submitted)
    def _submit_requested(self, message: SubmitForm.Submitted) -> None:
        self.actions.submit(message.text, self, refuse=self.services.refused())

    def on_submit_finished(self, message: SubmitFinished) -> None:
        """Clear the form on success; otherwise keep the text and say why."""
        if message.task_id is not None:
            self.form.show_ok(f"Submitted {message.label} as task {message.task_id[:8]}")
            self.poll_now()
            return
        self.form.show_error(message.error or "not submitted")
        if not message.invalid:
            self.health_checker.now()
            self.poll_now()

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Esc ("back to the table") is offered only while the form has the keyboard.

        Letter keys need no such care: Textual hides them (and the Input receives them) while the
        form is focused, so typing ``ADD 2 3`` never triggers a binding.
        """
        if action == "leave_form":
            return isinstance(self.focused, Input)
        return True

    def on_descendant_focus(self) -> None:
        """The footer shows different keys in the form and in the table."""
        self.refresh_bindings()

    def action_leave_form(self) -> None:
        """Move the keyboard from the form to the task table."""
        self.table.focus()

    def action_focus_tasks(self) -> None:
        """Move the keyboard to the task table."""
        self.table.focus()

    def action_focus_form(self) -> None:
        """Move the keyboard to the submit form."""
        self.form.input.focus()

    def action_cycle_filter(self) -> None:
        """all → each state in turn → all."""
        self.state_filter = next_filter(self.state_filter)

    def action_cycle_queue(self) -> None:
        """every queue → each queue seen so far → every queue."""
        self.queue_filter = next_queue(self.queue_filter, self._queues)

    def watch_state_filter(self) -> None:
        """A different list: replace the rows, then read it at once."""
        self.table.clear_rows()
        self.last = None
        self._update_titles()
        self.poll_now()

    watch_queue_filter = watch_state_filter

    def _highlighted(self) -> Task | None:
        """The highlighted task, or None after saying that there is none."""
        task = self.highlighted_task()
        if task is None:
            self.notify("No task is highlighted.", severity="warning", markup=False)
        return task

    def action_view(self) -> None:
        """Open the highlighted task's detail view."""
        if (task := self._highlighted()) is not None:
            self.open_detail(task)

    @on(DataTable.RowSelected, "#tasks")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        task = self._tasks.get(event.row_key.value or "")
        if task is not None:
            self.open_detail(task)

    def open_detail(self, task: Task) -> None:
        """Push the detail view of ``task``; it can hand the task back to be retried."""
        self.app.push_screen(DetailScreen(task, self.context), self._detail_closed)

    def _detail_closed(self, retry: Task | None) -> None:
        if retry is not None:
            self.start_retry(retry)

    def action_view_by_id(self) -> None:
        """Ask for a task id (full or the 8-character short id) and view that task."""
        self.app.push_screen(TaskIdPrompt(self.actions, tuple(self._tasks)),
                             self._id_prompt_closed)

    def _id_prompt_closed(self, task: Task | None) -> None:
        if task is not None:
            self.open_detail(task)

    def action_retry(self) -> None:
        """Retry the highlighted failed task."""
        if (task := self._highlighted()) is not None:
            self.start_retry(task)

    def start_retry(self, task: Task) -> None:
        """Re-queue a failed task as a new attempt of the same task (same id)."""
        if self._allowed(task, retry_refusal(task), "retried"):
            self.actions.retry(task, self)

    def action_cancel_task(self) -> None:
        """Cancel the highlighted task: queued, it never starts; running, it is interrupted."""
        if (task := self._highlighted()) is not None and self._allowed(
                task, cancel_refusal(task), "cancelled"):
            self.actions.cancel(task, self)

    def _allowed(self, task: Task, refusal: str | None, verb: str) -> bool:
        """Whether to go on with an action on ``task``; if not, say why (``refusal``, a service)."""
        down = self.services.refused()
        why = refusal or (down and f"{down}: task {task.short_id} was not {verb}.")
        if why:
            self.notify(why, severity="warning" if refusal else "error", markup=False)
        return not why

    def action_reset(self) -> None:
        """Ask, then delete every task."""
        total = self.last.total if self.last is not None else None
        self.app.push_screen(ConfirmResetScreen(total, self.context.target), self._reset_closed)

    def _reset_closed(self, confirmed: bool | None) -> None:
        if confirmed:
            self.actions.reset(self)

    def on_action_finished(self, message: ActionFinished) -> None:
        """Tell the user, and show the change at once."""
        self.notify(message.message, title=message.action.capitalize(), markup=False,
                    severity="information" if message.ok else "error")
        self.poll_now()
