"""The schedules screen (``p``): every published schedule with its next and last run, malformed
entries shown as invalid with the reason, Redis outages shown without losing the rows, the last
task's detail view, and the help screen listing the key. Time is frozen (``FrozenClock``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from textual.widgets import DataTable

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    RedisSwitch,
    finish,
    focus_table,
    frozen_app,
    screen_text,
    start,
    static_text,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.models import TaskState
from yadtq.schedule_store import STALE_AFTER, ScheduleStore
from yadtq.schedules import Schedule, ScheduleInfo
from yadtq.wire import Envelope
from yadtq_tui.screens import DetailScreen, HelpScreen, SchedulesScreen

pytestmark = pytest.mark.tui

HOURLY = Schedule("hourly-report", "MUL", (6, 7), cron="0 * * * *")
EVERY_5M = Schedule("add-every-5m", "ADD", (2, 3), every=300)


class FrozenSchedules(Client):
    """A ``Client`` whose schedule listing uses the frozen clock instead of Redis's TIME."""

    clock: FrozenClock

    def schedules(self) -> list[ScheduleInfo]:
        return ScheduleStore(self.store).infos(now=self.clock.now)


def _client(fake_client: Client, clock: FrozenClock) -> FrozenSchedules:
    client = FrozenSchedules(fake_client.settings, store=fake_client.store,
                             producer_factory=fake_client._producer_factory,
                             kafka_ping=fake_client._kafka_ping, registry=fake_client._registry)
    client.clock = clock
    return client


def populate(client: Client, clock: FrozenClock) -> str:
    """Two good schedules (one ran: its last task completed), two malformed entries; returns the
    last task's id."""
    store = ScheduleStore(client.store)
    store.publish([HOURLY, EVERY_5M], now=clock.now)
    r, keys = client.store.r, client.store.keys
    r.hset(keys.schedules, mapping={
        "old-one": json.dumps({"v": 0, "name": "old-one"}),
        "hand-edited": "{\"v\": 1, \"name\": \"hand-edited\", \"task\": \"ADD\", \"cron\": \"61 * * * *\"}",
    })
    period = int(HOURLY.period_start(clock.now) or 0)
    tid = HOURLY.task_id(period)
    client.store.create([Envelope(tid, "MUL", (6, 7), period + 0.01)])
    start(client, "vm-101", tid, name="MUL")
    finish(client, "vm-101", tid, TaskState.COMPLETED, 42)
    r.hset(keys.schedules_last, "hourly-report", period)
    return tid


async def _open(pilot: Any) -> SchedulesScreen:
    await wait_refreshed(pilot, 1)
    await focus_table(pilot)
    await pilot.press("p")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SchedulesScreen), what="screen")
    screen = pilot.app.screen
    await wait_for(pilot, lambda: bool(screen.infos), what="schedules read")
    return screen  # type: ignore[no-any-return]


def _rows(screen: SchedulesScreen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row(row.key)]
            for row in table.ordered_rows]


