"""The schedules screen: every periodic schedule the workers published, with its next run and
its last run (task and state); refreshed while open. A stale one (no running worker declares it)
has no next run but the time it was last declared; a malformed entry is a row marked invalid,
its reason in full under the table; Enter on a row with a last task opens that task's detail view."""

from __future__ import annotations

from datetime import tzinfo
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from yadtq.models import STATES, Task, TaskState
from yadtq.schedules import ScheduleInfo
from yadtq_tui.data import Context, read_schedules
from yadtq_tui.messages import SchedulesLoaded
from yadtq_tui.poller import Poller, Read
from yadtq_tui.screens.dashboard import DashboardScreen
from yadtq_tui.screens.detail import DetailScreen
from yadtq_tui.text import clean, format_args, format_duration, format_time

REFRESH_SECONDS = 1.0
"""The schedules are re-read this long after the previous read finished."""
COLUMNS = ("Schedule", "Task", "When", "Next run", "Last run", "State")
STATE_STYLES = {"completed": "green", "failed": "bold red", "in-progress": "bold yellow",
                "queued": "cyan", "cancelled": "magenta", "invalid": "bold red reverse"}


def schedule_row(info: ScheduleInfo, now: float, tz: tzinfo | None) -> tuple[Text, ...]:
    """One table row for ``info`` (everything from Redis is shown as text, never markup)."""
    s = info.schedule
    if s is None:
        return (Text(clean(info.name, 32)), Text(""), Text("⚠ invalid (below)", style="bold red"),
                Text("-"), Text(""), Text("invalid", style=STATE_STYLES["invalid"]))
    next_run = Text("-") if info.next_run is None else Text(
        f"{format_time(info.next_run, tz)[11:19]} (in {format_duration(info.next_run - now)})")
    if info.stale and info.published_at is not None:
        next_run = Text("none: not declared by a running worker since "
                        f"{format_time(info.published_at, tz)[:16]}", style="yellow")
    last = Text("never") if info.last_period is None else Text(
        f"{format_time(info.last_period, tz)[5:16]} {(info.last_task or '')[:8]}")
    state = info.last_state or ("-" if info.last_task else "")
    state_text = Text(state, style=STATE_STYLES.get(state, "dim"))
    if info.problem is not None:
        state_text = Text("⚠ (below)", style="bold red")
    return (Text(clean(info.name, 32)), Text(clean(f"{s.task} {format_args(s.args, 24)}", 40)),
            Text(clean(s.expression, 48)), next_run, last, state_text)


