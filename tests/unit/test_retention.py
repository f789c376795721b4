"""Retention and purge on fakeredis (the real Lua scripts): what expires, what never does, the
counts, the CLI's ``purge`` and its refusals. The same against the real Redis, with worker processes,
is tests/integration/test_retention.py."""

from __future__ import annotations

import io
import threading

import fakeredis
import pytest

from tests.retention_helpers import consistent, finished_tasks, task_keys, unfinished_tasks
from worker.retention import Sweeper
from yadtq import Client, Settings, cli, lua
from yadtq.models import TaskState
from yadtq.retention import FINAL_STATES, Retention, final_state, parse_duration
from yadtq.store import RedisStore

T = 1_800_000_000.0
DAY = 86400.0


def test_the_final_states_come_from_the_model() -> None:
    assert FINAL_STATES == tuple(s for s in TaskState if s.is_final)
    for state in TaskState:
        assert (f"['{state.value}']=true" in lua.FINISH) is state.is_final


def test_final_sets_are_scored_by_finish_time_and_others_by_creation(fake_store: RedisStore,
                                                                     fake_client: Client) -> None:
    [done] = finished_tasks(fake_store, 1, T)
    [bad] = finished_tasks(fake_store, 1, T + 5, TaskState.FAILED, created=T - 100)
    keys = fake_store.keys
    assert fake_store.r.zrange(keys.state_index(TaskState.COMPLETED), 0, -1, withscores=True) == [
        (done, T)]
    assert fake_store.r.zrange(keys.state_index(TaskState.FAILED), 0, -1, withscores=True) == [
        (bad, T + 5)]
    assert fake_store.r.zscore(keys.index, bad) == T - 100
    fake_store.clock = lambda: T + 10
    fake_client.retry(bad)  # back to queued: scored by creation again
    assert fake_store.r.zrange(keys.state_index(TaskState.QUEUED), 0, -1, withscores=True) == [
        (bad, T - 100)]
    assert fake_store.r.zcard(keys.state_index(TaskState.FAILED)) == 0
    consistent(fake_store)


def test_expiry_removes_hashes_index_entries_and_counts(fake_store: RedisStore) -> None:
    old = finished_tasks(fake_store, 30, T - 2 * DAY)
    old_failed = finished_tasks(fake_store, 20, T - 2 * DAY, TaskState.FAILED)
    young = finished_tasks(fake_store, 7, T - 100)
    queued = unfinished_tasks(fake_store, 3, T - 50)
    before = consistent(fake_store)
    assert before[TaskState.COMPLETED] == 37 and before[TaskState.FAILED] == 20

    removed = Retention(fake_store, batch=8).expire(DAY, now=T)

    assert removed == 50
    assert task_keys(fake_store, old + old_failed) == 0
    assert task_keys(fake_store, young + queued) == 10
    counts = consistent(fake_store)
    assert counts == {**dict.fromkeys(TaskState, 0),
        TaskState.QUEUED: 3, TaskState.IN_PROGRESS: 0, TaskState.COMPLETED: 7,
                      TaskState.FAILED: 0}
    assert {t.id for t in fake_store.list(limit=100)} == set(young + queued)
    assert fake_store.total() == 10
    assert Retention(fake_store).expire(DAY, now=T) == 0  # nothing twice


def test_a_task_that_is_not_final_is_never_expired_or_purged(fake_store: RedisStore) -> None:
    ancient = T - 3650 * DAY
    queued = unfinished_tasks(fake_store, 5, ancient)
    running = unfinished_tasks(fake_store, 5, ancient, started=True)
    # an entry of a running task in a final set (written by hand) must not make it go
    stray = fake_store.keys.state_index(TaskState.COMPLETED)
    fake_store.r.zadd(stray, {running[0]: ancient})
    retention = Retention(fake_store, batch=2)
    assert retention.expire(1.0, now=T) == 0
    assert retention.purge(0.0, now=T) == 0
    assert task_keys(fake_store, queued + running) == 10
    fake_store.r.zrem(stray, running[0])
    counts = consistent(fake_store)
    assert counts[TaskState.QUEUED] == 5 and counts[TaskState.IN_PROGRESS] == 5
    with pytest.raises(ValueError, match="never purged"):
        retention.purge(0.0, [TaskState.QUEUED], now=T)


def test_ttl_zero_keeps_everything(fake_store: RedisStore) -> None:
    ids = finished_tasks(fake_store, 5, T - 3650 * DAY)
    assert Retention(fake_store).expire(0, now=T) == 0
    sweeper = Sweeper(Settings(key_prefix="yadtq:unit", result_ttl=0), fake_store, "w1",
                      threading.Event())
    assert sweeper.run_once(now=T) is None
    assert task_keys(fake_store, ids) == 5


