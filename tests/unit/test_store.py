"""The Redis store over fakeredis: the real Lua scripts, run in memory."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yadtq.errors import ServiceUnavailable
from yadtq.models import STATES, Beat, Outcome, TaskState, WorkerStatus
from yadtq.settings import Settings
from yadtq.store import DEAD_WORKER_KEEP_SECONDS, RedisStore
from yadtq.wire import Envelope

Q, P, C, F = TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED, TaskState.FAILED


def env(created: float | None = None, args: tuple[Any, ...] = (2, 3)) -> Envelope:
    return Envelope(uuid.uuid4().hex, "ADD", args, time.time() if created is None else created)


def states(store: RedisStore, task_id: str) -> list[tuple[str, str | None, int, str | None]]:
    task = store.get(task_id)
    assert task is not None
    return [(h.state.value, h.worker, h.attempt, h.note) for h in task.history]


def check_counters(store: RedisStore, expected: dict[TaskState, int] | None = None) -> None:
    """Counters, per-state sets and the task hashes all agree (and with ``expected``)."""
    real = {s: 0 for s in STATES}
    members: dict[TaskState, set[str]] = {s: set() for s in STATES}
    for key in store.r.scan_iter(match=store.keys.task_pattern):
        state = TaskState(store.r.hget(key, "state"))
        real[state] += 1
        members[state].add(store.r.hget(key, "id"))
    for s in STATES:  # every id is in the set of its own state and in no other
        assert set(store.r.zrange(store.keys.state_index(s), 0, -1)) == members[s]
    raw = {s: int(store.r.hget(store.keys.counts, s.value) or 0) for s in STATES}
    assert raw == real
    assert store.counts() == real
    assert {s: store.total(s) for s in STATES} == real
    assert store.total() == sum(real.values())
    if expected is not None:
        assert real == {s: expected.get(s, 0) for s in STATES}


# ---------------------------------------------------------------- create / start / finish
def test_create_records_a_queued_task(fake_store: RedisStore) -> None:
    e = env(created=1000.5, args=(2, "x y", None))
    assert fake_store.create([e]) == [True]
    task = fake_store.get(e.id)
    assert task is not None
    assert (task.id, task.name, task.args, task.state, task.attempt) == (e.id, "ADD", (2, "x y", None), Q, 0)
    assert (task.created_at, task.result, task.error, task.worker) == (1000.5, None, None, None)
    assert [(h.state, h.at, h.worker, h.attempt) for h in task.history] == [(Q, 1000.5, None, 0)]
    assert fake_store.create([e]) == [False]
    check_counters(fake_store, {Q: 1})
    assert fake_store.create([]) == [] and fake_store.get(uuid.uuid4().hex) is None


def test_start_marks_in_progress_and_moves_counters(fake_store: RedisStore) -> None:
    a, b = env(), env()
    fake_store.create([a, b])
    assert fake_store.start("w1", [a]) == [1]
    task = fake_store.get(a.id)
    assert task is not None and (task.state, task.worker, task.attempt) == (P, "w1", 1)
    assert states(fake_store, a.id) == [("queued", None, 0, None), ("in-progress", "w1", 1, None)]
    assert [t.id for t in fake_store.list(P)] == [a.id]
    assert [t.id for t in fake_store.list(Q)] == [b.id]
    check_counters(fake_store, {Q: 1, P: 1})


def test_start_on_a_final_task_returns_0_and_changes_nothing(fake_store: RedisStore) -> None:
    e = env()
    fake_store.create([e])
    fake_store.start("w1", [e])
    assert fake_store.finish("w1", [Outcome(e.id, 1, C, result=5)]) == [True]
    before = fake_store.get(e.id)
    assert fake_store.start("w2", [e]) == [0]
    assert fake_store.get(e.id) == before
    check_counters(fake_store, {C: 1})


def test_start_on_in_progress_takes_over_with_the_next_attempt(fake_store: RedisStore) -> None:
    e = env()
    fake_store.create([e])
    assert fake_store.start("w1", [e]) == [1]
    assert fake_store.start("w2", [e]) == [2]
    assert states(fake_store, e.id)[-1] == ("in-progress", "w2", 2, "took over from an earlier attempt")
    check_counters(fake_store, {P: 1})


def _age_start(store: RedisStore, task_id: str, seconds: float) -> None:
    """Make the task's start ``seconds`` old on Redis's clock (the one START measures ages on)."""
    secs, micros = store.r.time()
    store.r.hset(store.keys.task(task_id), "started_at", repr(secs + micros / 1e6 - seconds))


def test_start_leaves_an_in_progress_task_to_a_caller_that_runs_it_alone(
        fake_store: RedisStore) -> None:
    """A task still in-progress from a start at least 2 s old (never finished: it may have killed
    its worker) is not started beside others (-6, nothing changed, no start charged); alone it is
    taken over. A younger start (a hand-over) is taken over at once. Queued tasks are started."""
    a, b, c = env(), env(), env()
    fake_store.create([a, b, c])
    assert fake_store.start("w1", [a]) == [1]
    _age_start(fake_store, a.id, 1.5)
    assert fake_store.start("w2", [a], [False]) == [2]  # a young start: a hand-over, taken over
    _age_start(fake_store, a.id, 3.6)
    before = fake_store.get(a.id)
    assert fake_store.start("w2", [b, a, c], [False, False, False]) == [1, -6, 1]
    assert fake_store.get(a.id) == before
    check_counters(fake_store, {P: 3})
    assert fake_store.start("w3", [a], [True]) == [3]
    assert states(fake_store, a.id)[-1] == ("in-progress", "w3", 3, "took over from an earlier attempt")


def test_a_start_s_age_is_measured_on_redis_s_clock_not_the_workers(fake_store: RedisStore) -> None:
    """Hosts' clocks differ. A start made a moment ago by a worker whose clock is 10 s behind is
    young to a worker whose clock is 10 s ahead (a hand-over, taken over at once: before, that
    worker saw a 20 s old start, and made every task handed over in a rebalance wait its turn to
    run alone); and a start 3 s old on Redis's clock is old whatever the two workers' clocks say."""
    a, b = env(), env()
    fake_store.create([a, b])
    real = time.time
    fake_store.clock = lambda: real() - 10  # type: ignore[method-assign]
    assert fake_store.start("behind", [a, b]) == [1, 1]
    fake_store.clock = lambda: real() + 10  # type: ignore[method-assign]
    assert fake_store.start("ahead", [a], [False]) == [2]
    _age_start(fake_store, b.id, 3.0)
    fake_store.clock = lambda: real() - 10  # type: ignore[method-assign]
    assert fake_store.start("behind", [b], [False]) == [-6]


def _alive(store: RedisStore, worker: str, started: float = 1000.0) -> None:
    """A heartbeat of ``worker`` (the process that started at ``started``)."""
    store.heartbeat(Beat(worker, "host", 1, started, None, 0, 0), ttl=60)


def test_a_start_by_a_live_worker_is_handed_over_not_charged_as_a_death(fake_store: RedisStore) -> None:
    """A long task whose partition moves between live workers (rebalances: scaling, a worker
    joining) is taken over at once each time, however old its start, and no death is charged.
    Before, every such start older than 2 s was a suspect, and each hand-over counted as a start
    that never finished: a task handed over 3 times was failed as one that kills its worker
    (``make chaos``: a 2 s NAP, started 4 times by workers that lived, ended failed)."""
    a = env()
    fake_store.create([a])
    for n, w in enumerate(["w1", "w2", "w3", "w4", "w5"], start=1):
        _alive(fake_store, w)
        assert fake_store.start_ex(w, [a], [False]) == [(n, 0)]
        _age_start(fake_store, a.id, 10)
    assert states(fake_store, a.id)[-1] == ("in-progress", "w5", 5, "took over from an earlier attempt")


def test_a_start_by_a_worker_that_is_gone_is_a_suspect_and_a_death(fake_store: RedisStore) -> None:
    """The worker that started it has no heartbeat any more (it died), or has one of another
    process (restarted under the same id: a container's host-pid repeats): its start (older than
    ``SUSPECT_AGE``) is a suspect's (-6 unless alone), and taking it over counts a death. So does
    taking over a younger one, at once."""
    a, b = env(), env()
    fake_store.create([a, b])
    _alive(fake_store, "w1")
    assert fake_store.start_ex("w1", [a, b]) == [(1, 0), (1, 0)]
    _age_start(fake_store, a.id, 10)
    _age_start(fake_store, b.id, 10)
    fake_store.r.delete(fake_store.keys.worker("w1"))  # w1 died: its heartbeat expired
    _alive(fake_store, "w2")
    assert fake_store.start_ex("w2", [a], [False]) == [(-6, 0)]
    assert fake_store.start_ex("w2", [a], [True]) == [(2, 1)]
    _alive(fake_store, "w1", started=2000.0)  # w1 again, a new process with the same id
    assert fake_store.start_ex("w2", [b], [False]) == [(-6, 0)]
    assert fake_store.start_ex("w2", [b], [True]) == [(2, 1)]
    fake_store.r.delete(fake_store.keys.worker("w2"))
    assert fake_store.start_ex("w3", [b], [True]) == [(3, 2)]  # deaths add up
    assert fake_store.start("w3", [b]) == [4]  # start: the attempts alone, as before
    c = env()
    fake_store.create([c])
    assert fake_store.start_ex("w3", [c]) == [(1, 0)]
    assert fake_store.start_ex("w4", [c], [False]) == [(2, 1)]  # young, w3 gone: at once


def test_a_zombie_attempt_is_fenced(fake_store: RedisStore) -> None:
    e = env()
    fake_store.create([e])
    fake_store.start("zombie", [e])
    fake_store.start("w2", [e])
    assert fake_store.finish("zombie", [Outcome(e.id, 1, C, result=99)]) == [False]
    task = fake_store.get(e.id)
    assert task is not None and (task.state, task.result, task.worker, task.attempt) == (P, None, "w2", 2)
    assert fake_store.finish("w2", [Outcome(e.id, 2, C, result=5)]) == [True]
    assert fake_store.finish("zombie", [Outcome(e.id, 1, F, error="late")]) == [False]
    task = fake_store.get(e.id)
    assert task is not None and (task.state, task.result, task.error) == (C, 5, None)
    assert [h[0] for h in states(fake_store, e.id)] == ["queued", "in-progress", "in-progress",
                                                        "completed"]
    check_counters(fake_store, {C: 1})


def test_retry_then_start_again_runs_attempt_2(fake_store: RedisStore) -> None:
    e = env()
    fake_store.create([e])
    fake_store.start("w1", [e])
    assert fake_store.finish("w1", [Outcome(e.id, 1, Q, error="boom", note="retry in 1 s")]) == [True]
    task = fake_store.get(e.id)
    assert task is not None and (task.state, task.error) == (Q, "boom")
    check_counters(fake_store, {Q: 1})
    assert fake_store.start("w1", [e]) == [2]
    assert fake_store.finish("w1", [Outcome(e.id, 2, C, result=0)]) == [True]
    task = fake_store.get(e.id)
    assert task is not None and (task.state, task.result, task.error, task.attempt) == (C, 0, None, 2)
    assert states(fake_store, e.id) == [
        ("queued", None, 0, None), ("in-progress", "w1", 1, None), ("queued", "w1", 1, "retry in 1 s"),
        ("in-progress", "w1", 2, None), ("completed", "w1", 2, None)]
    check_counters(fake_store, {C: 1})


@pytest.mark.parametrize("result", [0, "", False, None, [1, "a"], {"k": None}, 10**99, "\x1b[2J"])
def test_results_come_back_exactly(fake_store: RedisStore, result: Any) -> None:
    e = env()
    fake_store.create([e])
    fake_store.start("w", [e])
    fake_store.finish("w", [Outcome(e.id, 1, C, result=result)])
    task = fake_store.get(e.id)
    assert task is not None and task.result == result and type(task.result) is type(result)


def test_finish_of_an_unknown_task_is_fenced(fake_store: RedisStore) -> None:
    assert fake_store.finish("w", [Outcome(uuid.uuid4().hex, 1, C, result=1)]) == [False]
    assert fake_store.finish("w", []) == []
    check_counters(fake_store, {})


def test_finished_per_second_counts_final_states_only(fake_store: RedisStore) -> None:
    es = [env() for _ in range(4)]
    fake_store.create(es)
    fake_store.start("w", es)
    now = time.time()
    fake_store.finish("w", [Outcome(es[0].id, 1, C, result=1), Outcome(es[1].id, 1, F, error="x"),
                            Outcome(es[2].id, 1, Q, error="retry")])
    rates = fake_store.finished_per_second(10, now=now + 1)
    assert len(rates) == 10 and sum(rates) == 2 and rates[-1] == 2
    assert fake_store.finished_per_second(5, now=now + 100) == [0] * 5


# ---------------------------------------------------------------- transition
def test_transition_is_a_compare_and_set(fake_store: RedisStore) -> None:
    e = env()
    fake_store.create([e])
    fake_store.start("w", [e])
    fake_store.finish("w", [Outcome(e.id, 1, F, error="bad")])
    assert fake_store.transition(e.id, Q, F, "x") == 0
    assert fake_store.transition(e.id, F, Q, "retry requested", attempt=7) == 0
    assert fake_store.transition(e.id, F, Q, "retry requested", attempt=1) == 1
    assert fake_store.transition(e.id, F, Q, "retry requested") == 0
    task = fake_store.get(e.id)
    assert task is not None and (task.state, task.error, task.result) == (Q, None, None)
    assert states(fake_store, e.id)[-1] == ("queued", None, 1, "retry requested")
    assert fake_store.transition(uuid.uuid4().hex, Q, F, "x") == -1
    assert fake_store.transition(e.id, Q, F, "not enqueued", error="not enqueued: down") == 1
    task = fake_store.get(e.id)
    assert task is not None and (task.state, task.error) == (F, "not enqueued: down")
    check_counters(fake_store, {F: 1})


# ---------------------------------------------------------------- listing
def test_list_is_newest_first_with_filter_and_paging(fake_store: RedisStore) -> None:
    es = [env(created=1000.0 + i) for i in range(6)]
    fake_store.create(es)
    fake_store.start("w", es[:2])
    newest_first = [e.id for e in reversed(es)]
    assert [t.id for t in fake_store.list()] == newest_first
    assert [t.id for t in fake_store.list(limit=2, offset=1)] == newest_first[1:3]
    assert [t.id for t in fake_store.list(Q)] == newest_first[:4]
    assert [t.id for t in fake_store.list(P)] == [es[1].id, es[0].id]
    assert [t.id for t in fake_store.list(Q, limit=3, offset=2)] == newest_first[2:4]
    assert fake_store.list(C) == [] and fake_store.list(offset=50) == []


def test_list_without_history_has_every_other_field(fake_store: RedisStore) -> None:
    e1, e2 = env(created=1000.0, args=(1, "a")), env(created=1001.0)
    fake_store.create([e1, e2])
    fake_store.start("w1", [e1])
    fake_store.finish("w1", [Outcome(e1.id, 1, C, result={"x": [1, 2]})])
    full, brief = fake_store.list(), fake_store.list(history=False)
    assert [t.history for t in brief] == [(), ()] and all(t.history for t in full)
    assert [dataclasses.replace(t, history=()) for t in full] == brief
    assert fake_store.list(C, history=False)[0].result == {"x": [1, 2]}


def test_view_is_the_separate_reads_in_one_round_trip(fake_store: RedisStore) -> None:
    now = time.time()
    envs = [env(created=now - 10 + i) for i in range(5)]
    fake_store.create(envs)
    fake_store.start("w1", envs[:3])
    fake_store.finish("w1", [Outcome(envs[0].id, 1, C, result=5), Outcome(envs[1].id, 1, F, error="x")])
    fake_store.heartbeat(beat("host-a-1"), ttl=30)
    fake_store.heartbeat(beat("host-b-2"), ttl=30)
    fake_store.r.delete(fake_store.keys.worker("host-b-2"))  # dead: shown from its last beat
    fake_store.r.zadd(fake_store.keys.workers, {"ancient-3": now - DEAD_WORKER_KEEP_SECONDS - 5})
    round_trips = 0
    real_execute = fake_store.r.execute_command

    def counting(*a: Any, **k: Any) -> Any:
        nonlocal round_trips
        round_trips += 1
        return real_execute(*a, **k)

    for state in (None, C, P):
        view = fake_store.view(state, 3, 10, late_after=2.0, now=now)
        assert view.tasks == fake_store.list(state, 3, history=False)
        assert view.counts == fake_store.counts()
        assert view.throughput == fake_store.finished_per_second(10, now=now)
    assert [(w.id, w.status) for w in view.workers] == [
        (w.id, w.status) for w in fake_store.workers(late_after=2.0, now=now)]
    assert {w.id: w.status for w in view.workers} == {"host-a-1": WorkerStatus.ALIVE,
                                                      "host-b-2": WorkerStatus.DEAD}
    assert fake_store.r.zscore(fake_store.keys.workers, "ancient-3") is None  # pruned by view
    round_trips = 0
    fake_store.r.execute_command = counting  # type: ignore[method-assign]
    fake_store.view(None, 3, 10, late_after=2.0, now=now)
    assert round_trips == 1
    assert fake_store.view(None, 0, 10, late_after=2.0, now=now).tasks == []


def test_list_with_limit_0_returns_nothing(fake_store: RedisStore) -> None:
    fake_store.create([env() for _ in range(3)])
    assert fake_store.list(limit=0) == []


# ---------------------------------------------------------------- counters never drift
def _random_walk(store: RedisStore, rng: random.Random, steps: int) -> None:
    envs: list[Envelope] = []
    for _ in range(steps):
        op = rng.choice(["create", "start", "finish", "finish", "transition", "dup"])
        if op == "create" or not envs:
            envs.append(env(created=1000.0 + len(envs)))
            store.create([envs[-1]])
            continue
        # with replacement: the same task twice in one batch (a duplicate delivery in one poll)
        picked = rng.choices(envs, k=rng.randint(1, 4))
        if op == "dup":
            store.create(picked)
        elif op == "start":
            store.start(rng.choice(["w1", "w2"]), picked)
        elif op == "finish":
            outcomes = []
            for e in picked:
                task = store.get(e.id)
                attempt = (task.attempt if task else 0) - rng.choice([0, 0, 1])
                outcomes.append(Outcome(e.id, attempt, rng.choice([Q, C, F]), result=1, error="e"))
            store.finish("w1", outcomes)
        else:
            store.transition(picked[0].id, rng.choice(STATES), rng.choice(STATES), "walk")
        check_counters(store)


@pytest.mark.parametrize("seed", range(4))
def test_counters_match_the_tasks_after_a_random_walk(fake_store: RedisStore, seed: int) -> None:
    _random_walk(fake_store, random.Random(seed), 120)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_counters_never_drift(seed: int, steps: int) -> None:
    store = RedisStore(Settings(key_prefix="yadtq:walk"), fakeredis.FakeRedis(decode_responses=True))
    _random_walk(store, random.Random(seed), steps)
    store.reset()
    check_counters(store, {})


# ---------------------------------------------------------------- reset
def test_reset_deletes_only_this_prefix(fake_store: RedisStore, fake_redis: fakeredis.FakeRedis) -> None:
    foreign = {"other:key": "v", "yadtq:other-prefix:task:x": "v", "yadtq:unit-2:task:y": "v",
               "yadtq:task:" + "f" * 32: "v", "yadtq:unit:task": "v"}
    for key, value in foreign.items():
        fake_redis.set(key, value)
    es = [env() for _ in range(3)]
    fake_store.create(es)
    fake_store.start("w", es[:1])
    fake_store.finish("w", [Outcome(es[0].id, 1, C, result=1)])
    fake_store.heartbeat(Beat("w", "h", 1, time.time(), None, 1, 0), ttl=10)
    fake_store.publish_specs([{"name": "ADD", "params": []}])
    assert fake_store.reset() == 3
    assert fake_store.list() == [] and fake_store.get(es[0].id) is None
    check_counters(fake_store, {})
    assert sum(fake_store.finished_per_second(5, now=time.time() + 1)) == 0
    for key, value in foreign.items():
        assert fake_redis.get(key) == value
    assert [w.id for w in fake_store.workers(late_after=5)] == ["w"]
    assert fake_store.published_specs() == [{"name": "ADD", "params": []}]
    default = RedisStore(Settings(), fake_redis)  # prefix "yadtq": must not touch "yadtq:unit:..."
    fake_store.create([env()])
    assert default.reset() == 1  # only yadtq:task:fff...f
    assert fake_store.total() == 1 and fake_redis.get("yadtq:other-prefix:task:x") == "v"


def test_reset_with_a_glob_character_in_the_prefix(fake_redis: fakeredis.FakeRedis) -> None:
    fake_redis.hset("yadtq:t1:task:abc", "state", "queued")
    try:
        RedisStore(Settings(key_prefix="yadtq:t?"), fake_redis).reset()
    except ValueError:
        return  # refusing such a prefix is a fix too
    assert fake_redis.exists("yadtq:t1:task:abc")


def test_messages_sent_before_a_reset_are_discarded(fake_store: RedisStore) -> None:
    old = env(created=time.time() - 5)
    fake_store.create([old])
    fake_store.reset()
    assert fake_store.start("w", [old]) == [-1]
    assert fake_store.get(old.id) is None
    check_counters(fake_store, {})
    new = env(created=time.time() + 1)  # reached Kafka, but its record is missing
    assert fake_store.start("w", [new]) == [1]
    assert states(fake_store, new.id)[0] == ("queued", None, 0, "record recreated by worker")
    check_counters(fake_store, {P: 1})


# ---------------------------------------------------------------- workers
def beat(worker_id: str = "host-a-42", task: str | None = None) -> Beat:
    return Beat(worker_id, "host-a", 42, time.time() - 30, task, 7, 2)


def test_heartbeat_alive_late_dead_pruned(fake_store: RedisStore, fake_redis: fakeredis.FakeRedis) -> None:
    fake_store.heartbeat(beat(task="t1"), ttl=30)
    (w,) = fake_store.workers(late_after=2)
    assert (w.id, w.host, w.pid, w.status, w.current_task, w.done, w.failed) == \
        ("host-a-42", "host-a", 42, WorkerStatus.ALIVE, "t1", 7, 2)
    assert 29 < w.uptime() < 32
    # 5 s since the beat by its key's TTL (Redis's clock): late, whatever the clocks say
    fake_redis.pexpire(fake_store.keys.worker("host-a-42"), 25_000)
    (w,) = fake_store.workers(late_after=2)
    assert w.status is WorkerStatus.LATE and 4.9 < w.since_beat() < 5.2
    fake_redis.delete(fake_store.keys.worker("host-a-42"))
    (w,) = fake_store.workers(late_after=2)
    assert (w.status, w.host, w.pid) == (WorkerStatus.DEAD, "host-a", 42)
    assert fake_store.workers(late_after=2, now=time.time() + DEAD_WORKER_KEEP_SECONDS + 1) == []
    assert fake_store.workers(late_after=2) == []  # pruned for good


@pytest.mark.parametrize("skew", [-3600.0, -10.0, 10.0, 3600.0])
def test_a_worker_whose_clock_is_off_is_alive_while_it_beats(
        fake_settings: Settings, fake_redis: fakeredis.FakeRedis, skew: float) -> None:
    """The worker's clock (its ``last_beat``) is ``skew`` seconds off the viewer's: it beat just
    now, so it is alive, beat 0 s ago, and its uptime is what its own clock says."""
    worker_store = RedisStore(fake_settings, fake_redis)
    worker_store.clock = lambda: time.time() + skew  # type: ignore[method-assign]
    worker_store.heartbeat(Beat("w-1", "h", 1, time.time() + skew - 30, None, 0, 0), ttl=30)
    viewer = RedisStore(fake_settings, fake_redis)
    for now in (None, time.time() + skew):  # the viewer's clock, or one that agrees with the worker
        (w,) = viewer.workers(late_after=2, now=now)
        assert (w.status, w.since_beat()) == (WorkerStatus.ALIVE, pytest.approx(0, abs=0.5))
        assert 29 < w.uptime() < 32
    fake_redis.delete(worker_store.keys.worker("w-1"))  # it dies
    (w,) = viewer.workers(late_after=2)  # shown dead (not forgotten), its beat just now
    assert (w.status, w.since_beat()) == (WorkerStatus.DEAD, pytest.approx(0, abs=0.5))
    assert 29 < w.uptime() < 31


def test_an_old_worker_s_beat_without_a_ttl_field_ages_by_the_viewer_s_clock(
        fake_store: RedisStore, fake_redis: fakeredis.FakeRedis) -> None:
    fake_store.heartbeat(beat("w-1"), ttl=30)
    fake_redis.hdel(fake_store.keys.worker("w-1"), "ttl_ms")  # as a worker before ttl_ms wrote it
    assert fake_store.workers(late_after=2)[0].status is WorkerStatus.ALIVE
    (w,) = fake_store.workers(late_after=2, now=time.time() + 5)
    assert w.status is WorkerStatus.LATE and w.beat_age == pytest.approx(5, abs=0.5)
    fake_redis.hset(fake_store.keys.worker("w-1"), "ttl_ms", "garbage")
    assert fake_store.workers(late_after=2, now=time.time() + 5)[0].status is WorkerStatus.LATE


def test_heartbeat_key_expires(fake_store: RedisStore) -> None:
    fake_store.heartbeat(beat("w-1"), ttl=0.05)
    assert fake_store.workers(late_after=5)[0].status is WorkerStatus.ALIVE
    time.sleep(0.12)
    (w,) = fake_store.workers(late_after=5)
    assert (w.status, w.current_task, w.pid) == (WorkerStatus.DEAD, None, 42)


def test_remove_worker_forgets_it_at_once(fake_store: RedisStore) -> None:
    fake_store.heartbeat(beat("a-1"), ttl=30)
    fake_store.heartbeat(beat("b-2"), ttl=30)
    fake_store.remove_worker("a-1")
    assert [w.id for w in fake_store.workers(late_after=2)] == ["b-2"]


def test_published_specs_skip_garbage(fake_store: RedisStore, fake_redis: fakeredis.FakeRedis) -> None:
    fake_store.publish_specs([{"name": "X", "params": [["a", "int"]]}])
    fake_store.publish_specs([])
    fake_redis.hset(fake_store.keys.registry, mapping={"bad": "not json", "s": '"str"', "n": "{}"})
    assert fake_store.published_specs() == [{"name": "X", "params": [["a", "int"]]}]


def test_redis_errors_become_service_unavailable_without_the_password() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    store = RedisStore(Settings(redis_url="redis://:hunter2@h:1/0"),
                       fakeredis.FakeRedis(server=server, decode_responses=True))
    for call in (store.ping, store.counts, lambda: store.create([env()]), store.reset,
                 lambda: store.workers(late_after=1)):
        with pytest.raises(ServiceUnavailable) as info:
            call()
        assert "Redis unreachable at redis://:***@h:1/0" in str(info.value)
        assert "hunter2" not in str(info.value)


# ---------------------------------------------------------------- dead workers keep their last heartbeat
def test_dead_worker_keeps_its_last_heartbeat(fake_store: RedisStore) -> None:
    fake_store.heartbeat(Beat("host-1", "host", 1, time.time() - 60, "ab" * 16, 41, 2, (0, 1)),
                         ttl=5)
    fake_store.r.delete(fake_store.keys.worker("host-1"))  # the TTL ran out
    (dead,) = fake_store.workers(late_after=2)
    assert dead.status is WorkerStatus.DEAD
    assert (dead.done, dead.failed, dead.current_task) == (41, 2, "ab" * 16)
    assert dead.partitions == () and dead.uptime() >= 59


def test_clean_exit_forgets_the_worker(fake_store: RedisStore) -> None:
    fake_store.heartbeat(Beat("host-2", "host", 2, time.time(), None, 1, 0), ttl=5)
    fake_store.remove_worker("host-2")
    assert fake_store.workers(late_after=2) == []
    assert fake_store.r.hget(fake_store.keys.workers_last, "host-2") is None
