"""The help screen: every key binding (from the BINDINGS lists) and how the form works."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

HelpSection = tuple[str, Sequence[tuple[str, str]]]
"""A titled list of (keys, what they do)."""

FORM_HELP = (
    "Type a task and press Enter: ADD 2 3, mul 4 5, DIV 1 0 (names ignore case; the line under "
    "the form lists every known task and its arguments; Right arrow completes a name). Invalid "
    "input is refused in place with the reason and nothing is enqueued. Quote an argument that "
    "contains spaces. Esc leaves the form; letter keys work in the table, not while typing."
)


class HelpScreen(ModalScreen[None]):
    """Lists the keys. Close with Esc, ? or F1."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,f1", "close", "Close", id="help-close"),
    ]

    def __init__(self, sections: Sequence[HelpSection]) -> None:
        super().__init__(id="help")
        self.sections = tuple(sections)

    def compose(self) -> ComposeResult:
        """Key tables, form help, a close button."""
        with Vertical(id="help-dialog", classes="dialog"):
            yield Static(Text("YADTQ dashboard · keys"), classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(self._body(), id="help-body")
            yield Button("Close (Esc)", id="help-close-button", variant="primary")
        yield Footer()

    def _body(self) -> Group:
        parts: list[Table | Text] = []
        for title, rows in self.sections:
            table = Table(title=Text(title, style="bold"), title_justify="left",
                          show_header=False, box=None, pad_edge=False)
            table.add_column("Keys", style="bold", no_wrap=True, width=18)
            table.add_column("Action", max_width=58)
            for keys, description in rows:
                table.add_row(Text(keys), Text(description))
            parts += [table, Text("")]
        parts += [Text("Submit form", style="bold"), Text(FORM_HELP)]
        return Group(*parts)

    def on_mount(self) -> None:
        """Scroll with the keyboard at once."""
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        """Back to where the user was."""
        self.dismiss(None)

    @on(Button.Pressed, "#help-close-button")
    def _close(self) -> None:
        self.dismiss(None)
