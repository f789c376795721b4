"""Pilot: the dashboard while finished tasks expire. The counts in the status bar stay equal to what
the table lists (the counts are current totals, not lifetime ones)."""

from __future__ import annotations

import re

import pytest
from textual.widgets import Static

from tests.tui.helpers import (
    SIZE,
    FrozenClock,
    frozen_app,
    populate_busy,
    table_text,
    wait_for,
    wait_refreshed,
)
from yadtq import Client
from yadtq.retention import Retention
from yadtq_tui.widgets import StatusBar

pytestmark = pytest.mark.tui

STATES = ("queued", "in-progress", "completed", "failed")


def bar_counts(app: object) -> dict[str, int]:
    bar = app.screen.query_one(StatusBar)  # type: ignore[attr-defined]
    out = {}
    for state in (*STATES, "total"):
        text = str(bar.query_one(f"#count-{state}", Static).render())
        match = re.search(r"(\d+)\s*$", text)
        assert match, text
        out[state] = int(match.group(1))
    return out


def listed(app: object) -> dict[str, int]:
    rows = table_text(app)  # type: ignore[arg-type]
    out = {s: sum(1 for r in rows if r[3].endswith(" " + s)) for s in STATES}
    out["total"] = len(rows)
    return out


async def test_counts_equal_the_listed_tasks_as_finished_ones_expire(fake_client: Client,
                                                                     clock: FrozenClock) -> None:
    ids = populate_busy(fake_client, clock)
    app = frozen_app(fake_client, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        assert bar_counts(app) == listed(app) == {
            "queued": 2, "in-progress": 1, "completed": 3, "failed": 1, "total": 7}
        # done1 and done2 finished 9 and 7 s before now, done3 5 s, divzero 4 s before
        assert Retention(fake_client.store).expire(6.0, now=clock.now) == 2
        await wait_for(pilot, lambda: bar_counts(app)["total"] == 5, what="the counts to drop")
        await wait_refreshed(pilot)
        assert bar_counts(app) == listed(app) == {
            "queued": 2, "in-progress": 1, "completed": 1, "failed": 1, "total": 5}
        assert {r[0] for r in table_text(app)} == {
            ids[k][:8] for k in ("queued1", "queued2", "sleeping", "done3", "divzero")}
        assert Retention(fake_client.store).expire(0.5, now=clock.now) == 2
        await wait_for(pilot, lambda: bar_counts(app)["total"] == 3, what="the counts to drop")
        await wait_refreshed(pilot)
        assert bar_counts(app) == listed(app) == {
            "queued": 2, "in-progress": 1, "completed": 0, "failed": 0, "total": 3}
