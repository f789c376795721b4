"""Periodic tasks on the real Kafka and Redis (issue 13): each period runs exactly once however
many schedulers race, a killed leader loses no period beyond the documented rule (only the latest
period missed while nobody led runs), a malformed schedule entry is reported and not fatal, and a
period's task created but never sent (a scheduler crash) is re-sent by the reconciler.

The workers load ``tests.periodic_for_tests``: ``COUNT tick`` every $YADTQ_TEST_PERIOD seconds as
schedule ``test-tick``; COUNT adds one to a Redis hash per run, so a period run twice shows."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

import tests.tasks_for_tests  # noqa: F401 - registers COUNT for the client's validation
from tests.conftest import WorkerProcs
from tests.integration.helpers import TopicSize, wait_ids_final, wait_until
from tests.periodic_for_tests import SCHEDULE
from worker.interfaces import kafka_producer
from worker.outbox import Outbox
from worker.periodic import LOCK, LOCK_TTL, MAX_SLEEP, PeriodicScheduler
from yadtq import Client, Settings, cli
from yadtq.broker import ensure_topics
from yadtq.models import Task, TaskState
from yadtq.schedule_store import Fired, ScheduleStore
from yadtq.schedules import Schedule, task_id_for
from yadtq.store import RedisStore

pytestmark = pytest.mark.integration

PERIODIC = ("--tasks", "tests.periodic_for_tests")
NOTE = re.compile(rf"periodic: schedule {re.escape(SCHEDULE)}, period (\d+)")


@pytest.fixture
def counts_key(real_settings: Settings) -> Iterator[str]:
    key = f"{real_settings.key_prefix}:test-counts"
    yield key
    redis.Redis.from_url(real_settings.redis_url).delete(key)


def _env(counts_key: str, period: int, **extra: str) -> dict[str, str]:
    return {"YADTQ_TEST_COUNTS": counts_key, "YADTQ_TEST_PERIOD": str(period), **extra}


def _periods(client: Client) -> dict[int, Task]:
    """Every task of the schedule by its period; fails on a task that is not one of its periods,
    on a period created twice and on an id that is not the period's."""
    out: dict[int, Task] = {}
    for t in client.list(limit=10_000):
        m = NOTE.fullmatch(t.history[0].note or "") if t.history else None
        assert m, f"task {t.id} is not a period of {SCHEDULE}: {t.history[:1]}"
        period = int(m.group(1))
        assert period not in out, f"period {period} created twice: {out[period].id} and {t.id}"
        assert t.id == task_id_for(SCHEDULE, period), f"task {t.id} has the wrong id for {period}"
        out[period] = t
    return out


def _runs(settings: Settings, counts_key: str) -> int:
    value = redis.Redis.from_url(settings.redis_url).hget(counts_key, "tick")
    return int(value or 0)


def _check_once(client: Client, settings: Settings, counts_key: str, workers: WorkerProcs
                ) -> dict[int, Task]:
    """After the scheduling workers stopped: a worker that schedules nothing runs what they
    fired last (a period's message may sit on a partition whose worker had already left, or
    a worker may have stopped between creating a period's task and sending it: its reconciler
    sends that one); then every period's task completed in one attempt, and COUNT ran once per
    period."""
    workers.start(1, env=_env(counts_key, 1, YADTQ_REPAIR_INTERVAL="1", YADTQ_REPAIR_AFTER="2"))
    periods = _periods(client)
    wait_ids_final(client, [t.id for t in periods.values()], timeout=60, logs=workers.logs)
    logs = workers.logs()
    periods = _periods(client)
    bad = {p: (t.state.value, t.attempt) for p, t in periods.items()
           if t.state is not TaskState.COMPLETED or t.attempt != 1}
    assert not bad, f"periods not completed in exactly one attempt: {bad}\n{logs}"
    assert _runs(settings, counts_key) == len(periods), (
        f"{_runs(settings, counts_key)} runs for {len(periods)} periods\n{logs}")
    return periods


