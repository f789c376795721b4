"""Shared helpers for the dashboard tests: frozen time, fixed tasks and workers, waiting."""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from tests.polling import wait_async
from yadtq import Client
from yadtq.errors import ServiceUnavailable
from yadtq.models import Beat, Outcome, TaskState
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope
from yadtq_tui.app import YadtqApp, make_app
from yadtq_tui.screens import DashboardScreen

SIZE = (120, 40)
"""The terminal size of every pilot test."""
T0 = 1_732_800_000.0
"""A fixed "now" (2024-11-28 13:20:00 UTC) for deterministic screens."""


class FrozenClock:
    """A clock that only moves when told; given to the store so stored times are fixed."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def install(self, store: RedisStore) -> FrozenClock:
        store.clock = self
        return self


def task_id(n: int) -> str:
    """A fixed, realistic-looking task id."""
    return hashlib.md5(f"task-{n}".encode()).hexdigest()


def create(client: Client, n: int, name: str, args: tuple[Any, ...], created: float) -> str:
    """Record a queued task with a fixed id and creation time (no Kafka message)."""
    tid = task_id(n)
    client.store.create([Envelope(tid, name, args, created)])
    return tid


def start(client: Client, worker: str, tid: str, name: str = "ADD",
          args: tuple[Any, ...] = ()) -> int:
    """Mark a task in-progress for ``worker``; returns the attempt."""
    task = client.get(tid)
    return client.store.start(worker, [Envelope(tid, task.name, task.args, task.created_at)])[0]


def finish(client: Client, worker: str, tid: str, state: TaskState, result: Any = None,
           error: str | None = None) -> None:
    """Finish the current attempt of a task."""
    attempt = client.get(tid).attempt
    client.store.finish(worker, [Outcome(tid, attempt, state, result=result, error=error)])


def beat(client: Client, worker: str, *, started: float, current: str | None = None,
         done: int = 0, failed: int = 0, ttl: float = 3600.0, stalled: str = "") -> None:
    """A heartbeat for ``worker`` (``host-pid`` form); ``stalled`` is the watchdog's reason."""
    host, _, pid = worker.rpartition("-")
    client.store.heartbeat(Beat(worker, host, int(pid), started, current, done, failed,
                                stalled=stalled), ttl)


def populate_busy(client: Client, clock: FrozenClock) -> dict[str, str]:
    """Tasks in every state and three workers (alive, late, dead). Returns ids by label."""
    now = clock.now
    ids: dict[str, str] = {}
    w1, w2, w3 = "node-a-1201", "node-b-1388", "node-c-977"
    specs = [
        ("done1", "ADD", (2, 3), 300), ("done2", "MUL", (6, 7), 240),
        ("divzero", "DIV", (1, 0), 200), ("sleeping", "SLEEP", (30,), 120),
        ("done3", "SUB", (10, 4.5), 90), ("queued1", "ADD", (40, 2), 20),
        ("queued2", "SLEEP", (5,), 5),
    ]
    for i, (label, name, args, ago) in enumerate(specs):
        clock.now = now - ago
        ids[label] = create(client, i + 1, name, args, clock.now)
    clock.now = now - 10
    for label, result, worker in (("done1", 5, w1), ("done2", 42, w2), ("done3", 5.5, w1)):
        clock.now += 1
        start(client, worker, ids[label])
        clock.now += 1
        finish(client, worker, ids[label], TaskState.COMPLETED, result=result)
    clock.now += 1
    start(client, w2, ids["divzero"])
    finish(client, w2, ids["divzero"], TaskState.FAILED, error="PermanentTaskError: division by zero")
    start(client, w1, ids["sleeping"])
    clock.now = now - 2
    beat(client, w2, started=now - 4000, done=1, failed=1)  # 2 s old: late (after 0.4 s)
    clock.now = now - 30
    beat(client, w3, started=now - 600, ttl=0.001)  # expires at once: dead
    clock.now = now
    beat(client, w1, started=now - 3725, current=ids["sleeping"], done=2)
    time.sleep(0.01)
    return ids


STALLED_WORKER = "node-d-2040"


