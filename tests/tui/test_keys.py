"""Pilot tests of every key binding: filter, view, view by id, reset, retry, help, exit, mouse."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Input

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    fast_app,
    focus_table,
    frozen_app,
    messages,
    populate_busy,
    screen_text,
    settle,
    static_text,
    table_text,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.models import TaskState
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope
from yadtq_tui.screens import (
    ConfirmResetScreen,
    DashboardScreen,
    DetailScreen,
    HelpScreen,
    TaskIdPrompt,
)

pytestmark = pytest.mark.tui

# ---------------------------------------------------------------------- keys on the table
async def test_t_focuses_the_table_and_s_the_form(fake_client: Client) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        assert isinstance(app.focused, Input)
        await pilot.press("escape")
        assert app.focused is app.dashboard.table
        await pilot.press("s")
        assert isinstance(app.focused, Input)
        app.dashboard.table.focus()
        await pilot.press("t")
        assert app.focused is app.dashboard.table


async def test_f_cycles_the_state_filter(fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    fake_client.cancel(ids["queued2"])
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        seen = []
        for expected, rows in ((TaskState.SCHEDULED, 0), (TaskState.QUEUED, 1),
                               (TaskState.IN_PROGRESS, 1), (TaskState.COMPLETED, 3),
                               (TaskState.FAILED, 1), (TaskState.CANCELLED, 1), (None, 7)):
            await pilot.press("f")
            assert app.dashboard.state_filter == expected
            await wait_refreshed(pilot)
            states = {r[3].split(" ", 1)[1] for r in table_text(app)}
            assert len(table_text(app)) == rows
            if expected is not None:
                assert states == ({expected.value} if rows else set())
                assert f"Tasks · {expected.value}" in static_text(app, "#tasks-title")
            seen.append(expected)
        assert seen[-1] is None


async def test_v_and_enter_open_the_detail_view(fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        await pilot.press("down", "down", "down", "down")  # the failed DIV task
        assert app.dashboard.table.highlighted_key == ids["divzero"]
        await pilot.press("v")
        assert isinstance(app.screen, DetailScreen)
        assert ids["divzero"] in screen_text(app)
        detail = app.screen.shown
        assert detail.id == ids["divzero"]
        await wait_for(pilot, lambda: len(app.screen.shown.history) == 3, what="the full task")
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("escape")


async def test_detail_view_shows_every_field_and_history(fake_client: Client,
                                                         clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        app.dashboard.open_detail(fake_client.get(ids["divzero"]))
        await pilot.pause()
        shown = screen_text(app)
        for expected in (ids["divzero"], "DIV", "1 0", "✘ failed",
                         "PermanentTaskError: division by zero", "node-b-1388",
                         "History (3 entries)", "○ queued", "▶ in-progress",
                         "2024-11-28 13:16:40.000", "2024-11-28 13:19:57.000"):
            assert expected in shown, expected


async def test_i_views_a_task_by_full_or_short_id(fake_client: Client,
                                                  clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        await pilot.press("i")
        assert isinstance(app.screen, TaskIdPrompt)
        prompt_input = app.screen.query_one("#id-input", Input)
        prompt_input.value = "0123456789abcdef0123456789abcdef"  # pasted
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TaskIdPrompt)  # not found: stays open, text kept
        assert "no task with id" in static_text(app, "#id-message")
        assert app.screen.query_one("#id-input", Input).value.startswith("0123")
        prompt_input.value = ids["done2"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.shown.id == ids["done2"]
        await pilot.press("escape")
        await pilot.press("i")
        await pilot.press(*ids["done1"][:8], "enter")  # the short id shown in the table
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.shown.id == ids["done1"]
        await pilot.press("escape")
        await pilot.press("i", "escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_i_finds_a_short_id_that_is_not_on_the_page_and_refuses_a_shared_one(
        fake_client: Client, clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    off_page = "feed" + "1" * 28
    fake_client.store.create([Envelope(off_page, "ADD", (1, 2), clock.now - 10**6)])  # oldest
    fake_client.store.create([Envelope("feed" + "2" * 28, "ADD", (2, 3), clock.now - 10**6)])
    app = frozen_app(fake_client, clock, page_size=5)  # the 5 newest: ours are the oldest
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        assert "feed1111" not in screen_text(app)  # not on the table's page
        await focus_table(pilot)
        await pilot.press("i", *"feed", "enter")
        await settle(pilot)
        assert isinstance(app.screen, TaskIdPrompt)  # shared by two ids: nothing guessed
        assert "feed is the start of more than one task id" in static_text(app, "#id-message")
        await pilot.press("escape", "i", *off_page[:8], "enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.shown.id == off_page


async def test_reset_asks_first_and_cancel_is_the_default(fake_client: Client,
                                                          clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmResetScreen)
        assert app.focused is not None and app.focused.id == "reset-cancel"
        assert "all 7 tasks" in static_text(app, "#reset-text")
        await pilot.press("enter")  # the default button: Cancel
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert fake_client.total() == 7
        await pilot.press("r", "escape")
        await settle(pilot)
        assert fake_client.total() == 7
        await pilot.press("r")
        await pilot.click("#reset-cancel")  # the mouse works too
        await settle(pilot)
        assert fake_client.total() == 7


async def test_reset_confirmed_deletes_every_task(fake_client: Client, clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        await pilot.press("r", "right", "enter")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert fake_client.total() == 0
        assert sum(fake_client.counts().values()) == 0
        await wait_for(pilot, lambda: table_text(app) == [], what="the empty table")
        assert any("deleted 7 tasks" in n.message for n in app.notified)


async def test_reset_confirmed_with_the_mouse(fake_client: Client, clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        await pilot.press("r")
        await pilot.click("#reset-confirm")
        await settle(pilot)
        assert fake_client.total() == 0


@pytest.mark.parametrize("key", ["y", "R"])
async def test_retry_requeues_a_failed_task_as_a_new_attempt(fake_client: Client,
                                                             fake_broker: FakeBroker,
                                                             clock: FrozenClock, key: str) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        await pilot.press("down", "down", "down", "down")
        assert app.dashboard.table.highlighted_key == ids["divzero"]
        await pilot.press(key)
        await settle(pilot)
        task = fake_client.get(ids["divzero"])
        assert task.state is TaskState.QUEUED
        assert task.history[-1].note == "retry requested"
        assert len(messages(fake_broker, fake_client)) == 1  # sent again, same id
        notes = [n.message for n in app.notified]
        assert any("attempt 2 of the same task" in n and ids["divzero"][:8] in n for n in notes)
        await wait_for(pilot, lambda: table_text(app)[4][3] == "○ queued", what="the new state")
        assert table_text(app)[4][0] == ids["divzero"][:8]  # same row, same id


async def test_retry_refuses_tasks_that_did_not_fail(fake_client: Client, fake_broker: FakeBroker,
                                                     clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        await pilot.press("y")  # the newest task is queued
        await settle(pilot)
        assert any("Only failed tasks can be retried" in n.message for n in app.notified)
        assert messages(fake_broker, fake_client) == []


async def test_retry_from_the_detail_view(fake_client: Client, fake_broker: FakeBroker,
                                          clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        app.dashboard.open_detail(fake_client.get(ids["divzero"]))
        await pilot.pause()
        assert not app.screen.query_one("#detail-retry-button", Button).disabled
        await pilot.click("#detail-retry-button")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert fake_client.get(ids["divzero"]).state is TaskState.QUEUED


async def test_help_screen_lists_every_binding(fake_client: Client) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await pilot.press("f1")  # works while typing in the form
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for words in ("Retry the highlighted failed task", "Delete every task", "Exit the dashboard",
                      "View a task by its (short) id", "Show all → scheduled → queued"):
            assert words in text, words
        await pilot.press("escape")
        await focus_table(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, DashboardScreen)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_exit_keys(fake_client: Client, key: str) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        if key == "q":
            await focus_table(pilot)
        await pilot.press(key)
        await pilot.pause()
        assert not app.is_running


async def test_clicking_a_row_highlights_it(fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        table = app.dashboard.table
        await pilot.click("#tasks", offset=(5, 3))  # header is line 0: third task
        assert table.highlighted_key == ids["done3"]


async def test_u_cycles_the_queue_filter(fake_client: Client) -> None:
    """Every queue -> each queue seen (sorted) -> every queue; the Queue column is the last."""
    mails = fake_client.submit_many([("ADD", [i, 1]) for i in range(2)], queue="emails")
    bulk = fake_client.submit_many([("ADD", [i, 2]) for i in range(3)], queue="bulk")
    plain = fake_client.submit("ADD", [0, 3])
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await focus_table(pilot)
        assert sorted(r[-1] for r in table_text(app)) == ["bulk"] * 3 + ["default"] + ["emails"] * 2
        for expected, ids in (("bulk", bulk), ("default", [plain]), ("emails", mails),
                              (None, [*mails, *bulk, plain])):
            await pilot.press("u")
            assert app.dashboard.queue_filter == expected
            await wait_for(pilot, lambda ids=ids: len(table_text(app)) == len(ids),
                           what=f"the tasks of {expected}")
            assert {r[0] for r in table_text(app)} == {i[:8] for i in ids}
            if expected is not None:
                assert f"queue {expected}" in static_text(app, "#tasks-title")