@pytest.mark.timeout(120)
def test_three_schedulers_run_each_period_once(real_settings: Settings, workers: WorkerProcs,
                                               counts_key: str) -> None:
    """3 workers schedule ``test-tick`` every 2 s: consecutive periods, each run once."""
    ensure_topics(real_settings)
    client = Client(real_settings)
    workers.start(3, *PERIODIC, env=_env(counts_key, 2))
    wait_until(lambda: len(client.list(limit=100)) >= 6, 60, "6 periods fired")
    workers.stop()
    periods = _check_once(client, real_settings, counts_key, workers)
    starts = sorted(periods)
    assert all(b - a == 2 for a, b in zip(starts, starts[1:], strict=False)), (
        f"a period was skipped or is off the 2 s grid: {starts}\n{workers.logs()}")
    marker = ScheduleStore(client.store).markers()[SCHEDULE]
    assert marker == starts[-1]


@pytest.mark.timeout(120)
def test_schedulers_ignoring_the_lock_still_run_each_period_once(
        real_settings: Settings, workers: WorkerProcs, counts_key: str) -> None:
    """The lock only saves work: 3 schedulers that all think they lead fire the same 1 s schedule
    for 8 s; each period is created once and sent once (the topic holds one message each)."""
    ensure_topics(real_settings)
    client = Client(real_settings)
    schedule = Schedule(SCHEDULE, "COUNT", ("tick",), every=1)

    class AlwaysLeader:
        def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
            return True

        def release_lock(self, name: str, owner: str) -> None:
            return None

    stopping = threading.Event()
    outboxes = [Outbox(real_settings, kafka_producer, f"race-{i}") for i in range(3)]
    schedulers = [PeriodicScheduler(RedisStore(real_settings), outbox, [schedule], f"race-{i}",
                                    stopping) for i, outbox in enumerate(outboxes)]
    calls = [0, 0, 0]
    for i, s in enumerate(schedulers):
        s.locks = AlwaysLeader()
        s.store.fire = _counting(s.store.fire, calls, i)  # type: ignore[method-assign]
        s.start()
    time.sleep(8)
    stopping.set()
    for s, outbox in zip(schedulers, outboxes, strict=True):
        s.join(5)
        outbox.close()
    fired = sum(s.fired for s in schedulers)
    assert fired >= 5, f"only {fired} periods fired in 8 s"
    assert TopicSize(real_settings)() == fired, "a period was sent more than once"
    periods = _check_once(client, real_settings, counts_key, workers)
    assert len(periods) == fired
    assert sum(calls) >= 2 * fired, f"the schedulers did not race: {calls} calls, {fired} fired"


def _counting(fire: Callable[[Schedule, int], Fired], calls: list[int], i: int
              ) -> Callable[[Schedule, int], Fired]:
    def counted(schedule: Schedule, period: int) -> Fired:
        calls[i] += 1
        return fire(schedule, period)
    return counted


@pytest.mark.timeout(150)
def test_leader_killed_loses_no_period_and_runs_none_twice(
        real_settings: Settings, workers: WorkerProcs, counts_key: str) -> None:
    """3 workers, 1 s periods; the lock holder gets SIGKILL mid-way. Each period runs at most
    once; the only gap is while nobody led (up to the lock's TTL plus a round), after which the
    latest missed period runs; the periods go on under the new leader."""
    ensure_topics(real_settings)
    client = Client(real_settings)
    procs = workers.start(3, *PERIODIC, "--no-supervisor", env=_env(counts_key, 1))
    wait_until(lambda: len(client.list(limit=100)) >= 4, 60, "4 periods fired")
    holder = client.store.r.get(client.store.keys.lock(LOCK))
    by_id = {f"{socket.gethostname()}-{p.pid}": p for p in procs}
    assert holder in by_id, f"lock held by {holder!r}, not one of {sorted(by_id)}"
    killed_at = ScheduleStore(client.store).now()
    os.kill(by_id[holder].pid, signal.SIGKILL)
    by_id[holder].wait(10)
    wait_until(lambda: max(_periods(client)) >= killed_at + LOCK_TTL + 6, 60,
               "6 periods after the takeover")
    new_holder = client.store.r.get(client.store.keys.lock(LOCK))
    assert new_holder != holder and new_holder in by_id
    workers.stop()
    periods = _check_once(client, real_settings, counts_key, workers)
    starts = sorted(periods)
    gaps = [(a, b) for a, b in zip(starts, starts[1:], strict=False) if b - a != 1]
    bound = LOCK_TTL + MAX_SLEEP + 2  # the lock expires, a standby's next round takes it
    assert len(gaps) <= 1, f"periods lost outside the takeover: {gaps}\n{workers.logs()}"
    for a, b in gaps:
        assert a <= killed_at + 1 and b - a <= bound + 1, (
            f"gap {a}..{b} (kill at {killed_at:.1f}) longer than the takeover allows")