async def test_p_lists_schedules_with_next_and_last_run(fake_client: Client,
                                                        clock: FrozenClock) -> None:
    client = _client(fake_client, clock)
    tid = populate(client, clock)
    app = frozen_app(client, clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        rows = {r[0]: r for r in _rows(screen)}
        assert list(rows) == ["add-every-5m", "hand-edited", "hourly-report", "old-one"]
        hourly = rows["hourly-report"]
        assert hourly[1] == "MUL 6 7" and hourly[2] == "cron 0 * * * * (UTC)"
        assert hourly[3] == "14:00:00 (in 40m00s)"  # T0 is 13:20:00 UTC
        assert hourly[4] == f"11-28 13:00 {tid[:8]}" and hourly[5] == "completed"
        assert rows["add-every-5m"][3] == "13:25:00 (in 5m00s)"
        assert rows["add-every-5m"][4] == "never"
        assert rows["old-one"][2] == rows["hand-edited"][2] == "⚠ invalid (below)"
        problems = static_text(app, "#schedules-problems")
        assert "⚠ old-one: unknown version '0'" in problems
        assert "⚠ hand-edited: invalid cron expression '61 * * * *': Bad minute" in problems
        assert "4 schedules · 2 invalid" in static_text(app, "#schedules-status")


async def test_the_rows_update_in_place_and_survive_an_outage(
        fake_client: Client, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(fake_client, clock)
    populate(client, clock)
    switch = RedisSwitch(client, monkeypatch)
    app = frozen_app(client, clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        switch.down = True
        await wait_for(pilot, lambda: "Could not read the schedules" in
                       static_text(app, "#schedules-status"), what="the outage shown")
        assert len(_rows(screen)) == 4  # the last data stays
        switch.down = False
        clock.now += 60
        ScheduleStore(client.store).publish([Schedule("new-one", "ADD", (1, 1), every=60)],
                                            now=clock.now)
        await wait_for(pilot, lambda: len(_rows(screen)) == 5, what="the new schedule")
        assert "Could not" not in static_text(app, "#schedules-status")
        assert [r[0] for r in _rows(screen)][3] == "new-one"


async def test_enter_views_the_last_task_and_escape_closes(fake_client: Client,
                                                           clock: FrozenClock) -> None:
    client = _client(fake_client, clock)
    tid = populate(client, clock)
    app = frozen_app(client, clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        table = screen.query_one(DataTable)
        table.move_cursor(row=0)  # add-every-5m: never ran
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, SchedulesScreen)
        assert any("no task to show" in n.message for n in app.notified)
        table.move_cursor(row=2)  # hourly-report
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail view")
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        await wait_for(pilot, lambda: detail.shown.result == 42, what="the task read")
        assert detail.shown.id == tid
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, SchedulesScreen), what="back")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.dashboard, what="dashboard")


async def test_no_schedules_says_how_to_declare_them(fake_client: Client,
                                                     clock: FrozenClock) -> None:
    client = _client(fake_client, clock)
    app = frozen_app(client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot, 1)
        await focus_table(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: "periodic()" in static_text(app, "#schedules-status"),
                       what="the empty text")


async def test_help_lists_the_schedules_key(fake_client: Client, clock: FrozenClock) -> None:
    app = frozen_app(_client(fake_client, clock), clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot, 1)
        await focus_table(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = screen_text(app)
        assert "Periodic schedules: next run, last run and its state" in text
        app.screen.query_one("#help-scroll").scroll_end(animate=False)  # the sections below
        await pilot.pause()
        assert "Schedules" in screen_text(app)


def test_schedules_snapshot(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    client = _client(fake_client, clock)
    populate(client, clock)

    async def run_before(pilot: Any) -> None:
        await _open(pilot)
        await pilot.pause()

    assert snap_compare(frozen_app(client, clock), terminal_size=SIZE, run_before=run_before)


async def test_a_stale_schedule_shows_no_next_run(fake_client: Client, clock: FrozenClock) -> None:
    """Not published for more than STALE_AFTER: the next-run cell says it will not run (and
    since when, in the dashboard's zone); published again, it is live again."""
    client = _client(fake_client, clock)
    store = ScheduleStore(client.store)
    gone = Schedule("gone-report", "ADD", (1, 1), every=60)
    store.publish([gone], now=clock.now - STALE_AFTER - 60)  # 13:16:00 UTC
    store.publish([EVERY_5M], now=clock.now)
    app = frozen_app(client, clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        rows = {r[0]: r for r in _rows(screen)}
        assert rows["gone-report"][3] == "none: not declared by a running worker since 2024-11-28 13:16"
        assert rows["add-every-5m"][3] == "13:25:00 (in 5m00s)"
        assert "2 schedules · 1 stale" in static_text(app, "#schedules-status")
        store.publish([gone], now=clock.now)
        clock.now += 1
        await wait_for(pilot, lambda: _rows(screen)[1][3] == "13:21:00 (in 59s)",
                       what="live again")
        assert "stale" not in static_text(app, "#schedules-status")
