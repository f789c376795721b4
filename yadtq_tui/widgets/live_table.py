"""A ``DataTable`` whose rows are keyed by id and updated in place, never cleared and rebuilt."""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

Row = tuple[str, Sequence[Text]]
"""A row to show: its key (a task or worker id) and one ``Text`` per column."""


def _signature(cells: Sequence[Text]) -> tuple[tuple[str, str], ...]:
    """What a row shows: a changed signature means cells to update."""
    return tuple((c.plain, str(c.style)) for c in cells)


class KeyedText(Text):
    """A ``Text`` cell that also knows its row's key, so rows can be put in a given order."""

    def __init__(self, text: str, row_key: str, style: str | Style = "") -> None:
        super().__init__(text, style=style, end="")
        self.row_key = row_key


class LiveTable(DataTable[Text]):
    """Rows keyed by id; ``sync_rows`` adds, removes, reorders and updates only what changed.

    While the table has the keyboard, the highlighted row stays on the same key (not the same
    index) across updates, so a key press acts on the row the user chose; while it does not and
    the cursor is on the first row, the cursor stays on the first row (it follows the newest).
    The scroll position is left alone, so a live table does not jump or flicker under the reader.
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes, cursor_type="row",
                         zebra_stripes=False)
        self._shown: dict[str, tuple[tuple[str, str], ...]] = {}

    def style_of(self, component: str) -> Style:
        """The rich style of one of this widget's component classes (set in the app's .tcss)."""
        return self.get_component_rich_style(component, partial=True)

    @property
    def highlighted_key(self) -> str | None:
        """The key of the highlighted row, if any."""
        if self.row_count == 0:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        key = self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return key

    def sync_rows(self, rows: Sequence[Row]) -> None:
        """Make the table show exactly ``rows``, in that order, touching only changed cells."""
        follow_top = not self.has_focus and self.cursor_row == 0
        keep = None if follow_top else self.highlighted_key
        wanted = {key for key, _ in rows}
        gone = [row_key for row_key in self.rows if row_key.value not in wanted]
        if gone and 2 * len(gone) > len(self.rows):
            self._rebuild(rows, keep)  # mostly a new page (a busy queue): one clear, not n removals
            return
        for row_key in gone:
            self.remove_row(row_key)
            self._shown.pop(row_key.value or "", None)
        columns = [c.key for c in self.ordered_columns]
        for key, cells in rows:
            signature = _signature(cells)
            old = self._shown.get(key)
            if old is None:
                first = KeyedText(cells[0].plain, key, cells[0].style)
                self.add_row(first, *cells[1:], key=key)
            elif old != signature:
                for i, (new, before) in enumerate(zip(signature, old, strict=True)):
                    if new != before:
                        cell = KeyedText(new[0], key, cells[0].style) if i == 0 else cells[i]
                        # Columns grow to fit but never shrink: asking DataTable to re-measure a
                        # narrower cell makes it measure the whole column (slow, and jittery).
                        grow = cell.cell_len > self.columns[columns[i]].content_width
                        self.update_cell(key, columns[i], cell, update_width=grow)
            self._shown[key] = signature
        self._reorder([key for key, _ in rows])
        if keep is not None and keep in wanted:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)

    def _rebuild(self, rows: Sequence[Row], keep: str | None) -> None:
        """Show ``rows`` from scratch, keeping the scroll position and the highlighted key.
        ``DataTable.remove_row`` renumbers every row, so removing most of a page row by row costs
        O(rows²); a page that is mostly new is cleared and added in order instead."""
        scroll = self.scroll_y
        self.clear()
        self._shown.clear()
        for key, cells in rows:
            self.add_row(KeyedText(cells[0].plain, key, cells[0].style), *cells[1:], key=key)
            self._shown[key] = _signature(cells)
        self.scroll_to(y=scroll, animate=False, immediate=True)
        if keep is not None and keep in self._shown:
            self.move_cursor(row=self.get_row_index(keep), scroll=False)

    def _reorder(self, order: list[str]) -> None:
        if [row.key.value for row in self.ordered_rows] == order:
            return
        rank = {key: i for i, key in enumerate(order)}
        first_column = self.ordered_columns[0].key
        self.sort(first_column, key=lambda cell: rank.get(getattr(cell, "row_key", ""), len(rank)))

    def clear_rows(self) -> None:
        """Remove every row (used when the filter changes: a different list, not an update)."""
        self.clear()
        self._shown.clear()