@pytest.mark.timeout(120)
def test_malformed_schedule_entries_are_reported_not_fatal(
        real_settings: Settings, workers: WorkerProcs, counts_key: str) -> None:
    """Entries an older or broken worker (or a person) left in the schedules hash, and a marker
    that is not a number: ``yadtq schedules`` lists the bad ones as invalid with the reason, the
    workers keep firing the good schedule (the bad marker costs at most that one period)."""
    ensure_topics(real_settings)
    client = Client(real_settings)
    keys = client.store.keys
    r = client.store.r
    bad = {"not-json": "{", "old-version": json.dumps({"v": 0, "name": "old-version"}),
           "bad-cron": json.dumps({"v": 1, "name": "bad-cron", "task": "ADD", "args": [1, 2],
                                   "cron": "61 * * * *", "every": None, "tz": "UTC"}),
           "renamed": json.dumps({"v": 1, "name": "other", "task": "ADD", "args": [],
                                  "cron": None, "every": 5, "tz": "UTC"}),
           "bad-\x1b[31m-name": json.dumps([1, 2])}
    r.hset(keys.schedules, mapping=bad)
    r.hset(keys.schedules_last, mapping={SCHEDULE: "yesterday", "bad-cron": "NaN"})
    procs = workers.start(2, *PERIODIC, env=_env(counts_key, 1))
    wait_until(lambda: len(client.list(limit=100)) >= 3, 60, "3 periods fired")
    assert all(p.poll() is None for p in procs), workers.logs()
    out = io.StringIO()
    assert cli.main(["schedules", "--json"], client=client, stdout=out) == 0
    listed = {e["name"]: e for e in json.loads(out.getvalue())}
    assert set(listed) == {*bad, SCHEDULE}
    for name in bad:
        assert listed[name]["state"] == "invalid" and listed[name]["problem"], listed[name]
    assert "not JSON" in listed["not-json"]["problem"]
    assert "version" in listed["old-version"]["problem"]
    assert "Bad minute" in listed["bad-cron"]["problem"]
    good = listed[SCHEDULE]
    assert good["state"] == "ok" and good["every"] == 1 and good["next_run"] > good["last_period"]
    assert good["last_task"] == task_id_for(SCHEDULE, good["last_period"])
    text = io.StringIO()
    assert cli.main(["schedules"], client=client, stdout=text) == 0
    assert "\x1b" not in text.getvalue() and "invalid" in text.getvalue()
    workers.stop()
    _check_once(client, real_settings, counts_key, workers)


@pytest.mark.timeout(120)
def test_period_created_but_never_sent_is_resent_by_the_reconciler(
        real_settings: Settings, workers: WorkerProcs, counts_key: str) -> None:
    """A scheduler that dies between creating a period's task and sending it leaves the task
    ``queued`` with no message: the workers' reconciler sends it; it runs once, and the period is
    not created again."""
    ensure_topics(real_settings)
    client = Client(real_settings)
    store = ScheduleStore(client.store)
    schedule = Schedule("hourly-" + uuid.uuid4().hex[:6], "COUNT", ("tick",), every=3600)
    period = schedule.period_start(store.now())
    assert period is not None
    assert not store.fire(schedule, period - 3600).created  # first seen: the marker starts
    assert store.fire(schedule, period).created  # ... and the scheduler "dies" here
    assert not store.fire(schedule, period).created
    workers.start(1, env=_env(counts_key, 1, YADTQ_REPAIR_INTERVAL="1", YADTQ_REPAIR_AFTER="2"))
    task_id = schedule.task_id(period)
    wait_ids_final(client, [task_id], timeout=60, logs=workers.logs)
    task = client.get(task_id)
    assert task.state is TaskState.COMPLETED and task.attempt == 1, task
    assert client.repairs().resent_queued == 1
    assert _runs(real_settings, counts_key) == 1
    assert not store.fire(schedule, period).created