class SchedulesScreen(ModalScreen[None]):
    """Lists the periodic schedules; opens the detail view of a schedule's last task."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,p", "close", "Close", tooltip="Back to the dashboard",
                id="schedules-close"),
        Binding("v", "view_last", "View last task",
                tooltip="Details of the highlighted schedule's last task (Enter too)",
                id="schedules-view"),
    ]

    def __init__(self, context: Context) -> None:
        super().__init__(id="schedules")
        self.context = context
        self.infos: dict[str, ScheduleInfo] = {}
        """The schedules as last read, by name."""
        self.refresher = Poller(self, self._next_read, interval=REFRESH_SECONDS,
                                group="schedules", description="schedules refresh")
        """Re-reads the schedules while the screen is open."""

    def compose(self) -> ComposeResult:
        """Title, status line, table, close button."""
        with Vertical(id="schedules-dialog", classes="dialog"):
            yield Static(Text("Periodic schedules"), id="schedules-title", classes="dialog-title")
            yield Static(Text("Reading the schedules…"), id="schedules-status")
            yield DataTable(id="schedules-table", cursor_type="row", zebra_stripes=True)
            yield Static(Text(""), id="schedules-problems")
            yield Button("Close (Esc)", id="schedules-close-button", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        """Columns, focus, first read."""
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        table.focus()
        self.refresher.now()

    def _next_read(self) -> Read:
        return partial(_load, self.context)

    def on_schedules_loaded(self, message: SchedulesLoaded) -> None:
        """Show the schedules (rows keyed by name, updated in place), or why they could not be
        read (keeping the rows shown)."""
        status = self.query_one("#schedules-status", Static)
        result = message.result
        if result.schedules is None:
            status.update(Text(f"⚠ Could not read the schedules: {clean(result.error, 160)} — "
                               "showing last data"))
            status.add_class("-error")
            return
        status.remove_class("-error")
        infos = result.schedules
        invalid = sum(1 for i in infos if i.problem is not None)
        stale = sum(1 for i in infos if i.stale)
        text = (f"{len(infos)} schedule{'s' if len(infos) != 1 else ''}"
                + (f" · {invalid} invalid" if invalid else "")
                + (f" · {stale} stale" if stale else "")
                + " · times in " + ("UTC" if self.context.tz is None else str(self.context.tz))
                if infos else "No schedules: workers publish the ones their task modules declare "
                              "with periodic().")
        status.update(Text(text))
        self._show(infos)
        problems = [f"⚠ {clean(i.name, 32)}: {clean(i.problem, 200)}" for i in infos
                    if i.problem is not None]
        widget = self.query_one("#schedules-problems", Static)
        widget.update(Text("\n".join(problems)))
        widget.set_class(bool(problems), "-visible")

    def _show(self, infos: tuple[ScheduleInfo, ...]) -> None:
        table = self.query_one(DataTable)
        now = self.context.clock()
        fresh = {i.name: i for i in infos}
        for name in [n for n in self.infos if n not in fresh]:
            table.remove_row(name)
        for name, info in fresh.items():
            row = schedule_row(info, now, self.context.tz)
            if name in self.infos:
                for column, cell in zip(COLUMNS, row, strict=True):
                    table.update_cell(name, column, cell)
            else:
                table.add_row(*row, key=name)
        if list(self.infos) != list(fresh) and fresh:
            table.sort(key=lambda name: str(name))
        self.infos = fresh

    def on_screen_resume(self) -> None:
        """A screen on top (help, a task) closed: run the refresh held back meanwhile."""
        self.refresher.resume()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Schedule the next refresh; report an unexpected error and keep refreshing."""
        self.refresher.finished(event)
        if event.state is WorkerState.ERROR:
            self.notify(f"Schedules refresh failed: {event.worker.error}", severity="error",
                        markup=False)

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)

    def action_view_last(self) -> None:
        """Open the detail view of the highlighted schedule's last task."""
        table = self.query_one(DataTable)
        if not self.infos or table.cursor_row < 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        info = self.infos.get(key or "")
        if info is None or info.schedule is None or info.last_task is None \
                or info.last_state is None:
            self.notify("This schedule has no task to show.", severity="warning", markup=False)
            return
        self.app.push_screen(DetailScreen(_placeholder(info), self.context), self._detail_closed)

    def _detail_closed(self, retry: Task | None) -> None:
        dashboard = self.app.screen_stack[0]
        if retry is not None and isinstance(dashboard, DashboardScreen):
            dashboard.start_retry(retry)

    @on(DataTable.RowSelected, "#schedules-table")
    def _row_selected(self) -> None:
        self.action_view_last()

    @on(Button.Pressed, "#schedules-close-button")
    def _close_pressed(self) -> None:
        self.action_close()


def _placeholder(info: ScheduleInfo) -> Task:
    """What the detail view shows until its first read of the task (a moment)."""
    assert info.schedule is not None and info.last_task is not None
    state = info.last_state if info.last_state in {s.value for s in STATES} else "queued"
    return Task(info.last_task, info.schedule.task, info.schedule.args, TaskState(state),
                created_at=float(info.last_period or 0), updated_at=float(info.last_period or 0),
                problem="malformed record" if info.last_state == "invalid" else None)


def _load(context: Context) -> SchedulesLoaded:
    """One read of the schedules, as the message to post (blocking: runs in the refresh worker)."""
    return SchedulesLoaded(read_schedules(context.service))
