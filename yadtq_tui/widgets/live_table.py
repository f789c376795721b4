"""A ``DataTable`` whose rows are keyed by id and updated in place, never cleared and rebuilt."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import Column, RowKey
from textual.widgets.data_table import Row as DataTableRow

Row = tuple[str, Sequence[Text]]
"""A row to show: its key (a task or worker id) and one ``Text`` per column."""
Lines = list[list[Segment]]
"""One rendered cell: a list of segments per line."""

CELLS_CACHED = 4096
"""Rendered cells kept (a 100-row page of 8 columns, with and without the cursor, fits)."""


def _same(new: Text, old: Text) -> bool:
    """Whether cell ``new`` shows what ``old`` shows (the same object when its row's widget kept
    it: then no comparison at all)."""
    return new is old or (new.plain == old.plain and str(new.style) == str(old.style))


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
        self._shown: dict[str, Sequence[Text]] = {}
        """The cells each row shows, by key."""
        self._drawn: LRUCache[Hashable, tuple[int, int, Lines]] = LRUCache(CELLS_CACHED)
        """Rendered cells by what they show, with the coordinate their mouse metadata names."""
        self._look: Hashable = None
        """What else a cell's rendering depends on (focus, cursor settings), per repaint."""
        self._painting: tuple[list[Column], list[DataTableRow]] | None = None
        """The columns and rows in order, while a repaint runs."""
        self._removing = False

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
        self._remove(gone)
        columns = [c.key for c in self.ordered_columns]
        for key, cells in rows:
            old = self._shown.get(key)
            if old is None:
                first = KeyedText(cells[0].plain, key, cells[0].style)
                self.add_row(first, *cells[1:], key=key)
            elif old is not cells:
                for i, (new, before) in enumerate(zip(cells, old, strict=True)):
                    if not _same(new, before):
                        cell = KeyedText(new.plain, key, new.style) if i == 0 else new
                        # Columns grow to fit but never shrink: asking DataTable to re-measure a
                        # narrower cell makes it measure the whole column (slow, and jittery).
                        grow = cell.cell_len > self.columns[columns[i]].content_width
                        self.update_cell(key, columns[i], cell, update_width=grow)
            self._shown[key] = cells
        self._reorder([key for key, _ in rows])
        if keep is not None and keep in wanted:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)

    def _remove(self, keys: Sequence[RowKey]) -> None:
        """``remove_row`` each of ``keys``. Each removal repaints the whole table, so the repaint
        of the hovered cell that each also asks for (a walk over every row) is skipped."""
        self._removing = True
        try:
            for row_key in keys:
                self.remove_row(row_key)
                self._shown.pop(row_key.value or "", None)
        finally:
            self._removing = False

    async def _on_idle(self, event: events.Idle) -> None:
        """``DataTable`` measures new and changed cells here and widens their columns, but keys
        its rendered rows and lines by its update count, not by the columns' widths: a row painted
        before this pass (a busy loop paints between a new row and the idle pass) stayed drawn at
        the old widths, beside a header drawn at the new ones. A widening now counts as an update."""
        before = [column.content_width for column in self.ordered_columns]
        await super()._on_idle(event)
        if [column.content_width for column in self.ordered_columns] != before:
            self._update_count += 1
            self.refresh()

    def watch_hover_coordinate(self, old: Coordinate, value: Coordinate) -> None:
        """Repaint the cells the mouse left and entered (not while removing rows: see
        ``_remove``)."""
        if not self._removing:
            super().watch_hover_coordinate(old, value)

    # ------------------------------------------------------------------ rendering
    def render_lines(self, crop: Region) -> list[Strip]:
        """Note what the cells' look depends on besides their content, then paint."""
        self._look = (self.get_pseudo_class_state(), self.show_cursor, self.cursor_type,
                      self.cursor_foreground_priority, self.cursor_background_priority,
                      self.fixed_rows, self.fixed_columns, self.cell_padding,
                      getattr(self, "_show_hover_cursor", None))
        self._painting = (self.ordered_columns, self.ordered_rows)
        try:
            return super().render_lines(crop)
        finally:
            self._painting = None

    def notify_style_update(self) -> None:
        """A new theme or stylesheet: render every cell again."""
        super().notify_style_update()
        self._drawn.clear()

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> Lines:
        """A cell's lines, rendered once per content and look.

        ``DataTable`` caches rendered cells by its update count, so after any change (a new row,
        an age that ticked) it renders every visible cell again; here a cell is rendered again
        only when what it shows changed. A cell drawn before at another index (its row moved)
        is given its new coordinate in the mouse metadata that clicks read."""
        columns, rows = self._painting or ((), ())
        if not (0 <= column_index < len(columns) and -1 <= row_index < len(rows)):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        column = columns[column_index]
        if row_index == -1:
            value: object = column.label
            height = self.header_height
        else:
            row = rows[row_index]
            value = self.get_cell(row.key, column.key)
            height = row.height
        if not isinstance(value, Text):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (row_index == -1, column.key, value.plain, str(value.style), tuple(value.spans),
               value.justify, value.overflow, value.no_wrap, height, base_style, width, cursor,
               hover, self._look)
        drawn = self._drawn.get(key)
        if drawn is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor,
                                         hover)
        elif drawn[:2] == (row_index, column_index):
            return drawn[2]
        else:
            meta = Style.from_meta({"row": row_index, "column": column_index})
            lines = [list(Segment.apply_style(line, post_style=meta)) for line in drawn[2]]
        self._drawn[key] = (row_index, column_index, lines)
        return lines

    def _rebuild(self, rows: Sequence[Row], keep: str | None) -> None:
        """Show ``rows`` from scratch, keeping the scroll position and the highlighted key.
        ``DataTable.remove_row`` renumbers every row, so removing most of a page row by row costs
        O(rows²); a page that is mostly new is cleared and added in order instead."""
        scroll = self.scroll_y
        self.clear()
        self._shown.clear()
        for key, cells in rows:
            self.add_row(KeyedText(cells[0].plain, key, cells[0].style), *cells[1:], key=key)
            self._shown[key] = cells
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
