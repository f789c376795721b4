"""Pilot tests of the App's ``Actions`` (submit, retry, reset, look-up), of which service the
dashboard says is down, and of the ``Poller`` loops (fakeredis + FakeBroker)."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Static
from textual.worker import Worker

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    RedisSwitch,
    fast_app,
    finish,
    form_message,
    frozen_app,
    messages,
    populate_busy,
    settle,
    start,
    static_text,
    table_text,
    type_and_submit,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.errors import ServiceUnavailable
from yadtq.models import Task, TaskState, View
from yadtq.testing import FakeBroker
from yadtq_tui import messages as message_module
from yadtq_tui.app import YadtqApp, make_app
from yadtq_tui.messages import ActionFinished, SubmitFinished, TaskLoaded
from yadtq_tui.screens import DetailScreen, HelpScreen
from yadtq_tui.widgets import Banner

pytestmark = pytest.mark.tui


class Recorder:
    """A ``message_hook``: keeps every message the app handles."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def __call__(self, message: Message) -> None:
        if not any(m is message for m in self.seen):  # once, though it bubbles
            self.seen.append(message)

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.seen if isinstance(m, kind)]


async def _run(pilot: Any, worker: Worker[None]) -> None:
    """Wait for one action's worker and for its answer to be handled (the refresh and health
    workers go on meanwhile; ``settle`` would wait for them too)."""
    await worker.wait()
    await pilot.pause()
    await pilot.pause()


def _light(app: YadtqApp, service: str) -> str:
    return str(app.dashboard.query_one(f"#{service}-light", Static).render())


def _failed_task(client: Client) -> Task:
    tid = client.submit("ADD", (1, 2))
    start(client, "w-1", tid)
    finish(client, "w-1", tid, TaskState.FAILED, error="RuntimeError: flaky")
    return client.get(tid)


@asynccontextmanager
async def running(client: Client) -> AsyncIterator[tuple[YadtqApp, Pilot[None], Recorder]]:
    """The dashboard over ``client``, its first refresh applied, every message recorded."""
    hook = Recorder()
    app = fast_app(client)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_refreshed(pilot)
        yield app, pilot, hook


# ---------------------------------------------------------------------- submit
async def test_submit_sends_the_task_and_answers_with_its_id(fake_client: Client,
                                                             fake_broker: FakeBroker) -> None:
    async with running(fake_client) as (app, pilot, hook):
        await _run(pilot, app.actions.submit("add 2 3", app.dashboard))
        [done] = hook.of(SubmitFinished)
        assert done.error is None and done.label == "ADD 2 3"
        assert fake_client.get(done.task_id or "").state is TaskState.QUEUED
        assert len(messages(fake_broker, fake_client)) == 1
        assert app.dashboard.form.input.value == ""  # the screen applied the answer


async def test_a_delayed_submit_in_the_form_shows_the_task_scheduled(fake_client: Client,
                                                                    fake_broker: FakeBroker) -> None:
    async with running(fake_client) as (app, pilot, hook):
        assert "in 30s" in form_message(app)  # the hint line says how
        await type_and_submit(pilot, "ADD 2 3 in 30s")
        [done] = hook.of(SubmitFinished)
        assert done.error is None and done.label == "ADD 2 3 in 30s"
        task = fake_client.get(done.task_id or "")
        assert task.state is TaskState.SCHEDULED and task.due_at is not None
        assert 29.9 < task.due_at - task.created_at < 31  # Redis's clock vs the client's
        assert messages(fake_broker, fake_client) == []  # not on Kafka before it is due
        await wait_for(pilot, lambda: any("◷ scheduled" in row for row in table_text(app)))
        [row] = table_text(app)
        assert row[1:4] == ["ADD", "2 3", "◷ scheduled"] and row[4].startswith("due in ")
        assert static_text(app, "#count-scheduled") == "scheduled 1"
        await type_and_submit(pilot, "ADD 2 3 in -5s")  # refused in place, nothing recorded
        assert "is not a duration" in form_message(app) and fake_client.total() == 1
        assert app.dashboard.form.input.value == "ADD 2 3 in -5s"


async def test_submit_refuses_invalid_input_without_sending(fake_client: Client,
                                                            fake_broker: FakeBroker) -> None:
    async with running(fake_client) as (app, pilot, hook):
        await _run(pilot, app.actions.submit("ADD 2 x", app.dashboard))
        [done] = hook.of(SubmitFinished)
        assert done.invalid and done.task_id is None and "'x' is not a number" in (done.error or "")
        assert messages(fake_broker, fake_client) == [] and fake_client.total() == 0


