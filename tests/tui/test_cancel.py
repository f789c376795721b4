"""The dashboard's cancel key (``c`` on the task table): what it does to each kind of task, what
the notification area says, and how a cancelled task looks (fakeredis + FakeBroker)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    RedisSwitch,
    focus_table,
    frozen_app,
    populate_busy,
    table_text,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.models import TaskState
from yadtq_tui.app import YadtqApp
from yadtq_tui.screens import HelpScreen

pytestmark = pytest.mark.tui


async def _highlight(pilot: Any, app: YadtqApp, task_id: str) -> None:
    """Put the table's cursor on ``task_id``'s row (from the form: Esc first)."""
    await focus_table(pilot)
    table = app.dashboard.table
    table.move_cursor(row=table.get_row_index(task_id))
    await pilot.pause()
    assert table.highlighted_key == task_id


async def _notice(pilot: Any, app: YadtqApp, count: int = 1) -> tuple[str, str]:
    await wait_for(pilot, lambda: len(app.notified) >= count, what="a notification")
    notice = app.notified[count - 1]
    return notice.message, notice.severity


async def test_c_cancels_a_queued_task_and_the_row_shows_it(fake_client: Client,
                                                           clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await _highlight(pilot, app, ids["queued1"])
        await pilot.press("c")
        message, severity = await _notice(pilot, app)
        short = ids["queued1"][:8]
        assert (message, severity) == (
            f"Cancelled ADD 40 2 (task {short}): it was queued and will not start.", "information")
        assert fake_client.get(ids["queued1"]).state is TaskState.CANCELLED

        def row() -> list[str]:
            return next(r for r in table_text(app) if r[0] == short)

        await wait_for(pilot, lambda: row()[3] == "⊘ cancelled", what="the cancelled row")
        assert row()[4] == "cancelled before it started"
        assert "cancelled 1" in str(app.dashboard.query_one("#count-cancelled").render())


async def test_c_on_a_running_task_asks_its_worker(fake_client: Client,
                                                   clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await _highlight(pilot, app, ids["sleeping"])
        await pilot.press("c")
        message, severity = await _notice(pilot, app)
        assert severity == "information"
        assert message == (f"Cancelling SLEEP 30 (task {ids['sleeping'][:8]}): it is running; its "
                           "worker interrupts it within a second.")
        task = fake_client.get(ids["sleeping"])
        assert task.state is TaskState.IN_PROGRESS and task.history[-1].note == "cancel requested"


@pytest.mark.parametrize("label", ["done1", "divzero"])
async def test_c_on_a_finished_task_says_why_and_changes_nothing(
        label: str, fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    before = fake_client.get(ids[label])
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await _highlight(pilot, app, ids[label])
        await pilot.press("c")
        message, severity = await _notice(pilot, app)
        assert severity == "warning"
        assert message == (f"Task {ids[label][:8]} is already {before.state.value}: only queued, "
                           "scheduled or running tasks can be cancelled.")
        await app.workers.wait_for_complete()
        assert fake_client.get(ids[label]) == before


async def test_c_with_redis_down_is_refused_and_a_late_refusal_is_shown(
        fake_client: Client, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    switch = RedisSwitch(fake_client, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await _highlight(pilot, app, ids["queued2"])
        # the table still says queued, but the task finished meanwhile: the service's refusal
        fake_client.cancel(ids["queued2"])
        await pilot.press("c")
        message, severity = await _notice(pilot, app)
        assert severity == "error"
        assert message.startswith(f"Not cancelled: task {ids['queued2']} is already cancelled")
        switch.down = True
        await wait_for(pilot, lambda: app.dashboard.services.refused() is not None,
                       what="the outage to be seen")
        await _highlight(pilot, app, ids["queued1"])
        await pilot.press("c")
        message, severity = await _notice(pilot, app, 2)
        assert (message, severity) == (
            f"Redis is unreachable: task {ids['queued1'][:8]} was not cancelled.", "error")
        switch.down = False
        assert fake_client.get(ids["queued1"]).state is TaskState.QUEUED


async def test_the_help_screen_lists_the_cancel_key(fake_client: Client) -> None:
    app = frozen_app(fake_client, FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        rows = dict(app.help_sections()[1][1])
        assert rows["c"] == "Cancel the highlighted queued or running task"
