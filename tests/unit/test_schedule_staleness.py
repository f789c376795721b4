"""Schedules nobody declares any more: each publish records when (Redis's clock, inside the
published JSON); a schedule not published for more than ``STALE_AFTER`` is listed as stale with
no next run (CLI text and ``--json``), one not published for ``FORGET_AFTER`` is removed by the
next publish of any worker; entries without a time (older workers) are shown as before."""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import UTC

import pytest

import worker.periodic
from tests.polling import eventually
from worker.outbox import Outbox
from worker.periodic import PeriodicScheduler
from yadtq import Client, cli
from yadtq.schedule_store import FORGET_AFTER, PUBLISH_EVERY, STALE_AFTER, ScheduleStore
from yadtq.schedules import Schedule, ScheduleInfo
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.text import format_timestamp

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
TICK = Schedule("tick", "ADD", (1, 2), every=60)
OTHER = Schedule("other", "ADD", (3, 4), every=300)


@pytest.fixture
def store(fake_store: RedisStore) -> ScheduleStore:
    return ScheduleStore(fake_store)


def _infos(store: ScheduleStore, now: float) -> dict[str, ScheduleInfo]:
    return {i.name: i for i in store.infos(now=now)}


def test_one_definition_of_the_publish_interval() -> None:
    assert worker.periodic.PUBLISH_EVERY is PUBLISH_EVERY
    assert STALE_AFTER == 3 * PUBLISH_EVERY and FORGET_AFTER == 24 * 3600


def test_a_schedule_not_published_for_three_intervals_is_stale_until_published_again(
        store: ScheduleStore) -> None:
    store.publish([TICK], now=T0)
    live = store.infos(now=T0 + STALE_AFTER)[0]
    assert live.published_at == T0 and not live.stale and live.next_run is not None
    stale = store.infos(now=T0 + STALE_AFTER + 1)[0]
    assert stale.stale and stale.next_run is None and stale.published_at == T0
    assert stale.schedule == TICK and stale.problem is None  # still readable, just not declared
    store.publish([TICK], now=T0 + 1000)  # a worker declaring it again
    again = store.infos(now=T0 + 1001)[0]
    assert not again.stale and again.published_at == T0 + 1000
    assert again.next_run == T0 + 1001 - (T0 + 1001) % 60 + 60


def test_the_last_run_is_still_shown_for_a_stale_schedule(store: ScheduleStore,
                                                          fake_store: RedisStore) -> None:
    store.publish([TICK], now=T0)
    p = int(T0 - T0 % 60)
    fake_store.r.hset(fake_store.keys.schedules_last, "tick", p)
    info = store.infos(now=T0 + 3600)[0]
    assert info.stale and info.last_period == p and info.last_task == TICK.task_id(p)


def test_a_schedule_unpublished_for_a_day_is_removed_by_another_workers_publish(
        store: ScheduleStore, fake_store: RedisStore) -> None:
    store.publish([TICK, OTHER], now=T0)
    fake_store.r.hset(fake_store.keys.schedules_last, "tick", int(T0 - T0 % 60))
    assert store.publish([OTHER], now=T0 + FORGET_AFTER) == []  # not yet: exactly a day
    assert store.publish([OTHER], now=T0 + FORGET_AFTER + 1) == ["tick"]
    assert [i.name for i in store.infos(now=T0 + FORGET_AFTER + 2)] == ["other"]
    # the marker is kept for good: the schedule coming back never re-runs a period
    assert store.markers() == {"tick": int(T0 - T0 % 60)}


def test_a_schedule_published_again_is_not_removed(store: ScheduleStore) -> None:
    """The publish that would remove it declares it: written first, in the same script."""
    store.publish([TICK], now=T0)
    assert store.publish([TICK, OTHER], now=T0 + 2 * FORGET_AFTER) == []
    infos = store.infos(now=T0 + 2 * FORGET_AFTER)
    assert [(i.name, i.stale) for i in infos] == [("other", False), ("tick", False)]