def test_purge_by_age_and_by_state(fake_store: RedisStore) -> None:
    old_done = finished_tasks(fake_store, 6, T - 3 * DAY)
    old_failed = finished_tasks(fake_store, 4, T - 3 * DAY, TaskState.FAILED)
    # created long ago but finished an hour ago: not older than a day
    recent = finished_tasks(fake_store, 3, T - 3600, TaskState.FAILED, created=T - 9 * DAY)
    retention = Retention(fake_store, batch=2)  # skips the kept ones page by page
    assert retention.purge(DAY, [TaskState.FAILED], now=T) == 4
    assert task_keys(fake_store, old_failed) == 0
    assert task_keys(fake_store, old_done + recent) == 9
    consistent(fake_store)
    assert retention.purge(DAY, now=T) == 6
    assert task_keys(fake_store, recent) == 3
    assert retention.purge(0, now=T) == 3
    assert consistent(fake_store) == dict.fromkeys(TaskState, 0)


def test_records_scored_by_creation_time_expire_by_their_finish(fake_store: RedisStore) -> None:
    """Sets written before final sets were scored by finish time hold creation times: a task
    created long ago that finished recently is kept, and does not stop the sweep behind it."""
    recent = finished_tasks(fake_store, 5, T - 3600, created=T - 9 * DAY)
    old = finished_tasks(fake_store, 5, T - 3 * DAY, created=T - 4 * DAY)
    completed = fake_store.keys.state_index(TaskState.COMPLETED)
    for i in recent + old:  # as an older version scored them
        fake_store.r.zadd(completed, {i: float(fake_store.r.hget(fake_store.keys.task(i),
                                                                  "created_at") or 0)})
    retention = Retention(fake_store, batch=2)
    assert retention.expire(DAY, now=T) == 5
    assert task_keys(fake_store, recent) == 5 and task_keys(fake_store, old) == 0
    assert retention.purge(0, now=T) == 5
    assert consistent(fake_store)[TaskState.COMPLETED] == 0


def test_purge_under_another_prefix_touches_nothing_of_this_one(fake_redis: fakeredis.FakeRedis) -> None:
    mine = RedisStore(Settings(key_prefix="yadtq"), fake_redis)
    other = RedisStore(Settings(key_prefix="yadtq:other"), fake_redis)
    ids = finished_tasks(mine, 10, T - 5 * DAY)
    theirs = finished_tasks(other, 4, T - 5 * DAY)
    before = sorted(fake_redis.keys("*"))
    assert Retention(other).purge(0, now=T) == 4
    assert Retention(other).expire(1, now=T) == 0
    assert task_keys(mine, ids) == 10 and task_keys(other, theirs) == 0
    assert consistent(mine)[TaskState.COMPLETED] == 10
    assert [k for k in before if not k.startswith("yadtq:other:")] == sorted(
        k for k in fake_redis.keys("*") if not k.startswith("yadtq:other:"))


def test_a_malformed_record_is_left_alone(fake_store: RedisStore) -> None:
    [bad] = finished_tasks(fake_store, 1, T - 5 * DAY)
    fake_store.r.delete(fake_store.keys.task(bad))
    fake_store.r.set(fake_store.keys.task(bad), "not a hash")
    [gone] = finished_tasks(fake_store, 1, T - 5 * DAY)
    fake_store.r.delete(fake_store.keys.task(gone))  # the hash vanished: its entries are cleaned
    assert Retention(fake_store).expire(DAY, now=T) == 0
    assert fake_store.r.get(fake_store.keys.task(bad)) == "not a hash"
    assert fake_store.r.zscore(fake_store.keys.index, gone) is None
    assert fake_store.counts()[TaskState.COMPLETED] == 1  # the malformed one is still listed


def test_two_sweepers_remove_nothing_twice(fake_store: RedisStore) -> None:
    finished_tasks(fake_store, 50, T - 2 * DAY)
    settings = Settings(key_prefix="yadtq:unit", result_ttl=DAY)
    a = Sweeper(settings, fake_store, "worker-a", threading.Event())
    b = Sweeper(settings, fake_store, "worker-b", threading.Event())
    assert a.run_once(now=T) == 50
    assert b.run_once(now=T) is None  # a leads
    fake_store.r.delete(fake_store.keys.lock("retention"))
    assert b.run_once(now=T) == 0
    assert consistent(fake_store)[TaskState.COMPLETED] == 0


