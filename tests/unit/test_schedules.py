"""Periodic schedules without services: declaring them (clear errors), the period arithmetic
(intervals, cron, daylight-saving changes), the published form (a total decoder), the FIRE script
(marker, first sight, malformed markers) and the scheduler's latest-missed-period rule, over
fakeredis (the real Lua) and the fake broker."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.polling import eventually
from worker.outbox import Outbox
from worker.periodic import PeriodicScheduler
from yadtq import Client, cli
from yadtq.errors import StoreError
from yadtq.lua_periodic import (
    FIRE_CREATED,
    FIRE_DONE_BEFORE,
    FIRE_FIRST_SEEN,
    FIRE_FUTURE,
    FIRE_MARKER_REPAIRED,
)
from yadtq.registry import Registry
from yadtq.schedule_store import ScheduleStore
from yadtq.schedules import Schedule, ScheduleError, Schedules, format_every, periodic, task_id_for
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import decode

BERLIN = ZoneInfo("Europe/Berlin")
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC: a fixed time in the past (FIRE refuses the future)


def _at(tz: ZoneInfo, *parts: int, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


# ------------------------------------------------------------------ declaring
@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"cron": "61 * * * *"}, "Bad minute"),
    ({"cron": "* * * *"}, "must have 5 fields"),
    ({"cron": "0 0 * * * *"}, "must have 5 fields"),
    ({"cron": "0 0 31 2 *"}, "Bad day-of-month"),
    ({"cron": "every hour"}, "5 fields"),
    ({"every": 0}, ">= 1"),
    ({"every": 1.5}, "whole number"),
    ({"every": timedelta(milliseconds=500)}, "whole number"),
    ({"every": float("inf")}, "whole number"),
    ({"every": True}, "whole number"),
    ({}, "exactly one of cron= or every="),
    ({"cron": "* * * * *", "every": 60}, "exactly one of cron= or every="),
    ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"every": 60, "args": [{"a": 1}]}, "ADD"),
    ({"every": 60, "name": "bad name!"}, "invalid schedule name"),
])
def test_invalid_declarations_fail_at_once_with_the_reason(kwargs: dict[str, Any],
                                                          reason: str) -> None:
    with pytest.raises(ScheduleError) as exc:
        periodic("ADD", schedules=Schedules(), **kwargs)
    assert reason in str(exc.value) or (reason == "ADD" and "ADD" in str(exc.value)), exc.value


def test_declaration_and_check_against_the_registry() -> None:
    schedules = Schedules()
    periodic("ADD", every=timedelta(minutes=5), args=[2, 3], name="add-5m", schedules=schedules)
    periodic("MUL", cron="0 * * * *", args=[6, 7], schedules=schedules)
    periodic("MUL", cron="0 * * * *", args=[6, 7], schedules=schedules)  # the same again: fine
    with pytest.raises(ScheduleError, match="declared twice"):
        periodic("MUL", cron="5 * * * *", args=[6, 7], schedules=schedules)
    assert [s.name for s in schedules.all()] == ["MUL", "add-5m"]
    assert schedules.all()[1].every == 300 and schedules.all()[1].expression == "every 5m"
    registry = Registry()
    from yadtq.builtins import register_builtins

    register_builtins(registry)
    schedules.check(registry)
    periodic("ADD", every=60, args=[1], name="short", schedules=schedules)
    with pytest.raises(ScheduleError, match="short: ADD takes 2 arguments"):
        schedules.check(registry)
    bad = Schedules()
    periodic("NOPE", every=60, schedules=bad)
    with pytest.raises(ScheduleError, match="unknown task 'NOPE'"):
        bad.check(registry)


def test_format_every() -> None:
    assert [format_every(s) for s in (1, 90, 3600, 86400 + 61)] == ["1s", "1m30s", "1h", "1d1m1s"]


def test_task_ids_are_deterministic_hex_and_distinct() -> None:
    a = task_id_for("report", 1_700_000_000)
    assert a == task_id_for("report", 1_700_000_000)
    assert len(a) == 32 and int(a, 16) >= 0
    assert len({a, task_id_for("report", 1_700_000_060), task_id_for("report2", 1_700_000_000)}) == 3


# ------------------------------------------------------------------ periods
def test_interval_periods_are_aligned_to_the_epoch() -> None:
    s = Schedule("x", "ADD", (1, 2), every=300)
    assert s.period_start(T0) == T0 - T0 % 300
    assert s.period_start(T0 - T0 % 300) == T0 - T0 % 300  # the boundary is in its own period
    assert s.next_after(T0 - T0 % 300) == T0 - T0 % 300 + 300
    assert s.next_after(T0 - 0.5) == T0 - T0 % 300 + 300 if T0 % 300 else T0


def test_cron_period_is_the_latest_time_at_or_before_now() -> None:
    s = Schedule("x", "ADD", (1, 2), cron="0 * * * *")
    noon = _at(ZoneInfo("UTC"), 2026, 6, 1, 12, 0)
    assert s.period_start(noon) == noon
    assert s.period_start(noon + 1799.9) == noon
    assert s.period_start(noon - 0.1) == noon - 3600
    assert s.next_after(noon) == noon + 3600
    assert s.next_after(noon - 0.1) == noon


def test_dst_spring_forward_the_skipped_time_runs_once_at_the_change() -> None:
    """Europe/Berlin skips 02:00-03:00 on 2026-03-29: a 02:30 job runs at 03:00 (Debian cron)."""
    s = Schedule("x", "ADD", (1, 2), cron="30 2 * * *", tz="Europe/Berlin")
    change = _at(BERLIN, 2026, 3, 29, 3, 0)
    assert s.next_after(_at(BERLIN, 2026, 3, 29, 1, 0)) == change
    assert s.period_start(change + 1800) == change
    assert s.period_start(change - 1) == _at(BERLIN, 2026, 3, 28, 2, 30)
    assert s.next_after(change) == _at(BERLIN, 2026, 3, 30, 2, 30)


def test_dst_fall_back_the_repeated_time_runs_once() -> None:
    """Europe/Berlin repeats 02:00-03:00 on 2026-10-25: a 02:30 job runs once, the first time."""
    s = Schedule("x", "ADD", (1, 2), cron="30 2 * * *", tz="Europe/Berlin")
    first = _at(BERLIN, 2026, 10, 25, 2, 30, fold=0)
    second = _at(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert second - first == 3600
    assert s.next_after(first - 60) == first
    assert s.period_start(second + 60) == first
    assert s.next_after(first) == _at(BERLIN, 2026, 10, 26, 2, 30)


@hsettings(max_examples=40, deadline=None)
@given(expr=st.sampled_from(["*/30 * * * *", "30 2 * * *", "0 3 * * 0", "0 0 1 * *",
                             "45 1-3 * * *"]),
       tz=st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"]),
       offset=st.integers(-3 * 86400, 3 * 86400))
def test_period_start_agrees_with_forward_iteration_around_dst(expr: str, tz: str,
                                                                offset: int) -> None:
    """Around both 2026 changes, the period start is the last time cron's forward iteration
    gives at or before ``now``, and the next run is the first one after it."""
    for change in (_at(BERLIN, 2026, 3, 29, 2, 0), _at(BERLIN, 2026, 10, 25, 2, 0)):
        now = change + offset
        s = Schedule("x", "ADD", (1, 2), cron=expr, tz=tz)
        times = []
        back = 40 if expr.startswith("0 0 1") else 9  # days: more than one period before now
        for dt in CronSim(expr, datetime.fromtimestamp(now - back * 86400, ZoneInfo(tz))):
            t = int(dt.timestamp())
            times.append(t)
            if t > now:
                break
        assert s.period_start(now) == max(t for t in times if t <= now)
        assert s.next_after(now) == min(t for t in times if t > now)


# ------------------------------------------------------------------ published form
def test_published_form_round_trips() -> None:
    s = Schedule("weekday", "ADD", (2, 3), cron="30 8 * * 1-5", tz="Europe/Paris")
    assert Schedule.from_public(json.dumps(s.to_public())) == s


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=6),
    max_leaves=20)


@hsettings(max_examples=120, deadline=None)
@given(data=st.fixed_dictionaries({"v": st.sampled_from([1, 1, 2, "1"])},
                                  optional={"name": json_values | st.just("ok"),
                                            "task": json_values | st.just("ADD"),
                                            "args": json_values, "cron": json_values,
                                            "every": json_values, "tz": json_values})
       | json_values)
def test_reading_a_published_entry_is_total(data: Any) -> None:
    """Whatever JSON a worker or a person left there: a ``Schedule`` or a ``ScheduleError``."""
    try:
        raw = json.dumps(data)
    except ValueError:
        return
    try:
        Schedule.from_public(raw)
    except ScheduleError:
        pass


# ------------------------------------------------------------------ FIRE and the scheduler
@pytest.fixture
def schedule_store(fake_store: RedisStore) -> ScheduleStore:
    return ScheduleStore(fake_store)


def test_fire_first_sight_then_once_per_period(schedule_store: ScheduleStore,
                                               fake_store: RedisStore) -> None:
    s = Schedule("tick", "ADD", (1, 2), every=60)
    p = T0 - T0 % 60
    assert schedule_store.fire(s, p).code == FIRE_FIRST_SEEN  # a new schedule starts next period
    assert fake_store.get(s.task_id(p)) is None
    assert schedule_store.fire(s, p).code == FIRE_DONE_BEFORE
    fired = schedule_store.fire(s, p + 60)
    assert fired.code == FIRE_CREATED
    task = fake_store.get(s.task_id(p + 60))
    assert task is not None and task.name == "ADD" and task.args == (1, 2)
    assert task.created_at == fired.created_at and task.history[0].note == (
        f"periodic: schedule tick, period {p + 60}")
    assert schedule_store.fire(s, p + 60).code == FIRE_DONE_BEFORE
    assert schedule_store.fire(s, p).code == FIRE_DONE_BEFORE  # a late scheduler: an older period
    assert schedule_store.markers() == {"tick": p + 60}
    assert fake_store.counts()[task.state] == 1


def test_fire_refuses_a_future_period(schedule_store: ScheduleStore) -> None:
    s = Schedule("tick", "ADD", (1, 2), every=60)
    assert schedule_store.fire(s, int(schedule_store.now()) + 120).code == FIRE_FUTURE


@pytest.mark.parametrize("marker", ["yesterday", "nan", "inf", "1e300", ""])
def test_a_malformed_marker_is_replaced_without_running_the_period(
        schedule_store: ScheduleStore, fake_store: RedisStore, marker: str) -> None:
    s = Schedule("tick", "ADD", (1, 2), every=60)
    p = T0 - T0 % 60
    fake_store.r.hset(fake_store.keys.schedules_last, "tick", marker)
    assert schedule_store.fire(s, p).code == FIRE_MARKER_REPAIRED
    assert fake_store.get(s.task_id(p)) is None
    assert schedule_store.fire(s, p + 60).code == FIRE_CREATED


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _scheduler(fake_store: RedisStore, broker: FakeBroker, schedules: list[Schedule],
               clock: Clock) -> PeriodicScheduler:
    outbox = Outbox(fake_store.settings, broker.producer, "w1")
    sched = PeriodicScheduler(fake_store, outbox, schedules, "w1", threading.Event())
    sched.store.now = clock  # type: ignore[method-assign]
    return sched


def test_after_downtime_only_the_latest_missed_period_runs(
        fake_store: RedisStore, fake_broker: FakeBroker) -> None:
    s = Schedule("tick", "ADD", (1, 2), every=60)
    p = T0 - T0 % 60
    clock = Clock(p + 5)
    sched = _scheduler(fake_store, fake_broker, [s], clock)
    sched.run_once()  # first sight: nothing runs
    clock.now = p + 65
    sched.run_once()
    clock.now = p + 70
    sched.run_once()  # same period: nothing more
    assert sched.fired == 1
    clock.now = p + 10 * 60 + 30  # nine periods later (the workers were down)
    sched.run_once()
    assert sched.fired == 2
    sent = [decode(m) for m in fake_broker.messages(fake_store.settings.topic)]
    assert sorted(m.id for m in sent) == sorted([s.task_id(p + 60), s.task_id(p + 600)])
    assert fake_store.total() == 2


def test_the_scheduler_waits_until_the_next_period_and_skips_without_the_lock(
        fake_store: RedisStore, fake_broker: FakeBroker) -> None:
    s = Schedule("tick", "ADD", (1, 2), every=60)
    p = T0 - T0 % 60
    clock = Clock(p + 59.7)
    sched = _scheduler(fake_store, fake_broker, [s], clock)
    assert sched.run_once() == pytest.approx(0.3)
    fake_store.r.set(fake_store.keys.lock("periodic"), "someone-else", px=5000)
    clock.now = p + 200
    other = _scheduler(fake_store, fake_broker, [s], clock)
    other.worker_id = "w2"
    assert other.run_once() == 1.0 and other.fired == 0


def test_a_send_failure_leaves_the_task_queued_for_the_reconciler(
        fake_store: RedisStore, fake_broker: FakeBroker) -> None:
    s = Schedule("tick", "ADD", (1, 2), every=60)
    p = T0 - T0 % 60
    clock = Clock(p + 1)
    sched = _scheduler(fake_store, fake_broker, [s], clock)
    sched.run_once()
    fake_broker.available = False
    clock.now = p + 61
    sched.run_once()
    task = fake_store.get(s.task_id(p + 60))
    assert task is not None and task.state.value == "queued" and sched.fired == 0
    fake_broker.available = True
    clock.now = p + 62
    sched.run_once()  # the period is not fired again: the reconciler sends it
    assert fake_broker.messages(fake_store.settings.topic) == []


# ------------------------------------------------------------------ listing
def test_schedules_listing_reports_malformed_entries(fake_client: Client,
                                                     fake_store: RedisStore) -> None:
    store = ScheduleStore(fake_store)
    good = Schedule("tick", "ADD", (1, 2), every=60)
    store.publish([good])
    fake_store.r.hset(fake_store.keys.schedules, mapping={
        "broken": "{", "wrong": json.dumps({"v": 1, "name": "wrong", "task": "ADD",
                                           "every": -5, "args": []})})
    fake_store.r.hset(fake_store.keys.schedules_last, "tick", T0 - T0 % 60)
    infos = {i.name: i for i in fake_client.schedules()}
    assert infos["broken"].problem == "not JSON" and infos["broken"].schedule is None
    assert "every must be a whole number" in (infos["wrong"].problem or "")
    tick = infos["tick"]
    assert tick.problem is None and tick.schedule == good
    assert tick.last_task == good.task_id(T0 - T0 % 60) and tick.last_state is None
    assert tick.next_run is not None and tick.next_run % 60 == 0
    out = io.StringIO()
    assert cli.main(["schedules"], client=fake_client, stdout=out) == 0
    text = out.getvalue()
    assert "invalid: not JSON" in text and "every 1m" in text and "ADD 1 2" in text
    out = io.StringIO()
    assert cli.main(["schedules", "--json"], client=fake_client, stdout=out) == 0
    rows = {r["name"]: r for r in json.loads(out.getvalue())}
    assert rows["broken"]["state"] == "invalid" and rows["tick"]["state"] == "ok"


def test_no_schedules(fake_client: Client) -> None:
    out = io.StringIO()
    assert cli.main(["schedules"], client=fake_client, stdout=out) == 0
    assert out.getvalue().startswith("no schedules")


def test_utc_is_the_default_zone() -> None:
    s = Schedule("x", "ADD", (1, 2), cron="0 0 * * *")
    assert s.tz == "UTC"
    assert datetime.fromtimestamp(s.next_after(T0) or 0, UTC).hour == 0


def test_one_failing_schedule_does_not_stop_the_others(
        fake_store: RedisStore, fake_broker: FakeBroker) -> None:
    good = Schedule("good", "ADD", (1, 2), every=60)
    bad = Schedule("bad", "ADD", (1, 2), every=60)
    p = T0 - T0 % 60
    clock = Clock(p + 1)
    sched = _scheduler(fake_store, fake_broker, [bad, good], clock)
    real_fire = sched.store.fire

    def fire(schedule: Schedule, period: int) -> Any:
        if schedule.name == "bad":
            raise StoreError("WRONGTYPE Operation against a key holding the wrong kind of value")
        return real_fire(schedule, period)

    sched.store.fire = fire  # type: ignore[method-assign]
    sched.run_once()
    clock.now = p + 61
    sched.run_once()
    assert sched.fired == 1 and fake_store.get(good.task_id(p + 60)) is not None


def test_a_schedules_key_of_the_wrong_type_does_not_stop_the_scheduler(
        fake_store: RedisStore, fake_broker: FakeBroker, fake_client: Client) -> None:
    """Publishing fails (the hash is a string): the loop fires anyway; the listing says why."""
    fake_store.r.set(fake_store.keys.schedules, "not a hash")
    s = Schedule("tick", "ADD", (1, 2), every=1)
    outbox = Outbox(fake_store.settings, fake_broker.producer, "w1")
    stopping = threading.Event()
    sched = PeriodicScheduler(fake_store, outbox, [s], "w1", stopping)
    sched.start()
    try:
        assert eventually(lambda: sched.fired >= 1, timeout=10)
    finally:
        stopping.set()
        sched.join(5)
    assert not sched.thread.is_alive()
    assert fake_store.r.get(fake_store.keys.lock("periodic")) is None  # released on stop
    err = io.StringIO()
    assert cli.main(["schedules"], client=fake_client, stdout=io.StringIO(), stderr=err) == 7
    assert "schedules key" in err.getvalue() and "WRONGTYPE" in err.getvalue()


def test_next_run_from_inside_the_repeated_hour_is_after_now() -> None:
    """Found by Hypothesis: at 02:00 of the second pass through 02:00-03:00 (fall-back), cronsim
    read the start as the first pass and gave that day's 02:30 (before now). Cron runs a time in
    the repeated hour once, on the first pass, so the next run is the next day's."""
    s = Schedule("x", "ADD", (1, 2), cron="30 2 * * *", tz="Europe/Berlin")
    now = _at(BERLIN, 2026, 10, 25, 2, 0, fold=1)
    assert now == 1792890000
    assert s.next_after(now) == _at(BERLIN, 2026, 10, 26, 2, 30)
    assert s.period_start(now) == _at(BERLIN, 2026, 10, 25, 2, 30) < now
