"""Pilot tests: what the dashboard shows, and the submit form (fakeredis + FakeBroker)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from textual.widgets import Static

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    create,
    fast_app,
    finish,
    focus_table,
    form_message,
    frozen_app,
    messages,
    populate_busy,
    settle,
    start,
    static_text,
    table_text,
    task_id,
    type_and_submit,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.models import TaskState
from yadtq.testing import FakeBroker
from yadtq_tui.screens import (
    DashboardScreen,
)
from yadtq_tui.widgets import StatusBar

pytestmark = pytest.mark.tui

# ---------------------------------------------------------------------- showing tasks
async def test_shows_every_state_newest_first_with_counts(fake_client: Client,
                                                          clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        rows = table_text(app)
        assert [r[0] for r in rows] == [ids[k][:8] for k in (
            "queued2", "queued1", "done3", "sleeping", "divzero", "done2", "done1")]
        states = {r[3] for r in rows}
        assert states == {"○ queued", "▶ in-progress", "✔ completed", "✘ failed"}
        failed = next(r for r in rows if r[1] == "DIV")
        assert failed[4] == "PermanentTaskError: division by zero"
        assert failed[5] == "node-b-1388" and failed[6] == "1"
        assert rows[0][7] == "5s"  # age from the injected clock
        bar = app.screen.query_one(StatusBar)
        assert "queued 2" in str(bar.query_one("#count-queued", Static).render())
        assert "completed 3" in str(bar.query_one("#count-completed", Static).render())
        assert "total 7" in str(bar.query_one("#count-total", Static).render())
        assert "newest 7 of 7" in static_text(app, "#tasks-title")


async def test_worker_panel_shows_alive_late_and_dead(fake_client: Client,
                                                      clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        panel = app.screen.query_one("#workers")
        rows = {r.key.value: [c.plain for c in panel.get_row(r.key)] for r in panel.ordered_rows}
        assert rows["node-a-1201"][3] == "● alive"
        assert rows["node-a-1201"][4] == f"{ids['sleeping'][:8]} SLEEP"
        assert rows["node-a-1201"][5:8] == ["2", "0", "1h02m"]
        assert rows["node-b-1388"][3] == "◐ late"
        assert rows["node-c-977"][3] == "✘ dead"
        assert [r.key.value for r in panel.ordered_rows] == ["node-a-1201", "node-b-1388",
                                                             "node-c-977"]
        assert "1 alive · 1 late · 1 dead" in static_text(app, "#workers-title")


async def test_table_updates_in_place_and_keeps_the_cursor(fake_client: Client) -> None:
    now = time.time()
    first = create(fake_client, 1, "ADD", (1, 2), now - 10)
    second = create(fake_client, 2, "ADD", (3, 4), now - 5)
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        table = app.dashboard.table
        await pilot.press("down")
        assert table.highlighted_key == first
        cleared: list[bool] = []
        original_clear = table.clear
        table.clear = lambda *a, **k: cleared.append(True) or original_clear(*a, **k)  # type: ignore[method-assign]

        start(fake_client, "w-1", first)
        started = time.monotonic()
        await wait_for(pilot, lambda: table_text(app)[1][3] == "▶ in-progress", 1.5,
                       "the state change")
        assert time.monotonic() - started < 1.0
        finish(fake_client, "w-1", first, TaskState.COMPLETED, result=3)
        await wait_for(pilot, lambda: table_text(app)[1][4] == "3", 1.5, "the result")
        create(fake_client, 3, "MUL", (5, 6), time.time())
        await wait_for(pilot, lambda: len(table_text(app)) == 3, 1.5, "the new task")
        assert [r[0] for r in table_text(app)] == [task_id(3)[:8], second[:8], first[:8]]
        assert table.highlighted_key == first  # the cursor stayed on its task
        assert not cleared  # rows were updated, never cleared and rebuilt


async def test_an_unfocused_table_keeps_the_cursor_on_the_newest_task(fake_client: Client) -> None:
    now = time.time()
    create(fake_client, 1, "ADD", (1, 2), now - 10)
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        table = app.dashboard.table
        assert not table.has_focus and table.cursor_row == 0
        newest = create(fake_client, 2, "ADD", (3, 4), now - 5)
        await wait_for(pilot, lambda: len(table_text(app)) == 2, what="the new task")
        assert table.cursor_row == 0 and table.highlighted_key == newest


async def test_table_shows_one_page_only(fake_client: Client) -> None:
    now = time.time()
    for i in range(30):
        create(fake_client, i, "ADD", (i, i), now - 100 + i)
    calls: list[tuple[Any, int]] = []
    real_view = fake_client.view

    def spy(state: Any = None, limit: int = 50, seconds: int = 60) -> Any:
        calls.append((state, limit))
        return real_view(state, limit, seconds)

    fake_client.view = spy  # type: ignore[method-assign]
    app = fast_app(fake_client, page_size=10)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        assert len(table_text(app)) == 10
        assert table_text(app)[0][0] == task_id(29)[:8]
        assert "newest 10 of 30" in static_text(app, "#tasks-title")
        assert all(limit == 10 for _, limit in calls)


async def test_a_mostly_new_page_is_rebuilt_and_keeps_the_cursor(fake_client: Client) -> None:
    """A busy queue replaces most of the page between refreshes: the table is cleared and filled
    in order (fast) instead of removing row by row, and the highlighted task stays highlighted."""
    now = time.time()
    ids = [create(fake_client, i, "ADD", (i, i), now - 100 + i) for i in range(10)]
    app = fast_app(fake_client, page_size=10)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        table = app.dashboard.table
        await pilot.press("down")
        chosen = ids[8]  # the second newest: still on the page after 8 newer tasks arrive
        assert table.highlighted_key == chosen
        cleared: list[bool] = []
        original_clear = table.clear
        table.clear = lambda *a, **k: cleared.append(True) or original_clear(*a, **k)  # type: ignore[method-assign]
        new = [create(fake_client, 10 + i, "MUL", (i, 2), now - 50 + i) for i in range(8)]
        await wait_for(pilot, lambda: table_text(app)[0][0] == new[-1][:8], 1.5, "the new page")
        assert [r[0] for r in table_text(app)] == [t[:8] for t in [*new[::-1], ids[9], ids[8]]]
        assert cleared  # the rebuild path, not 8 row removals
        assert table.highlighted_key == chosen


# ---------------------------------------------------------------------- submit form
async def test_submit_enqueues_and_clears_the_form(fake_client: Client,
                                                   fake_broker: FakeBroker) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await type_and_submit(pilot, "ADD 2 3")
        assert len(messages(fake_broker, fake_client)) == 1
        assert app.dashboard.form.input.value == ""
        assert "Submitted ADD 2 3 as task" in form_message(app)
        await wait_for(pilot, lambda: len(table_text(app)) == 1, what="the new row")
        row = table_text(app)[0]
        assert row[1:4] == ["ADD", "2 3", "○ queued"]


async def test_submit_ignores_case_and_uses_registered_tasks(fake_client: Client,
                                                             fake_broker: FakeBroker) -> None:
    fake_client.store.publish_specs([{"name": "RESIZE", "params": [["path", "str"],
                                                                   ["width", "int"]]}])
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        assert "RESIZE PATH WIDTH" in form_message(app)  # the hint lists published tasks
        await type_and_submit(pilot, "add 2 3")
        await type_and_submit(pilot, "resize a.png 640")
        assert len(messages(fake_broker, fake_client)) == 2
        names = sorted(t.name for t in fake_client.list())
        assert names == ["ADD", "RESIZE"]


@pytest.mark.parametrize(("text", "expected"), [
    ("FOO 1 2", "unknown task 'FOO'"),
    ("ADD 1", "ADD takes 2 arguments, got 1"),
    ("ADD 1 2 3", "ADD takes 2 arguments, got 3"),
    ("ADD 1 x", "'x' is not a number"),
    ("ADD nan 1", "NaN and infinity are refused"),
    ("", "empty input"),
    ("   ", "empty input"),
    ('ADD "1 2', "cannot split"),
])
async def test_invalid_input_is_refused_in_place(fake_client: Client, fake_broker: FakeBroker,
                                                 text: str, expected: str) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        before = fake_client.counts()
        await type_and_submit(pilot, text)
        assert expected in form_message(app)
        assert form_message(app).startswith("✘")
        form_input = app.dashboard.form.input
        assert form_input.value == text  # the typed text stays
        assert form_input.has_class("-invalid")
        assert fake_client.counts() == before  # nothing recorded
        assert messages(fake_broker, fake_client) == []  # nothing enqueued
        assert fake_client.list() == []
        if text:
            await pilot.press("backspace")  # editing clears the error
            assert not form_input.has_class("-invalid")


async def test_typing_letters_in_the_form_never_triggers_bindings(fake_client: Client) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await pilot.press(*"tfvirRysq?")
        await settle(pilot)
        assert app.dashboard.form.input.value == "tfvirRysq?"
        assert isinstance(app.screen, DashboardScreen)
        assert app.dashboard.state_filter is None
        assert app.is_running


async def test_submit_button_works_with_the_mouse(fake_client: Client,
                                                  fake_broker: FakeBroker) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        app.dashboard.form.input.value = "MUL 6 7"
        await pilot.click("#submit-button")
        await settle(pilot)
        assert len(messages(fake_broker, fake_client)) == 1
        assert "Submitted MUL 6 7" in form_message(app)
