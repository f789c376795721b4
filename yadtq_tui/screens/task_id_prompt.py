"""Asks for a task id (full, or the short id shown in the table) and loads that task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static

from yadtq.models import Task
from yadtq_tui.actions import Actions
from yadtq_tui.data import resolve_id
from yadtq_tui.messages import TaskLoaded
from yadtq_tui.text import clean


class TaskIdPrompt(ModalScreen[Task | None]):
    """Dismisses with the loaded task, or None when cancelled. Errors are shown in place."""

    AUTO_FOCUS = "#id-input"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="id-prompt-cancel"),
    ]

    def __init__(self, actions: Actions, known_ids: Sequence[str] = ()) -> None:
        super().__init__(id="id-prompt")
        self.actions = actions
        self.known_ids = tuple(known_ids)

    def compose(self) -> ComposeResult:
        """Label, input, message line, buttons."""
        with Vertical(id="id-dialog", classes="dialog"):
            yield Static(Text("View a task by id"), classes="dialog-title")
            yield Input(placeholder="task id (32 hex characters, or the 8-character short id)",
                        id="id-input", max_length=200)
            yield Static(Text("Paste or type an id and press Enter."), id="id-message")
            with Horizontal(classes="dialog-buttons"):
                yield Button("View", id="id-view", variant="primary")
                yield Button("Cancel", id="id-cancel")
        yield Footer()

    @on(Input.Submitted, "#id-input")
    @on(Button.Pressed, "#id-view")
    def _lookup_requested(self) -> None:
        typed = self.query_one("#id-input", Input).value
        self.actions.look_up(resolve_id(typed, self.known_ids), self)

    def on_task_loaded(self, message: TaskLoaded) -> None:
        """Open the task, or say why not and keep the typed text."""
        result = message.result
        if result.task is not None:
            self.dismiss(result.task)
            return
        line = self.query_one("#id-message", Static)
        line.update(Text(f"✘ {clean(result.error or 'not found', 200)}"))
        line.add_class("-error")
        self.query_one("#id-input", Input).add_class("-invalid")

    @on(Input.Changed, "#id-input")
    def _edited(self) -> None:
        self.query_one("#id-input", Input).remove_class("-invalid")
        self.query_one("#id-message", Static).remove_class("-error")

    def action_cancel(self) -> None:
        """Close without viewing anything."""
        self.dismiss(None)

    @on(Button.Pressed, "#id-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