def test_entries_without_a_time_are_shown_as_before_and_never_removed(
        store: ScheduleStore, fake_store: RedisStore) -> None:
    """What a worker before this change published: the definition alone."""
    fake_store.r.hset(fake_store.keys.schedules, "tick", json.dumps(TICK.to_public()))
    info = store.infos(now=T0 + 100 * FORGET_AFTER)[0]
    assert info.published_at is None and not info.stale and info.next_run is not None
    assert store.publish([OTHER], now=T0 + 100 * FORGET_AFTER) == []
    assert {i.name for i in store.infos(now=T0)} == {"tick", "other"}
    store.publish([TICK], now=T0 + 5)  # a new worker declaring it: timed from now on
    assert store.infos(now=T0 + 5)[1].published_at == T0 + 5


@pytest.mark.parametrize("raw", [
    "{", "[1, 2]", "42", "null", json.dumps({**TICK.to_public(), "published_at": "yesterday"}),
    json.dumps({**TICK.to_public(), "published_at": True}),
    json.dumps({**TICK.to_public(), "published_at": None}),
])
def test_a_malformed_or_missing_time_is_kept_and_never_stale(
        store: ScheduleStore, fake_store: RedisStore, raw: str) -> None:
    fake_store.r.hset(fake_store.keys.schedules, "tick", raw)
    assert store.publish([OTHER], now=T0 + 100 * FORGET_AFTER) == []
    info = _infos(store, T0 + 100 * FORGET_AFTER)["tick"]
    assert info.published_at is None and not info.stale


def test_publish_uses_redis_clock_by_default(store: ScheduleStore) -> None:
    before = store.now()
    store.publish([TICK])
    info = store.infos()[0]
    assert info.published_at is not None and before <= info.published_at <= store.now()
    assert not info.stale


# ------------------------------------------------------------------ the CLI
def test_cli_says_a_stale_schedule_will_not_run_and_json_carries_the_time(
        fake_client: Client, fake_store: RedisStore) -> None:
    store = ScheduleStore(fake_store)
    now = store.now()
    old = now - STALE_AFTER - 30
    store.publish([TICK], now=old)
    store.publish([OTHER], now=now)
    out = io.StringIO()
    assert cli.main(["schedules"], client=fake_client, stdout=out) == 0
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()}
    since = format_timestamp(old, UTC, zone=True)
    assert f"none: not declared by a running worker since {since}" in lines["tick"]
    assert "none: not declared" not in lines["other"]
    out = io.StringIO()
    assert cli.main(["schedules", "--json"], client=fake_client, stdout=out) == 0
    rows = {r["name"]: r for r in json.loads(out.getvalue())}
    assert rows["tick"]["stale"] is True and rows["tick"]["published_at"] == old
    assert rows["tick"]["next_run"] is None and rows["tick"]["state"] == "ok"
    assert rows["other"]["stale"] is False and rows["other"]["published_at"] == now
    assert rows["other"]["next_run"] is not None


def test_cli_json_for_an_entry_from_an_older_worker(fake_client: Client,
                                                    fake_store: RedisStore) -> None:
    fake_store.r.hset(fake_store.keys.schedules, "tick", json.dumps(TICK.to_public()))
    out = io.StringIO()
    assert cli.main(["schedules", "--json"], client=fake_client, stdout=out) == 0
    (row,) = json.loads(out.getvalue())
    assert row["published_at"] is None and row["stale"] is False and row["next_run"] is not None


# ------------------------------------------------------------------ the worker's loop
def test_the_scheduler_loop_publishes_with_redis_time_and_removes_day_old_entries(
        fake_store: RedisStore, fake_broker: FakeBroker, caplog: pytest.LogCaptureFixture) -> None:
    store = ScheduleStore(fake_store)
    store.publish([OTHER], now=store.now() - FORGET_AFTER - 60)  # a worker gone for a day
    outbox = Outbox(fake_store.settings, fake_broker.producer, "w1")
    stopping = threading.Event()
    sched = PeriodicScheduler(fake_store, outbox, [TICK], "w1", stopping)
    caplog.set_level(logging.INFO, logger="yadtq.periodic")
    sched.start()
    try:
        assert eventually(lambda: [i.name for i in store.infos()] == ["tick"], timeout=10)
    finally:
        stopping.set()
        sched.join(5)
    (info,) = store.infos()
    assert not info.stale and info.published_at is not None
    assert "removed schedules no worker published for a day: other" in caplog.text
