"""The confirmation asked before a reset. Cancel is the default button."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from yadtq_tui.text import clean, format_count


class ConfirmResetScreen(ModalScreen[bool]):
    """Dismisses with True only when "Delete all tasks" is pressed."""

    AUTO_FOCUS = "#reset-cancel"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="reset-dialog-cancel"),
        Binding("left,right", "app.focus_previous", "Switch button", show=False),
    ]

    def __init__(self, total: int | None, target: str = "") -> None:
        super().__init__(id="confirm-reset")
        self.total = total
        self.target = target

    def compose(self) -> ComposeResult:
        """Question, consequences, buttons."""
        how_many = "every task" if self.total is None else (
            f"all {format_count(self.total)} task{'s' if self.total != 1 else ''}")
        where = f" in {clean(self.target, 80)}" if self.target else ""
        with Vertical(id="reset-dialog", classes="dialog"):
            yield Static(Text("Reset YADTQ?"), classes="dialog-title")
            yield Static(Text(
                f"This deletes {how_many}{where}: their state, results and history. Only YADTQ's "
                "own keys are touched; workers keep running. This cannot be undone."),
                id="reset-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="reset-cancel", variant="primary")
                yield Button("Delete all tasks", id="reset-confirm", variant="error")
        yield Footer()

    def action_cancel(self) -> None:
        """Close without deleting anything."""
        self.dismiss(False)

    @on(Button.Pressed, "#reset-cancel")
    def _cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#reset-confirm")
    def _confirm(self) -> None:
        self.dismiss(True)
