"""The live tables' shortcuts are invisible: a cell rendered once and reused, a row whose cells
were kept, a line of text not laid out again, all show exactly what a full repaint would show,
and a click lands on the row under the mouse."""

from __future__ import annotations

import random
from typing import Any

import pytest
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Static

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    create,
    focus_table,
    frozen_app,
    start,
    table_text,
    task_id,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.due import DueSet
from yadtq.wire import Envelope
from yadtq_tui.widgets import TextLine
from yadtq_tui.widgets.live_table import LiveTable, Row
from yadtq_tui.widgets.task_table import TaskTable

pytestmark = pytest.mark.tui

WORDS = ("", "a", "bb", "ccc", "[red]x[/red]", "\\x1b[2J", "wide 漢字", "✔ completed", "12m05s")
STYLES = ("", "bold", "red", "green on black", "italic red", "strike")


class Table(LiveTable):
    def on_mount(self) -> None:
        for key in ("one", "two", "three"):
            self.add_column(key.title(), key=key)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("above", id="above")
        yield Table(id="table")


class FixedHeightApp(TableApp):
    """The table as tall as on the dashboard: its rows are painted before they are measured."""

    CSS = "Table { height: 10; }"


def painted(table: LiveTable) -> list[list[tuple[str, Style | None, dict[str, Any]]]]:
    """What the table paints now: each line's segments as text, style without metadata, and the
    metadata (which row and column a click there means)."""
    table.refresh()  # every line, not only the ones a change marked
    strips: list[Strip] = table.render_lines(Region(0, 0, table.size.width, table.size.height))
    return [[(s.text, s.style.clear_meta_and_links() if s.style else None,
              s.style.meta if s.style else {}) for s in strip] for strip in strips]


def random_rows(rng: random.Random, keys: list[str]) -> list[Row]:
    return [(key, [Text(rng.choice(WORDS) + (key if i == 0 else ""), style=rng.choice(STYLES))
                   for i in range(3)]) for key in keys]


async def test_reused_cells_paint_what_a_full_repaint_paints() -> None:
    """Random pages (rows added, removed, moved, cells changed in text or only in style), the
    cursor moved, the focus and the theme changed: after each step the painted table (text,
    styles and the click metadata of every cell) equals a repaint with every cache dropped."""
    rng = random.Random(20261206)
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(Table)
        pool = [f"k{i}" for i in range(40)]
        rows: list[Row] = []
        for step in range(60):
            action = rng.random()
            if action < 0.3 or not rows:  # a new page: some rows kept, moved, new ones on top
                kept = [r for r in rows if rng.random() < 0.7]
                rng.shuffle(kept) if rng.random() < 0.3 else None
                new_keys = [k for k in rng.sample(pool, rng.randint(0, 6))
                            if k not in {key for key, _ in kept}]
                rows = random_rows(rng, new_keys) + kept
            elif action < 0.6:  # a few cells change, in text or only in style
                rows = [(key, [Text(c.plain if rng.random() < 0.5 else rng.choice(WORDS),
                                    style=rng.choice(STYLES)) if rng.random() < 0.3 else c
                               for c in cells]) for key, cells in rows]
            elif action < 0.75 and table.row_count:
                table.move_cursor(row=rng.randrange(table.row_count), scroll=False)
            elif action < 0.85:
                table.focus() if not table.has_focus else app.query_one("#above").focus()
            elif action < 0.9:
                app.theme = rng.choice(("textual-dark", "textual-light", "nord"))
            else:
                table.scroll_to(y=rng.randint(0, 10), animate=False, immediate=True)
            table.sync_rows(rows)
            await pilot.pause()
            shown = painted(table)
            table.notify_style_update()  # drops every rendering the table kept
            assert shown == painted(table), f"step {step}"
            expected = [key for key, _ in rows]
            assert [r.key.value for r in table.ordered_rows] == expected, f"step {step}"


async def test_a_row_painted_before_its_columns_widened_is_painted_again_after() -> None:
    """A busy event loop can paint the table between a new row and the idle pass that widens the
    columns to fit it: the row is drawn at the headers' widths (``a3 MUL ◷ sch``). ``DataTable``
    kept that drawing after the columns widened, next to a header drawn at the new widths (two
    snapshot tests failed so in a loaded CI run). It must show what a repaint from scratch shows."""
    app = FixedHeightApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        table.sync_rows([("k1", [Text("a3e9984a-long"), Text("scheduled and more"), Text("x")])])
        painted(table)  # before the idle pass: the columns are still as wide as their headers
        await pilot.pause()
        shown = painted(table)
        table.notify_style_update()  # drops every rendering the table kept
        assert shown == painted(table)
        assert "a3e9984a-long" in "".join(text for text, _, _ in shown[1])


