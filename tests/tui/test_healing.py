"""What self-healing reports, on the dashboard: stalled workers, malformed task records, the
reconciler's repairs, and Redis refusing a request (``StoreError``) while it is reachable."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Static

from tests.tui.helpers import (
    SIZE,
    STALLED_WORKER,
    FrozenClock,
    beat,
    create,
    fast_app,
    finish,
    form_message,
    frozen_app,
    populate_troubled,
    screen_text,
    start,
    static_text,
    table_text,
    type_and_submit,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.errors import StoreError
from yadtq.models import Task, TaskState
from yadtq_tui.app import YadtqApp
from yadtq_tui.screens import DetailScreen
from yadtq_tui.widgets import Banner, StatusBar

pytestmark = pytest.mark.tui

REFUSED = "Redis refused: OOM command not allowed when used memory > 'maxmemory'."


def worker_rows(app: YadtqApp) -> dict[str, list[str]]:
    panel = app.screen.query_one("#workers")
    return {r.key.value: [c.plain for c in panel.get_row(r.key)]  # type: ignore[attr-defined]
            for r in panel.ordered_rows}  # type: ignore[attr-defined]


def light(app: YadtqApp, service: str) -> str:
    return str(app.dashboard.query_one(f"#{service}-light", Static).render())


# ---------------------------------------------------------------------- stalled workers
async def test_a_stalled_worker_is_listed_after_alive_with_its_reason(
        fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_troubled(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        rows = worker_rows(app)
        assert list(rows) == ["node-a-1201", STALLED_WORKER, "node-b-1388", "node-c-977"]
        assert rows[STALLED_WORKER][3] == "⊘ stalled"
        assert rows[STALLED_WORKER][4] == f"{ids['stuck'][:8]} SLEEP"
        assert static_text(app, "#workers-title") == (
            "Workers · 1 alive · 1 stalled · 1 late · 1 dead")
        note = app.screen.query_one("#workers-stalled", Static)
        assert note.has_class("-visible") and note.display
        assert static_text(app, "#workers-stalled") == (
            f"⊘ {STALLED_WORKER} stalled: task {ids['stuck'][:8]} (SLEEP) is 42 s over its time "
            "limit of 30 s and has not stopped")

        # the watchdog's reason goes away with the next heartbeat: so does the note
        beat(fake_client, STALLED_WORKER, started=clock.now - 900, current=ids["stuck"], done=7)
        await wait_for(pilot, lambda: worker_rows(app)[STALLED_WORKER][3] == "● alive",
                       what="the worker to be alive again")
        await wait_refreshed(pilot)
        assert not note.display
        assert static_text(app, "#workers-title") == "Workers · 2 alive · 1 late · 1 dead"


async def test_a_stalled_worker_without_a_task_shows_the_reason_in_its_row(
        fake_client: Client, clock: FrozenClock) -> None:
    beat(fake_client, "box-7", started=clock.now - 60, stalled="the runner thread ended")
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        assert worker_rows(app)["box-7"][3:5] == ["⊘ stalled", "the runner thread ended"]
        assert static_text(app, "#workers-stalled") == "⊘ box-7 stalled: the runner thread ended"


async def test_a_stalled_reason_is_shown_as_text(fake_client: Client, clock: FrozenClock) -> None:
    beat(fake_client, "box-8", started=clock.now - 60, stalled="[red]boom[/red] \x1b[2J")
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        assert static_text(app, "#workers-stalled") == (
            "⊘ box-8 stalled: [red]boom[/red] \\x1b[2J")


# ---------------------------------------------------------------------- malformed records
async def test_a_malformed_task_is_an_invalid_row_with_its_problem(
        fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_troubled(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        row = next(r for r in table_text(app) if r[0] == ids["broken"][:8])
        assert row[3] == "⚠ invalid"
        assert row[4] == "attempt 'x' is not a number"
        assert [r[3] for r in table_text(app)].count("⚠ invalid") == 1


async def test_the_detail_view_shows_the_problem_as_text(fake_client: Client,
                                                         clock: FrozenClock) -> None:
    tid = create(fake_client, 1, "ADD", (1, 2), clock.now - 5)
    fake_client.store.r.hset(fake_client.store.keys.task(tid), "name", "[red]boom[/red]")
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        app.dashboard.open_detail(fake_client.get(tid))
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        await wait_for(pilot, lambda: "History (1 entry)" in screen_text(app),
                       what="the whole task")
        text = screen_text(app)
        assert "State    ⚠ invalid" in text
        assert ("Problem  the stored record is malformed: name '[red]boom[/red]' is not a task "
                "name") in text
        assert app.screen.query_one("#detail-retry-button").disabled


async def test_an_invalid_task_is_not_retried(fake_client: Client, clock: FrozenClock) -> None:
    tid = create(fake_client, 1, "ADD", (1, 2), clock.now - 5)
    start(fake_client, "w-1", tid)
    finish(fake_client, "w-1", tid, TaskState.FAILED, error="boom")
    fake_client.store.r.hset(fake_client.store.keys.task(tid), "attempt", "x")
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        task = fake_client.get(tid)
        assert task.state is TaskState.FAILED and task.problem
        app.dashboard.start_retry(task)
        await pilot.pause()
        assert [n.message for n in app.notified] == [
            f"Task {tid[:8]} cannot be retried: its stored record is malformed "
            "(attempt 'x' is not a number)."]
        assert fake_client.get(tid).state is TaskState.FAILED


# ---------------------------------------------------------------------- repairs
async def test_repairs_show_in_the_status_bar_once_there_are_some(
        fake_client: Client, clock: FrozenClock) -> None:
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        repairs = app.dashboard.query_one(StatusBar).query_one("#repairs", Static)
        assert not repairs.display
        fake_client.store.record_repairs("node-a-1201", 0, 0)  # a round that repaired nothing
        await wait_refreshed(pilot, 2)
        assert not repairs.display
        fake_client.store.record_repairs("node-a-1201", 2, 1)
        await wait_for(pilot, lambda: repairs.display, what="the repairs")
        assert str(repairs.render()) == "⟲ repaired 3"
        assert str(repairs.tooltip) == (
            "The workers' reconciler re-sent 2 queued tasks that had no message and re-queued "
            "1 in-progress task of dead workers, in 2 rounds. Last round at "
            "2024-11-28 13:20:00.000 by node-a-1201: 3 repaired.")


# ---------------------------------------------------------------------- Redis refusing
def refuse(*_: Any, **__: Any) -> Any:
    raise StoreError(REFUSED)


async def test_a_refused_submit_says_redis_refused_and_nothing_is_down(
        fake_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        monkeypatch.setattr(fake_client.store, "create", refuse)
        await type_and_submit(pilot, "ADD 2 3")
        await wait_for(pilot, lambda: "refused" in form_message(app), what="the refusal")
        assert form_message(app) == f"✘ not submitted: {REFUSED}"
        await wait_refreshed(pilot, 2)
        assert not app.dashboard.query_one(Banner).has_class("-visible")
        assert "Redis ● up" in light(app, "redis") and "Kafka ● up" in light(app, "kafka")


async def test_a_refused_retry_or_reset_is_reported_and_the_dashboard_goes_on(
        fake_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    tid = fake_client.submit("ADD", (1, 2))
    start(fake_client, "w-1", tid)
    finish(fake_client, "w-1", tid, TaskState.FAILED, error="boom")
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        monkeypatch.setattr(fake_client.store, "transition", refuse)
        monkeypatch.setattr(fake_client.store, "reset", refuse)
        task: Task = fake_client.get(tid)
        app.dashboard.start_retry(task)
        await wait_for(pilot, lambda: len(app.notified) == 1, what="the retry's notice")
        app.actions.reset(app.dashboard)
        await wait_for(pilot, lambda: len(app.notified) == 2, what="the reset's notice")
        assert [(n.message, n.severity) for n in app.notified] == [
            (f"Not retried: {REFUSED}", "error"), (f"Not reset: {REFUSED}", "error")]
        await wait_refreshed(pilot, 2)
        assert app.is_running
        assert not app.dashboard.query_one(Banner).has_class("-visible")
        assert "Redis ● up" in light(app, "redis")


async def test_a_refused_refresh_is_a_failed_refresh_not_redis_down(
        fake_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        banner = app.dashboard.query_one(Banner)
        monkeypatch.setattr(fake_client.store, "view", refuse)
        await wait_for(pilot, lambda: banner.has_class("-visible"), what="the banner")
        assert banner.lines == (f"⚠ Could not refresh: {REFUSED} — showing last data, retrying",)
        assert "Redis ● up" in light(app, "redis")
        assert not any(n.title == "Unexpected error" for n in app.notified)
        monkeypatch.undo()
        await wait_for(pilot, lambda: not banner.has_class("-visible"), what="recovery")