async def test_submit_with_a_known_outage_sends_nothing(fake_client: Client,
                                                        fake_broker: FakeBroker) -> None:
    async with running(fake_client) as (app, pilot, hook):
        await _run(pilot, app.actions.submit("ADD 2 3", app.dashboard,
                                             refuse="Kafka is unreachable"))
        [done] = hook.of(SubmitFinished)
        assert not done.invalid and done.task_id is None
        assert done.error == ("Kafka is unreachable: ADD 2 3 was not submitted; try again when "
                              "the banner is gone")
        assert messages(fake_broker, fake_client) == [] and fake_client.total() == 0


async def test_submit_with_redis_failing(fake_client: Client, fake_broker: FakeBroker,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hook = Recorder()
    switch = RedisSwitch(fake_client, monkeypatch)
    app = fast_app(fake_client, health_interval=60)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_refreshed(pilot)
        switch.down = True
        fake_broker.available = False  # neither took it (Kafka alone would have: enqueue.py)
        await _run(pilot, app.actions.submit("ADD 2 3", app.dashboard))
        [done] = hook.of(SubmitFinished)
        assert not done.invalid and done.task_id is None
        assert done.error is not None and done.error.startswith("not submitted: Redis unreachable")
        assert messages(fake_broker, fake_client) == []
        assert "not submitted: Redis unreachable" in form_message(app)  # the screen says why
        await wait_for(pilot, lambda: "Redis ○ DOWN" in _light(app, "redis"),
                       what="the health check the failure triggered")


async def test_submit_with_kafka_failing(fake_client: Client, fake_broker: FakeBroker) -> None:
    hook = Recorder()
    app = fast_app(fake_client, health_interval=60)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_refreshed(pilot)
        fake_broker.available = False
        await _run(pilot, app.actions.submit("ADD 2 3", app.dashboard))
        [done] = hook.of(SubmitFinished)
        assert done.task_id is None and not done.invalid
        assert "Kafka unreachable" in (done.error or "")
        [task] = fake_client.list()
        assert task.state is TaskState.FAILED and "not enqueued" in (task.error or "")
        await wait_for(pilot, lambda: "Kafka ○ DOWN" in _light(app, "kafka"),
                       what="the health check the failure triggered")
        assert "Redis ● up" in _light(app, "redis")


async def test_submits_run_side_by_side(fake_client: Client, fake_broker: FakeBroker,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No lock in the dashboard: a submit waiting for Kafka does not hold up the next one."""
    gate = threading.Event()
    real_submit = fake_client.submit

    def slow_sleeps(name: str, args: Iterable[Any] = (), *, wait: bool = True) -> str:
        if name == "SLEEP":
            gate.wait(5)
        return real_submit(name, args, wait=wait)

    monkeypatch.setattr(fake_client, "submit", slow_sleeps)
    hook = Recorder()
    app = make_app(fake_client, poll_interval=0.05, health_interval=0.1)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_refreshed(pilot)
        slow = app.actions.submit("SLEEP 1", app.dashboard)
        await _run(pilot, app.actions.submit("ADD 2 3", app.dashboard))
        assert [m.label for m in hook.of(SubmitFinished)] == ["ADD 2 3"]
        gate.set()
        await _run(pilot, slow)
        assert [m.label for m in hook.of(SubmitFinished)] == ["ADD 2 3", "SLEEP 1"]
        assert len(messages(fake_broker, fake_client)) == 2


# ---------------------------------------------------------------------- retry
async def test_retry_queues_a_new_attempt(fake_client: Client, fake_broker: FakeBroker) -> None:
    task = _failed_task(fake_client)
    async with running(fake_client) as (app, pilot, hook):
        await _run(pilot, app.actions.retry(task, app.dashboard))
        [done] = hook.of(ActionFinished)
        assert done.ok and done.action == "retry"
        assert f"ADD 1 2 (task {task.short_id}): queued again as attempt 2" in done.message
        assert fake_client.get(task.id).state is TaskState.QUEUED
        assert len(messages(fake_broker, fake_client)) == 2  # the submit, then the retry


async def test_retry_with_redis_failing(fake_client: Client, fake_broker: FakeBroker,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    task = _failed_task(fake_client)
    switch = RedisSwitch(fake_client, monkeypatch)
    async with running(fake_client) as (app, pilot, hook):
        switch.down = True
        await _run(pilot, app.actions.retry(task, app.dashboard))
        [done] = hook.of(ActionFinished)
        assert not done.ok and done.message.startswith("Not retried: Redis unreachable")
        await wait_for(pilot, lambda: any(n.message == done.message and n.severity == "error"
                                          for n in app.notified), what="the notice")
        switch.down = False
        assert fake_client.get(task.id).state is TaskState.FAILED
        assert len(messages(fake_broker, fake_client)) == 1  # only the original submit


async def test_retry_with_kafka_failing(fake_client: Client, fake_broker: FakeBroker) -> None:
    task = _failed_task(fake_client)
    async with running(fake_client) as (app, pilot, hook):
        fake_broker.available = False
        await _run(pilot, app.actions.retry(task, app.dashboard))
        [done] = hook.of(ActionFinished)
        assert not done.ok and "Kafka unreachable" in done.message
        assert fake_client.get(task.id).state is TaskState.FAILED  # put back
        assert len(messages(fake_broker, fake_client)) == 1


# ---------------------------------------------------------------------- reset
async def test_reset_deletes_every_task(fake_client: Client, clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    hook = Recorder()
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_refreshed(pilot)
        await _run(pilot, app.actions.reset(app.dashboard))
        [done] = hook.of(ActionFinished)
        assert done.ok and done.message == "Reset: deleted 7 tasks."
        assert fake_client.total() == 0


async def test_reset_with_redis_failing(fake_client: Client, clock: FrozenClock,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    populate_busy(fake_client, clock)
    switch = RedisSwitch(fake_client, monkeypatch)
    hook = Recorder()
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_refreshed(pilot)
        switch.down = True
        await _run(pilot, app.actions.reset(app.dashboard))
        [done] = hook.of(ActionFinished)
        assert not done.ok and done.message.startswith("Not reset: Redis unreachable")
        switch.down = False
        assert fake_client.total() == 7


async def test_reset_does_not_need_kafka(fake_client: Client, fake_broker: FakeBroker,
                                         clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    fake_broker.available = False
    hook = Recorder()
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_refreshed(pilot)
        await _run(pilot, app.actions.reset(app.dashboard))
        [done] = hook.of(ActionFinished)
        assert done.ok and fake_client.total() == 0


# ---------------------------------------------------------------------- look-up
async def test_look_up_found_missing_and_redis_failing(fake_client: Client,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tid = fake_client.submit("ADD", (2, 3))
    switch = RedisSwitch(fake_client, monkeypatch)
    async with running(fake_client) as (app, pilot, hook):
        await _run(pilot, app.actions.look_up(tid, app.dashboard))
        await _run(pilot, app.actions.look_up("0" * 32, app.dashboard))
        switch.down = True
        await _run(pilot, app.actions.look_up(tid, app.dashboard))
        found, missing, unreachable = (m.result for m in hook.of(TaskLoaded))
        assert found.task is not None and found.task.id == tid and found.task.history
        assert missing.task is None and missing.not_found and "no task with id" in (missing.error
                                                                                    or "")
        assert unreachable.task is None and not unreachable.not_found
        assert (unreachable.error or "").startswith("Redis unreachable")


# ---------------------------------------------------------------------- unexpected errors
async def test_an_action_crashing_is_reported_and_the_dashboard_goes_on(
        fake_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(fake_client, "reset", broken)
    app = make_app(fake_client, poll_interval=0.05, health_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        worker = app.actions.reset(app.dashboard)
        await wait_for(pilot, lambda: any(
            n.title == "Unexpected error" and n.message == "reset failed: RuntimeError: boom"
            for n in app.notified), what="the notice")
        assert worker.is_finished
        await wait_refreshed(pilot, 2)  # still refreshing
        assert app.is_running


# ---------------------------------------------------------------------- which service is down
async def test_a_kafka_outage_is_reported_as_kafka(fake_client: Client,
                                                   fake_broker: FakeBroker) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        fake_broker.available = False
        await wait_for(pilot, lambda: "Kafka ○ DOWN" in _light(app, "kafka"), what="Kafka down")
        await wait_refreshed(pilot, 2)
        banner = app.dashboard.query_one(Banner)
        assert len(banner.lines) == 1 and banner.lines[0].startswith("⚠ Kafka unreachable")
        assert "Redis ● up" in _light(app, "redis")
        assert app.dashboard.services.redis_error is None


async def test_a_refresh_failing_for_kafka_is_not_blamed_on_redis(
        fake_client: Client, fake_broker: FakeBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service whose refresh needs Kafka (say, for consumer lag): when Kafka is down the
    refresh fails, and the dashboard says Kafka, with Redis still up."""

    real_view = fake_client.view

    def view_needs_kafka(state: TaskState | None = None, limit: int = 50,
                         seconds: int = 60) -> View:
        fake_broker.check()
        return real_view(state, limit, seconds)

    monkeypatch.setattr(fake_client, "view", view_needs_kafka)
    app = make_app(fake_client, poll_interval=0.05, health_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        banner = app.dashboard.query_one(Banner)
        fake_broker.available = False
        await wait_for(pilot, lambda: len(banner.lines) == 2, what="both banner lines")
        assert banner.lines[0].startswith("⚠ Kafka unreachable")
        assert banner.lines[1] == ("⚠ Could not refresh: Kafka unreachable (fake broker is down) "
                                   "— showing last data, retrying")
        assert "Redis ● up" in _light(app, "redis") and "Kafka ○ DOWN" in _light(app, "kafka")
        fake_broker.available = True
        await wait_for(pilot, lambda: not banner.has_class("-visible"), what="recovery")
        await wait_for(pilot, lambda: any("Kafka is reachable again" in n.message
                                          for n in app.notified), what="the notice")
        assert not any("Redis is reachable again" in n.message for n in app.notified)


async def test_a_refresh_failing_while_both_services_answer(
        fake_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read refused although Redis answers pings (e.g. BUSY): shown as a failed refresh."""
    failing = threading.Event()
    real_view = fake_client.view

    def busy(state: TaskState | None = None, limit: int = 50, seconds: int = 60) -> View:
        if failing.is_set():
            raise ServiceUnavailable("Redis error: BUSY running a script")
        return real_view(state, limit, seconds)

    monkeypatch.setattr(fake_client, "view", busy)
    app = make_app(fake_client, poll_interval=0.05, health_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        banner = app.dashboard.query_one(Banner)
        failing.set()
        await wait_for(pilot, lambda: banner.has_class("-visible"), what="the banner")
        assert banner.lines == ("⚠ Could not refresh: Redis error: BUSY running a script "
                                "— showing last data, retrying",)
        assert "Redis ● up" in _light(app, "redis") and "Kafka ● up" in _light(app, "kafka")
        failing.clear()
        await wait_for(pilot, lambda: not banner.has_class("-visible"), what="recovery")


# ---------------------------------------------------------------------- the detail view's loop
async def test_detail_refresh_never_stacks_and_pauses_under_help(
        fake_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    tid = fake_client.submit("ADD", (2, 3))
    task = fake_client.get(tid)
    lock = threading.Lock()
    calls = active = peak = 0
    real_get = fake_client.get

    def slow_get(task_id: str) -> Task:
        nonlocal calls, active, peak
        with lock:
            calls += 1
            active += 1
            peak = max(peak, active)
        time.sleep(0.1)
        with lock:
            active -= 1
        return real_get(task_id)

    monkeypatch.setattr(fake_client, "get", slow_get)
    app = make_app(fake_client, poll_interval=0.05, health_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        app.dashboard.open_detail(task)
        await wait_for(pilot, lambda: calls >= 2, timeout=5, what="two detail refreshes")
        assert isinstance(app.screen, DetailScreen)
        app.action_help()  # a screen on top of the detail view
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await settle(pilot)
        before = calls
        await pilot.pause(1.5)  # more than the detail view's 1 s interval
        assert calls == before
        await pilot.press("escape")
        await wait_for(pilot, lambda: calls > before, what="the held-back refresh")
        assert peak == 1


def test_messages_carry_data_only() -> None:
    """No message class reads or writes anything: the only method one may define is
    ``can_replace``."""
    for _, cls in inspect.getmembers(message_module, inspect.isclass):
        if issubclass(cls, Message) and cls.__module__ == message_module.__name__:
            methods = {name for name, value in vars(cls).items()
                       if callable(value) or isinstance(value, classmethod | staticmethod)}
            assert methods <= {"can_replace", "__init__", "__eq__", "__repr__"}, (cls, methods)