async def test_a_click_after_new_rows_pushed_the_page_down_lands_on_the_row_under_it(
        fake_client: Client, clock: FrozenClock) -> None:
    """End to end through the mouse: rows that moved down (nothing in them changed, time is
    frozen) are clicked by their new position. (Moving the mouse onto the table repaints it, so
    the stale-index case itself is pinned by the random test above, which compares metadata.)"""
    ids = [create(fake_client, i, "ADD", (i, i), clock.now - 100 + i) for i in range(6)]
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        table = app.dashboard.table
        new = [create(fake_client, 10 + i, "MUL", (i, 2), clock.now - 50 + i) for i in range(3)]
        await wait_for(pilot, lambda: table_text(app)[0][0] == new[-1][:8], what="the new rows")
        await wait_refreshed(pilot)
        await pilot.pause()
        target = ids[2]
        row = table.get_row_index(target)
        assert row == 6
        await pilot.click(TaskTable, offset=(3, table.header_height + row))
        await wait_for(pilot, lambda: table.highlighted_key == target, what="the clicked row")


async def test_an_unchanged_refresh_touches_no_widget(fake_client: Client,
                                                      clock: FrozenClock) -> None:
    """The same data again (time frozen): no cell, row or line of text is set again."""
    for i in range(5):
        create(fake_client, i, "ADD", (i, i), clock.now - 100 + i)
    start(fake_client, "node-a-1", create(fake_client, 9, "SLEEP", (5,), clock.now - 3))
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot, 2)
        screen = app.dashboard
        assert screen.last is not None
        calls: list[str] = []
        for widget in screen.query(LiveTable):
            for name in ("add_row", "remove_row", "update_cell", "sort", "clear"):
                original = getattr(widget, name)
                setattr(widget, name, lambda *a, _n=name, _o=original, **k: (
                    calls.append(_n), _o(*a, **k))[1])
        for line in screen.query(TextLine):
            original = line.update
            setattr(line, "update", lambda *a, _l=line, _o=original, **k: (
                calls.append(f"update #{_l.id}"), _o(*a, **k))[1])
        screen.apply_snapshot(screen.last)
        assert calls == []
        clock.now += 1  # a second later every age ticks: only the age cells change
        screen.apply_snapshot(screen.last)
        assert calls and set(calls) == {"update_cell"}
        assert [r[7] for r in table_text(app)] == ["4s", "1m37s", "1m38s", "1m39s", "1m40s",
                                                  "1m41s"]


async def test_a_due_time_ticks_while_the_task_record_stays_the_same(
        fake_client: Client, clock: FrozenClock) -> None:
    later = Envelope(task_id(1), "ADD", (1, 2), clock.now)
    DueSet(fake_client.store).schedule([later], clock.now + 30, relative=False)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(table_text(app)) and
                       table_text(app)[0][4].startswith("due in 30s"), what="the due time")
        clock.now += 12
        await wait_for(pilot, lambda: table_text(app)[0][4].startswith("due in 18s"),
                       what="the due time 12 s later")
        assert table_text(app)[0][7] == "12s"


async def test_a_new_theme_restyles_the_cells_kept_from_the_last_refresh(
        fake_client: Client, clock: FrozenClock) -> None:
    create(fake_client, 1, "ADD", (1, 2), clock.now - 5)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        table = app.dashboard.table
        await focus_table(pilot)
        before = table.get_row_at(0)[3].style
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await wait_refreshed(pilot, 2)
        after = table.get_row_at(0)[3].style
        assert after == table.style_of("task-table--queued") and after != before


async def test_a_text_line_grows_and_shrinks_with_its_text() -> None:
    """A longer text gets a new layout (its neighbour moves right); the same width does not need
    one but is shown; a text that would wrap is laid out again."""

    class LineApp(App[None]):
        CSS = "Horizontal { height: 1; } TextLine { width: auto; }"

        def compose(self) -> ComposeResult:
            from textual.containers import Horizontal
            with Horizontal():
                yield TextLine("queued 9", id="count")
                yield Static("next", id="next")

    app = LineApp()
    async with app.run_test(size=(40, 5)) as pilot:
        line, nxt = app.query_one(TextLine), app.query_one("#next", Static)
        assert nxt.region.x == 8
        line.show("queued 10")
        await pilot.pause()
        assert (line.size.width, nxt.region.x) == (9, 9)
        line.show("queued 11")
        await pilot.pause()
        assert str(line.render()) == "queued 11" and nxt.region.x == 9
        line.show("[b]x[/b]")  # literal, never markup
        await pilot.pause()
        assert str(line.render()) == "[b]x[/b]" and nxt.region.x == 8
