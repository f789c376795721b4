"""The submit form: type ``ADD 2 3`` and press Enter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Button, Input

from yadtq.registry import TaskSpec
from yadtq_tui.text import clean
from yadtq_tui.widgets.text_line import TextLine

PLACEHOLDER = "Type a task and press Enter, e.g. ADD 2 3 (later: ADD 2 3 in 30s)"


class TaskNameSuggester(Suggester):
    """Completes the first word to a known task name (``ad`` -> ``ADD ``)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=False)
        self.names: tuple[str, ...] = ()

    async def get_suggestion(self, value: str) -> str | None:
        """The known name that starts with what was typed, while the first word is being typed."""
        if not value or " " in value:
            return None
        matches = [n for n in self.names if n.casefold().startswith(value)]
        if len(matches) != 1 or len(matches[0]) == len(value):
            return None
        return matches[0] + " "


class SubmitForm(Vertical):
    """An input, a Submit button, and a line that shows the known tasks or the last outcome."""

    @dataclass
    class Submitted(Message):
        """The user asked to submit ``text`` (Enter in the input, or the button)."""

        form: SubmitForm
        text: str

        @property
        def control(self) -> SubmitForm:
            """The form that sent the message."""
            return self.form

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.suggester = TaskNameSuggester()
        self.hint = "Known tasks: (loading)"
        self._specs: dict[str, TaskSpec] = {}
        self._kind = "-hint"

    def compose(self) -> ComposeResult:
        """Input + button, then the message line."""
        with Horizontal(id="form-row"):
            yield Input(placeholder=PLACEHOLDER, id="task-input", suggester=self.suggester,
                        max_length=16 * 1024)
            yield Button("Submit", id="submit-button", variant="primary")
        yield TextLine(self.hint, id="form-message", classes="-hint")

    @property
    def input(self) -> Input:
        """The text input."""
        return self.query_one("#task-input", Input)

    def set_specs(self, specs: Sequence[TaskSpec]) -> None:
        """Show the known tasks' usages and complete their names."""
        self.suggester.names = tuple(s.name for s in specs)
        self._specs = {s.name.casefold(): s for s in specs}
        usages = " · ".join(clean(s.usage, 40) for s in specs) or "none"
        self.hint = f"Known tasks: {usages} · later: in 30s, at 2026-12-01T09:00"
        if self._kind == "-hint":
            self._message(self.hint_for(self.input.value), "-hint")

    def hint_for(self, text: str) -> str:
        """The usage of the task being typed, or the list of known tasks."""
        words = text.split()
        spec = self._specs.get(words[0].casefold()) if words else None
        if spec is None:
            return self.hint
        about = spec.description.strip().splitlines()[0] if spec.description.strip() else ""
        return (f"Usage: {clean(spec.usage, 60)}" + (f" — {clean(about, 80)}" if about else "")
                + " · later: in 30s, at 2026-12-01T09:00")

    def show_error(self, message: str) -> None:
        """Refuse the input in place: the text stays, the reason is shown, the input turns red."""
        self.input.add_class("-invalid")
        self._message(f"✘ {clean(message, 300)}", "-error")

    def show_ok(self, message: str) -> None:
        """Report a submitted task and empty the input for the next one."""
        self.input.remove_class("-invalid")
        self.input.value = ""
        self._message(f"✔ {clean(message, 300)}", "-ok")

    def _message(self, text: str, kind: str) -> None:
        line = self.query_one("#form-message", TextLine)
        line.show(text)
        self._kind = kind
        for cls in ("-hint", "-error", "-ok"):
            line.set_class(cls == kind, cls)

    @on(Input.Changed, "#task-input")
    def _edited(self, event: Input.Changed) -> None:
        if not event.value and self._kind == "-ok":
            return  # the form was emptied after a submit: keep saying what was submitted
        self.input.remove_class("-invalid")
        self._message(self.hint_for(event.value), "-hint")

    @on(Input.Submitted, "#task-input")
    @on(Button.Pressed, "#submit-button")
    def _submit(self, event: Message) -> None:
        event.stop()
        self.post_message(self.Submitted(self, self.input.value))