def test_a_sweeper_that_loses_the_lock_stops_between_batches(fake_store: RedisStore) -> None:
    finished_tasks(fake_store, 30, T - 2 * DAY)
    sweeper = Sweeper(Settings(key_prefix="yadtq:unit", result_ttl=DAY), fake_store, "worker-a",
                      threading.Event())
    sweeper.retention.batch = 10
    real = sweeper.retention.remove_batch

    def steal_after(state: TaskState, cutoff: float, skip: int = 0) -> tuple[int, int, int]:
        out = real(state, cutoff, skip)
        fake_store.r.set(fake_store.keys.lock("retention"), "worker-b")
        return out
    sweeper.retention.remove_batch = steal_after  # type: ignore[method-assign]
    assert sweeper.run_once(now=T) == 10
    assert fake_store.counts()[TaskState.COMPLETED] == 20


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", DAY),
    ("1w", 7 * DAY), ("1h30m", 5400.0), ("1.5h", 5400.0), (" 1D ", DAY)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [
    "", " ", "-1d", "1x", "d", "1d-", "nan", "inf", "1e3", "1 d", "1d 2h", "0x10", "1,5h",
    "9" * 400, "99999999999w", "１d", "1d;FLUSHALL"])
def test_bad_durations_are_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_only_final_states_can_be_purged() -> None:
    assert final_state("failed") is TaskState.FAILED
    for bad in ("queued", "in-progress", "FAILED", "done", ""):
        names = ", ".join(s.value for s in FINAL_STATES)
        with pytest.raises(ValueError, match="purge takes one of " + names):
            final_state(bad)


def run_cli(client: Client, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), client=client, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_purge_prints_how_many(fake_client: Client, fake_store: RedisStore) -> None:
    finished_tasks(fake_store, 4, fake_store.clock() - 3 * DAY, TaskState.FAILED)
    finished_tasks(fake_store, 2, fake_store.clock() - 3 * DAY)
    fresh = finished_tasks(fake_store, 1, fake_store.clock() - 60)
    assert run_cli(fake_client, "purge", "--older-than", "1d", "--state", "failed") == (
        0, "purged 4 tasks\n", "")
    assert run_cli(fake_client, "purge", "--older-than", "2d") == (0, "purged 2 tasks\n", "")
    assert task_keys(fake_store, fresh) == 1
    consistent(fake_store)


@pytest.mark.parametrize(("argv", "message"), [
    (["--older-than", "yesterday"], "not a duration: 'yesterday'"),
    (["--older-than=-1d"], "not a duration: '-1d'"),
    (["--older-than", "1d", "--state", "queued"], "queued tasks are not finished"),
    (["--older-than", "1d", "--state", "nope"], "unknown state 'nope'"),
])
def test_cli_purge_refuses_bad_input(fake_client: Client, fake_store: RedisStore,
                                     argv: list[str], message: str) -> None:
    ids = finished_tasks(fake_store, 2, fake_store.clock() - 30 * DAY)
    code, out, err = run_cli(fake_client, "purge", *argv)
    assert (code, out) == (cli.EXIT_INVALID, "")
    assert err.startswith("yadtq: ") and message in err and err.count("\n") == 1
    assert task_keys(fake_store, ids) == 2


def test_cli_purge_needs_an_age(fake_client: Client) -> None:
    assert run_cli(fake_client, "purge")[0] == 2


def test_settings_refuse_a_bad_ttl() -> None:
    assert Settings().result_ttl == 7 * DAY
    assert Settings.from_env({"YADTQ_RESULT_TTL": "0"}).result_ttl == 0
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ValueError, match="result_ttl"):
            Settings.from_env({"YADTQ_RESULT_TTL": bad})
    with pytest.raises(ValueError, match="retention_interval"):
        Settings.from_env({"YADTQ_RETENTION_INTERVAL": "0"})


def test_cancelled_tasks_expire_like_any_final_state(fake_store: RedisStore,
                                                     fake_client: Client) -> None:
    assert TaskState.CANCELLED in FINAL_STATES
    [old, young] = unfinished_tasks(fake_store, 2, T - 3 * DAY)
    fake_store.clock = lambda: T - 2 * DAY
    fake_client.cancel(old)
    fake_store.clock = lambda: T - 60
    fake_client.cancel(young)
    cancelled = fake_store.keys.state_index(TaskState.CANCELLED)
    assert fake_store.r.zscore(cancelled, old) == T - 2 * DAY  # by when it was cancelled
    assert Retention(fake_store).expire(DAY, now=T) == 1
    assert task_keys(fake_store, [old, young]) == 1
    assert consistent(fake_store)[TaskState.CANCELLED] == 1
    assert Retention(fake_store).purge(0, [TaskState.CANCELLED], now=T) == 1
    assert consistent(fake_store)[TaskState.CANCELLED] == 0
