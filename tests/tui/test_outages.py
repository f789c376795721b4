"""Pilot tests: Redis/Kafka outages, the polling discipline, and literal (never markup) text."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from textual.widgets import Static

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    RedisSwitch,
    create,
    fast_app,
    finish,
    focus_table,
    form_message,
    frozen_app,
    messages,
    populate_busy,
    screen_text,
    settle,
    start,
    table_text,
    type_and_submit,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.models import TaskState
from yadtq.testing import FakeBroker
from yadtq_tui.widgets import Banner

pytestmark = pytest.mark.tui

# ---------------------------------------------------------------------- outages
async def test_kafka_down_shows_a_banner_refuses_submits_and_recovers(
        fake_client: Client, fake_broker: FakeBroker) -> None:
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        banner = app.screen.query_one(Banner)
        assert not banner.has_class("-visible")
        fake_broker.available = False
        await wait_for(pilot, lambda: banner.has_class("-visible"), what="the banner")
        assert "Kafka unreachable" in str(banner.render())
        assert "Kafka ○ DOWN" in str(app.screen.query_one("#kafka-light", Static).render())
        await type_and_submit(pilot, "ADD 2 3")
        assert "Kafka is unreachable: ADD 2 3 was not submitted" in form_message(app)
        assert app.dashboard.form.input.value == "ADD 2 3"
        assert fake_client.total() == 0 and messages(fake_broker, fake_client) == []
        fake_broker.available = True
        await wait_for(pilot, lambda: not banner.has_class("-visible"), what="recovery")
        await type_and_submit(pilot, "")  # the kept text, submitted again
        assert len(messages(fake_broker, fake_client)) == 1


async def test_kafka_failure_during_submit_is_reported(fake_client: Client,
                                                       fake_broker: FakeBroker) -> None:
    app = fast_app(fake_client, health_interval=60)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        fake_broker.available = False  # not noticed yet by a health check
        await type_and_submit(pilot, "ADD 2 3")
        assert "not submitted" in form_message(app) and "Kafka" in form_message(app)
        assert app.dashboard.form.input.value == "ADD 2 3"
        banner = app.screen.query_one(Banner)
        await wait_for(pilot, lambda: banner.has_class("-visible"), what="the banner")


async def test_redis_down_keeps_last_data_and_recovers(fake_client: Client,
                                                       fake_broker: FakeBroker,
                                                       clock: FrozenClock,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    populate_busy(fake_client, clock)
    switch = RedisSwitch(fake_client, monkeypatch)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        rows = table_text(app)
        banner = app.screen.query_one(Banner)
        light = app.screen.query_one("#redis-light", Static)
        switch.down = True
        # A failed refresh shows the banner first ("Could not refresh"); only the next health
        # check turns the light DOWN and refuses submits, so wait for that, not for the banner.
        await wait_for(pilot, lambda: "Redis ○ DOWN" in str(light.render()), what="the light")
        assert banner.has_class("-visible")
        assert "Redis unreachable" in str(banner.render())
        assert "showing last data" in str(banner.render())
        await pilot.pause(0.2)
        assert table_text(app) == rows  # last data kept
        await type_and_submit(pilot, "ADD 2 3")
        assert "Redis is unreachable: ADD 2 3 was not submitted" in form_message(app)
        assert messages(fake_broker, fake_client) == []
        switch.down = False
        await wait_for(pilot, lambda: not banner.has_class("-visible"), what="recovery")
        assert any("Redis is reachable again" in n.message for n in app.notified)
        await type_and_submit(pilot, "")  # the kept text, submitted again
        assert len(messages(fake_broker, fake_client)) == 1


async def test_polling_never_stacks_and_pauses_under_a_dialog(fake_client: Client) -> None:
    active = 0
    peak = 0
    calls = 0
    lock = threading.Lock()
    real_view = fake_client.view

    def slow_view(*args: Any, **kwargs: Any) -> Any:
        nonlocal active, peak, calls
        with lock:
            active += 1
            calls += 1
            peak = max(peak, active)
        time.sleep(0.15)
        with lock:
            active -= 1
        return real_view(*args, **kwargs)

    fake_client.view = slow_view  # type: ignore[method-assign]
    app = fast_app(fake_client, poll_interval=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot, 3)
        assert peak == 1
        await focus_table(pilot)
        await pilot.press("r")
        await settle(pilot)
        before = calls
        await pilot.pause(0.5)
        assert calls == before  # paused while the dialog is open
        await pilot.press("escape")
        await wait_refreshed(pilot, 2)
        assert calls > before
        assert peak == 1


# ---------------------------------------------------------------------- literal text
async def test_markup_and_escape_sequences_are_shown_literally(fake_client: Client) -> None:
    now = time.time()
    markup = create(fake_client, 1, "ADD", ("[red]x[/red]", "[b]y"), now - 2)
    start(fake_client, "w-[bold]1", markup)
    finish(fake_client, "w-[bold]1", markup, TaskState.COMPLETED, result="[red]x[/red]")
    escape = create(fake_client, 2, "ADD", ("\x1b[2J", "a\x07b"), now - 1)
    start(fake_client, "w-2", escape)
    finish(fake_client, "w-2", escape, TaskState.FAILED, error="boom \x1b[2J\x1b]0;pwned\x07\u202e")
    app = fast_app(fake_client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        rows = {r[0]: r for r in table_text(app)}
        assert rows[markup[:8]][4] == "[red]x[/red]"
        assert rows[markup[:8]][2] == "[red]x[/red] [b]y"
        assert rows[markup[:8]][5] == "w-[bold]1"
        assert rows[escape[:8]][4] == "boom \\x1b[2J\\x1b]0;pwned\\x07\\u202e"
        assert rows[escape[:8]][2] == "\\x1b[2J a\\x07b"
        shown = screen_text(app)
        assert "[red]x[/red]" in shown
        assert "\x1b" not in shown and "\x07" not in shown
        app.dashboard.open_detail(fake_client.get(escape))
        await pilot.pause()
        detail_text = screen_text(app)
        assert "boom \\x1b[2J\\x1b]0;pwned\\x07" in detail_text
        assert "\x1b" not in detail_text


# ---------------------------------------------------------------------- consumer lag
async def test_the_status_bar_shows_the_consumer_lag_and_hides_it_when_kafka_is_down(
        fake_client: Client, fake_broker: FakeBroker) -> None:
    client = Client(fake_client.settings, store=fake_client.store,
                    producer_factory=fake_broker.producer, kafka_ping=fake_broker.ping,
                    offsets_factory=fake_broker.offsets)
    app = fast_app(client)

    def lag() -> Static:
        return app.dashboard.query_one("#lag", Static)

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: lag().has_class("-visible"), what="the lag")
        assert str(lag().render()) == "lag 0" and not lag().has_class("-behind")
        for i in range(3):
            client.submit("ADD", [i, i])
        await wait_for(pilot, lambda: str(lag().render()) == "lag 3", what="lag 3")
        assert lag().has_class("-behind")
        consumer = fake_broker.consumer(client.settings, "w1", lambda p: None, lambda p: None)
        records = consumer.poll(100)
        consumer.commit({r.partition: r.offset + 1 for r in records})
        await wait_for(pilot, lambda: str(lag().render()) == "lag 0", what="lag 0 after the commit")
        fake_broker.available = False
        await wait_for(pilot, lambda: not lag().has_class("-visible"), what="the lag hidden")
