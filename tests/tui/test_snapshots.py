"""SVG snapshots of the dashboard (pytest-textual-snapshot). Time is frozen, ids are fixed.

Regenerate after an intended change with ``.venv/bin/pytest tests/tui/test_snapshots.py
--snapshot-update`` and review the SVGs under ``__snapshots__``.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Input

from tests.tui.helpers import (
    FrozenClock,
    RedisSwitch,
    create,
    finish,
    frozen_app,
    populate_busy,
    populate_troubled,
    start,
    task_id,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.due import DueSet
from yadtq.models import Outcome, TaskState
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope
from yadtq_tui.screens import ConfirmResetScreen, DetailScreen
from yadtq_tui.widgets import Banner

pytestmark = pytest.mark.tui

SIZE = (120, 40)


async def _ready(pilot: Any, refreshes: int = 2) -> None:
    """Data shown, blinking cursors stopped."""
    await wait_refreshed(pilot, refreshes)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def test_empty(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE, run_before=_ready)


def test_busy(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)
    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE, run_before=_ready)


def test_dead_worker(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    """A worker died while running a task: the task stays in-progress, the worker turns dead."""
    now = clock.now
    clock.now = now - 100
    tid = create(fake_client, 1, "SLEEP", (60,), clock.now)
    clock.now = now - 99
    start(fake_client, "gpu-box-4242", tid)
    fake_client.store.r.zadd(fake_client.store.keys.workers, {"gpu-box-4242": now - 42})
    clock.now = now
    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE, run_before=_ready)


def test_detail_view(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    clock.now -= 1
    start(fake_client, "node-a-1201", ids["queued1"])
    finish(fake_client, "node-a-1201", ids["queued1"], TaskState.FAILED,
           error="RuntimeError: flaky failure 1\n(retrying)")
    clock.now += 1
    app = frozen_app(fake_client, clock)

    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        pilot.app.dashboard.open_detail(fake_client.get(ids["queued1"]))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_reset_dialog(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)

    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        await pilot.press("escape", "r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmResetScreen))

    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE,
                        run_before=run_before)


def test_disconnected_banner(snap_compare: Any, fake_client: Client, fake_broker: FakeBroker,
                             clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    populate_busy(fake_client, clock)
    switch = RedisSwitch(fake_client, monkeypatch)

    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        switch.down = True
        fake_broker.available = False
        banner = pilot.app.screen.query_one(Banner)
        await wait_for(pilot, lambda: len(banner.lines) == 2, what="both banner lines")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE,
                        run_before=run_before)


def test_invalid_input(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    populate_busy(fake_client, clock)

    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        await pilot.press(*"ADD 2 x", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE,
                        run_before=run_before)


def test_help(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE,
                        run_before=run_before)


def test_stalled_worker_and_invalid_task(snap_compare: Any, fake_client: Client,
                                         clock: FrozenClock) -> None:
    """A worker stalled on a task past its limit (between alive and late, its reason under the
    panel), a malformed task record (an ``invalid`` row) and the reconciler's repairs."""
    populate_troubled(fake_client, clock)
    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE, run_before=_ready)


def test_invalid_task_detail(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    ids = populate_troubled(fake_client, clock)
    app = frozen_app(fake_client, clock)

    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        pilot.app.dashboard.open_detail(fake_client.get(ids["broken"]))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailScreen))
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def _populate_scheduled(client: Client, clock: FrozenClock) -> dict[str, str]:
    """``populate_busy`` plus a task delayed by 90 s and a retry due in 12 s (due times fixed on
    the frozen clock: the scripts take them from Redis's own clock)."""
    ids = populate_busy(client, clock)
    now = clock.now
    later = Envelope(task_id(20), "MUL", (3, 4), now - 1)
    DueSet(client.store).schedule([later], now + 90, relative=False)
    ids["later"] = later.id
    clock.now = now - 3
    ids["retry"] = create(client, 21, "ADD", (1, 1), clock.now)
    start(client, "node-a-1201", ids["retry"])
    client.store.finish("node-a-1201", [Outcome(ids["retry"], 1, TaskState.SCHEDULED,
                                                error="RuntimeError: flaky failure 1",
                                                note="retry in 0.5 s", delay=0.5)])
    client.store.r.hset(client.store.keys.task(ids["retry"]), "due_at", repr(now + 12))
    client.store.r.zadd(client.store.keys.due, {ids["retry"]: now + 12})
    clock.now = now
    return ids


def test_scheduled_tasks(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    """A delayed task and a retry waiting for its backoff: ◷ scheduled, due in ..."""
    _populate_scheduled(fake_client, clock)
    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE, run_before=_ready)


def test_scheduled_task_detail(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    ids = _populate_scheduled(fake_client, clock)
    app = frozen_app(fake_client, clock)

    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        pilot.app.dashboard.open_detail(fake_client.get(ids["retry"]))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailScreen))
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_cancelled_tasks(snap_compare: Any, fake_client: Client, clock: FrozenClock) -> None:
    """A queued task cancelled before it started, and a running one cancelled through its worker
    (its attempt was interrupted): ``⊘ cancelled`` rows, muted, with the reason."""
    ids = populate_busy(fake_client, clock)
    fake_client.cancel(ids["queued2"])
    fake_client.cancel(ids["sleeping"])
    finish(fake_client, "node-a-1201", ids["sleeping"], TaskState.CANCELLED,
           error="cancelled while running")
    assert snap_compare(frozen_app(fake_client, clock), terminal_size=SIZE, run_before=_ready)
