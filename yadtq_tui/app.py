"""The dashboard application. Build it with ``make_app(client)`` (the CLI and the tests do).

The App is given one service object (a ``DashboardService``, such as a ``yadtq.Client``) and never
imports Redis or Kafka itself. It owns ``Actions``, which runs the
user's submits, retries, resets and look-ups in thread workers; the screens' refresh loops run in
their own workers. Both answer with typed messages.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Sequence
from datetime import tzinfo
from typing import ClassVar, NamedTuple

from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from yadtq_tui.actions import Actions
from yadtq_tui.data import Clock, Context, DashboardService
from yadtq_tui.screens import DashboardScreen, DetailScreen, HelpScreen, SchedulesScreen
from yadtq_tui.screens.help import HelpSection
from yadtq_tui.widgets import TaskTable


class Notice(NamedTuple):
    """One notification the dashboard showed."""

    message: str
    title: str
    severity: str


class YadtqApp(App[None]):
    """The YADTQ dashboard: submit tasks, watch them and the workers, retry, reset."""

    CSS_PATH = "styles.tcss"
    TITLE = "YADTQ"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", tooltip="Exit the dashboard (Ctrl+C also while typing)",
                id="quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True,
                tooltip="Exit the dashboard, even while typing", id="quit-now"),
        Binding("f1,question_mark", "help", "Help", key_display="?",
                tooltip="Show every key (F1 works while typing)", id="help"),
        Binding("p", "schedules", "Schedules", show=False,
                tooltip="Periodic schedules: next run, last run and its state", id="schedules"),
    ]

    def __init__(self, context: Context) -> None:
        super().__init__()
        self.context = context
        """The injected service and settings every screen uses."""
        self.actions = Actions(self, context.service)
        """Runs the user's submits, retries, resets and look-ups."""
        self.notified: deque[Notice] = deque(maxlen=100)
        """The latest notifications shown, oldest first (tests read what was said)."""

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Show a notification (Textual's), and keep its text in ``notified``."""
        self.notified.append(Notice(message, title, severity))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def on_mount(self) -> None:
        """Once the first screen is drawn, settle memory (below)."""
        self.call_after_refresh(self.settle_memory)

    @staticmethod
    def settle_memory() -> None:
        """Collect once, then move every object alive now (imports, Textual, the screens) out of
        the collector's reach (``gc.freeze``): a full collection then only walks what was made
        since; and full collections run after 100 younger ones instead of 10. Measured under load
        (bench/bench_tui.py): full collections of 70-300 ms stopped the UI and the poll thread
        (refresh p95 64 ms, max 372 ms); with the freeze 25-95 ms, with both none in a 20 s
        window (refresh p95 34 ms; peak memory 103 MB instead of 85)."""
        gc.collect()
        gc.freeze()
        gen0, gen1, _ = gc.get_threshold()
        gc.set_threshold(gen0, gen1, 100)

    @property
    def dashboard(self) -> DashboardScreen:
        """The main screen."""
        screen = self.screen_stack[0]
        if not isinstance(screen, DashboardScreen):
            raise RuntimeError("the dashboard is not mounted")
        return screen

    def get_default_screen(self) -> Screen[None]:
        """The dashboard is the first screen."""
        return DashboardScreen(self.context, self.actions)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An action's worker failed unexpectedly: say so (the dashboard keeps running)."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.description} failed: {type(error).__name__}: {error}",
                        severity="error", title="Unexpected error", markup=False)

    def action_help(self) -> None:
        """Open the help screen (once)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    def action_schedules(self) -> None:
        """Open the schedules screen (once)."""
        if not isinstance(self.screen, SchedulesScreen):
            self.push_screen(SchedulesScreen(self.context))

    def help_sections(self) -> list[HelpSection]:
        """Every binding, grouped by where it works, from the BINDINGS lists themselves."""
        return [
            ("Everywhere", self._describe(self.BINDINGS)),
            ("Dashboard (task table focused)",
             self._describe([*DashboardScreen.BINDINGS, *TaskTable.BINDINGS])),
            ("Detail view", self._describe(DetailScreen.BINDINGS)),
            ("Schedules", self._describe(SchedulesScreen.BINDINGS)),
            ("Dialogs and mouse", [
                ("⏎", "Press the focused button (the reset dialog starts on Cancel)"),
                ("←, →, tab", "Move between buttons"),
                ("esc", "Cancel and close"),
                ("click", "Highlight a row (click again to view it), press a button"),
            ]),
        ]

    def _describe(self, bindings: Sequence[BindingType]) -> list[tuple[str, str]]:
        by_action: dict[str, tuple[list[str], str]] = {}
        for binding in Binding.make_bindings(bindings):
            keys, text = by_action.setdefault(binding.action, ([], ""))
            display = self.get_key_display(Binding(binding.key, binding.action))
            if display not in keys:
                keys.append(display)
            by_action[binding.action] = (keys, text or binding.tooltip or binding.description)
        return [(", ".join(keys), text) for keys, text in by_action.values()]


def make_app(service: DashboardService, *, clock: Clock = time.time,
             tz: tzinfo | None = None, poll_interval: float = 0.5, health_interval: float = 2.0,
             page_size: int = 100, target: str | None = None) -> YadtqApp:
    """Build the dashboard around ``service`` (a ``yadtq.Client``, or any ``DashboardService``).

    ``clock`` and ``tz`` fix the time shown (tests); ``poll_interval`` is the pause between the
    end of one refresh and the next; ``page_size`` is how many of the newest tasks the table shows;
    ``target`` names where the data lives in the reset dialog (default: ``service.describe()``).
    """
    context = Context(service=service, clock=clock, tz=tz, poll_interval=poll_interval,
                      health_interval=health_interval, page_size=page_size,
                      target=service.describe() if target is None else target)
    return YadtqApp(context)