def populate_troubled(client: Client, clock: FrozenClock) -> dict[str, str]:
    """``populate_busy``, plus what self-healing reports: a worker stalled on a task past its
    time limit, a task whose stored record is malformed (``attempt`` is not a number), and
    three repairs by the reconciler. Returns ids by label (``stuck``, ``broken`` added)."""
    ids = populate_busy(client, clock)
    now = clock.now
    clock.now = now - 75
    ids["stuck"] = create(client, 8, "SLEEP", (600,), clock.now)
    clock.now = now - 72
    start(client, STALLED_WORKER, ids["stuck"])
    clock.now = now - 50
    ids["broken"] = create(client, 9, "ADD", (1, 1), clock.now)
    client.store.r.hset(client.store.keys.task(ids["broken"]), "attempt", "x")
    clock.now = now - 15
    client.store.record_repairs("node-a-1201", 2, 1)
    clock.now = now
    client.store.record_repairs("node-a-1201", 0, 0)
    beat(client, STALLED_WORKER, started=now - 900, current=ids["stuck"], done=7,
         stalled=f"task {ids['stuck']} (SLEEP) is 42 s over its time limit of 30 s and has not "
                 "stopped")
    return ids


def frozen_app(client: Client, clock: FrozenClock, **kw: Any) -> YadtqApp:
    """The app with frozen time, UTC timestamps and a fixed target text."""
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("health_interval", 0.1)
    return make_app(client, clock=clock, tz=UTC, target="yadtq:unit on redis://fake", **kw)


def fast_app(client: Client, **kw: Any) -> YadtqApp:
    """The app polling quickly (for pilot tests)."""
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("health_interval", 0.1)
    kw.setdefault("tz", UTC)
    return make_app(client, **kw)


def dashboard(app: YadtqApp) -> DashboardScreen:
    return app.dashboard


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 5.0,
                   what: str = "condition") -> None:
    """Let the app run until ``predicate()`` is true (bounded)."""
    await wait_async(pilot.pause, predicate, timeout, what)


async def wait_refreshed(pilot: Pilot[Any], times: int = 1, timeout: float = 5.0) -> None:
    """Wait until the dashboard applied ``times`` more snapshots."""
    screen = dashboard(pilot.app)  # type: ignore[arg-type]
    target = screen.polls + times
    await wait_for(pilot, lambda: screen.polls >= target, timeout, f"{times} refreshes")


class RedisSwitch:
    """Makes every Redis call of a store raise ``ServiceUnavailable`` while ``down`` is True."""

    def __init__(self, client: Client, monkeypatch: Any) -> None:
        self.down = False
        self.calls_while_down = 0
        real = client.store._call

        def call(fn: Callable[[], Any]) -> Any:
            if self.down:
                self.calls_while_down += 1
                raise ServiceUnavailable("Redis unreachable at redis://fake: Connection refused")
            return real(fn)

        monkeypatch.setattr(client.store, "_call", call)


def table_text(app: YadtqApp) -> list[list[str]]:
    """The task table's cells as plain strings, in display order."""
    table = dashboard(app).table
    out = []
    for row in table.ordered_rows:
        out.append([str(getattr(c, "plain", c)) for c in table.get_row(row.key)])
    return out


async def settle(pilot: Pilot[Any]) -> None:
    """Let pending workers finish and their messages be handled."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await asyncio.sleep(0)


def messages(broker: FakeBroker, client: Client) -> list[bytes | None]:
    """Every task message sent to the fake Kafka."""
    return broker.messages(client.settings.topic)


def form_message(app: Any) -> str:
    """The line under the submit form."""
    return str(app.screen.query_one("#form-message", Static).render())


def static_text(app: Any, selector: str) -> str:
    """The text of one Static on the current screen."""
    return str(app.screen.query_one(selector, Static).render())


async def type_and_submit(pilot: Pilot[Any], text: str) -> None:
    """Type ``text`` in the form (keeping what is there) and press Enter."""
    pilot.app.dashboard.form.input.focus()  # type: ignore[attr-defined]
    await pilot.pause()
    if text:
        await pilot.press(*text)
    await pilot.press("enter")
    await settle(pilot)


async def focus_table(pilot: Pilot[Any]) -> None:
    """Esc: from the form to the task table."""
    await pilot.press("escape")
    await pilot.pause()


def screen_text(app: Any) -> str:
    """Everything on screen as plain text (from the SVG export, tags removed)."""
    svg = app.export_screenshot()
    text = re.sub(r"<[^>]+>", "", svg.split("</style>", 1)[-1])
    return html.unescape(text).replace("\xa0", " ")
