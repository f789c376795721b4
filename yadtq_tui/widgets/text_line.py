"""A ``Static`` for a line of plain text that the dashboard sets on every refresh."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static


class TextLine(Static):
    """Plain text (never markup) that is repainted only when it changed, and laid out again only
    when its size may have: a new layout re-arranges the whole screen, a repaint only this line.

    The layout is skipped when the new text is one line of the same width as the old one and fits
    the widget (so it cannot wrap differently); anything else (a longer count, several lines) gets
    ``Static.update``'s usual layout.
    """

    def __init__(self, text: str = "", *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(Text(text), id=id, classes=classes)
        self.text = text
        """The text shown."""

    def show(self, text: str) -> None:
        """Show ``text`` (literally)."""
        if text == self.text:
            return
        width = cell_len(text)
        same_size = ("\n" not in text and "\n" not in self.text
                     and width == cell_len(self.text) and width <= self.size.width)
        self.text = text
        self.update(Text(text), layout=not same_size)
