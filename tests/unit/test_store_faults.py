"""The store when Redis refuses or holds something unexpected: errors classified, scripts that never
fail on a malformed record, reads that never raise, values that cannot be encoded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis

from yadtq.errors import ServiceUnavailable, StoreError
from yadtq.models import Beat, Outcome, RepairStats, TaskState, WorkerStatus
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.wire import Envelope

Q, P, C, F = TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED, TaskState.FAILED


def env(name: str = "ADD", args: tuple[Any, ...] = (2, 3)) -> Envelope:
    return Envelope(uuid.uuid4().hex, name, args, time.time())


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def store(server: fakeredis.FakeServer) -> RedisStore:
    """A store over fakeredis configured like the real client (reads never fail on bad bytes)."""
    client = fakeredis.FakeRedis(server=server, decode_responses=True,
                                 encoding_errors="backslashreplace")
    return RedisStore(Settings(key_prefix="yadtq:faults"), client)


# ---------------------------------------------------------------- error classes
TRANSIENT: list[Exception] = [
    redis.ConnectionError("Connection refused"),
    redis.TimeoutError("Timeout reading from socket"),
    OSError("Network is unreachable"),
    redis.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.ResponseError("LOADING Redis is loading the dataset in memory"),
    redis.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
    redis.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
    redis.ResponseError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is no"),
    redis.ReadOnlyError("You can't write against a read only replica.", status_code="READONLY"),
    redis.exceptions.TryAgainError("Multiple keys request", status_code="TRYAGAIN"),
    redis.ResponseError("READONLY You can't write against a read only replica. script: 1f2e"),
    redis.ResponseError("Command # 1 (HSET yadtq:x BUSY) of pipeline caused error: READONLY no"),
]
PERMANENT: list[Exception] = [
    redis.exceptions.OutOfMemoryError("command not allowed when used memory", status_code="OOM"),
    redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
    redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    redis.ResponseError("ERR user_script:12: Script attempted to access nonexistent global"),
    redis.ResponseError("Command # 2 (HSET k READONLY) of pipeline caused error: WRONGTYPE x"),
    redis.ResponseError("NOPERM this user has no permissions to run the 'hset' command"),
]


def _failing(exc: Exception) -> Callable[..., Any]:
    def fail(*_a: Any, **_k: Any) -> Any:
        raise exc
    return fail


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: f"{type(e).__name__}:{str(e)[:20]}")
def test_transient_redis_errors_are_service_unavailable(store: RedisStore, exc: Exception,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.r, "hgetall", _failing(exc))
    with pytest.raises(ServiceUnavailable):
        store.counts()


@pytest.mark.parametrize("exc", PERMANENT, ids=lambda e: str(e)[:20])
def test_permanent_redis_errors_are_store_errors(store: RedisStore, exc: Exception,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.r, "hgetall", _failing(exc))
    with pytest.raises(StoreError) as info:
        store.counts()
    assert str(info.value).startswith("Redis refused: ") and str(exc) in str(info.value)
    assert str(exc.status_code or "") in str(info.value)  # type: ignore[attr-defined]
    assert not isinstance(info.value, ServiceUnavailable)


def test_refused_credentials_stay_service_unavailable_with_their_message(
        store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.r, "hgetall", _failing(redis.AuthenticationError("invalid password")))
    with pytest.raises(ServiceUnavailable, match="Redis refused the credentials: invalid password"):
        store.counts()


def test_oom_from_a_script_is_a_store_error(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    oom = redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
    monkeypatch.setattr(store.r, "evalsha", _failing(oom))
    with pytest.raises(StoreError, match="Redis refused: OOM command not allowed"):
        store.create([env()])


def test_a_key_of_the_wrong_type_is_a_store_error_where_a_hash_is_written(store: RedisStore) -> None:
    store.r.set(store.keys.counts, "not a hash")
    with pytest.raises(StoreError, match="Redis refused: WRONGTYPE"):
        store.create([env()])
    e = env()
    store.r.delete(store.keys.counts)
    store.r.set(store.keys.task(e.id), "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        store.transition(e.id, Q, F, "x")


# ---------------------------------------------------------------- malformed records in the scripts
MALFORMED: dict[str, Callable[[RedisStore, str], None]] = {
    "non-numeric attempt": lambda s, k: s.r.hset(k, "attempt", "two"),
    "fractional attempt": lambda s, k: s.r.hset(k, "attempt", "1.5"),
    "no created_at": lambda s, k: s.r.hdel(k, "created_at"),
    "garbage created_at": lambda s, k: s.r.hset(k, "created_at", "yesterday"),
    "unknown state": lambda s, k: s.r.hset(k, "state", "paused"),
    "no state": lambda s, k: s.r.hdel(k, "state"),
    "garbage history": lambda s, k: s.r.hset(k, "history", "{not a list"),
    "no name": lambda s, k: s.r.hdel(k, "name"),
    "not a hash": lambda s, k: (s.r.delete(k), s.r.rpush(k, "x")),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_start_returns_minus_3_for_a_malformed_record_and_runs_the_others(
        store: RedisStore, kind: str) -> None:
    bad, good = env(), env()
    store.create([bad, good])
    MALFORMED[kind](store, store.keys.task(bad.id))
    before = store.r.dump(store.keys.task(bad.id))
    assert store.start("w1", [bad, good]) == [-3, 1]
    assert store.r.dump(store.keys.task(bad.id)) == before  # untouched
    assert store.get(good.id).state is P  # type: ignore[union-attr]
    assert store.get(bad.id).problem  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", MALFORMED)
def test_finish_and_transition_never_fail_on_a_malformed_record(store: RedisStore, kind: str) -> None:
    bad, good = env(), env()
    store.create([bad, good])
    assert store.start("w1", [bad, good]) == [1, 1]
    MALFORMED[kind](store, store.keys.task(bad.id))
    written = store.finish("w1", [Outcome(bad.id, 1, C, result=5), Outcome(good.id, 1, C, result=5)])
    assert written == [kind == "no name", True]  # FINISH does not need the name
    assert store.get(good.id).state is C  # type: ignore[union-attr]
    if kind != "not a hash":
        assert store.transition(bad.id, P, Q, "requeue", attempt=1) in (0, -1)


def test_transition_on_a_malformed_record_is_0_or_minus_1(store: RedisStore) -> None:
    a, b, c = env(), env(), env()
    store.create([a, b, c])
    store.r.hset(store.keys.task(a.id), "attempt", "x")
    store.r.hdel(store.keys.task(b.id), "created_at")
    store.r.hdel(store.keys.task(c.id), "state")
    assert store.transition(a.id, Q, F, "x") == 0
    assert store.transition(b.id, Q, F, "x") == 0
    assert store.transition(c.id, Q, F, "x") == -1
    assert store.counts()[Q] == 3


def test_start_refuses_a_message_whose_name_or_args_differ_from_the_record(store: RedisStore) -> None:
    genuine, other = env("ADD", (2, 3)), env("ADD", (1,))
    store.create([genuine, other])
    before = store.r.hgetall(store.keys.task(genuine.id))
    forged_args = Envelope(genuine.id, "ADD", (200, 300), genuine.created_at)
    forged_name = Envelope(genuine.id, "MUL", (2, 3), genuine.created_at)
    assert store.start("w1", [forged_args, other, forged_name]) == [-2, 1, -2]
    assert store.r.hgetall(store.keys.task(genuine.id)) == before
    assert store.start("w1", [genuine]) == [1]  # the genuine message still runs
    store.finish("w1", [Outcome(genuine.id, 1, C, result=5)])
    assert store.start("w1", [forged_args]) == [-2]
    assert store.start("w1", [genuine]) == [0]


def test_args_compare_equal_after_a_round_trip_through_the_wire(store: RedisStore) -> None:
    from yadtq.wire import decode

    e = env("ADD", (1.0, -0.0, 1e16, 0.1, "é\u2603 \"q\" \\ /", 10**30, True, None))
    store.create([e])
    assert store.start("w1", [decode(e.encode())]) == [1]


# ---------------------------------------------------------------- tolerant reads
def test_reads_never_raise_on_malformed_records(store: RedisStore) -> None:
    es = [env() for _ in range(8)]
    store.create(es)
    key = [store.keys.task(e.id) for e in es]
    store.r.hset(key[0], "args", "[1, 2")                # bad JSON
    store.r.hset(key[1], "attempt", "many")              # ill-typed
    store.r.hdel(key[2], "created_at")                   # missing
    store.r.hset(key[3], "state", "paused")              # unknown state
    store.r.hset(key[4], "history", '[["queued", "then", null, 0], 7]')
    store.r.hset(key[5], "result", "{oops")
    store.r.delete(key[6])
    store.r.rpush(key[6], "not a hash")                  # wrong type
    store.r.hset(key[7], "args", '{"a": 1}')            # JSON, not an array
    expected = {es[0].id: "args is not valid JSON", es[1].id: "attempt 'many' is not a number",
                es[2].id: "no created_at", es[3].id: "unknown state 'paused'",
                es[4].id: "2 history entries malformed", es[5].id: "result is not valid JSON",
                es[6].id: "not a task record: ", es[7].id: "args is not a JSON array"}
    for task_id, problem in expected.items():
        task = store.get(task_id)
        assert task is not None and task.id == task_id
        assert task.problem is not None and problem in task.problem, (problem, task.problem)
    listed = {t.id: t.problem for t in store.list(limit=20)}
    brief = {t.id: t.problem for t in store.list(limit=20, history=False)}
    viewed = {t.id: t.problem for t in store.view(None, 20, 5, late_after=2).tasks}
    for got in (listed, brief, viewed):
        assert set(got) == {e.id for e in es}
        for task_id, problem in expected.items():
            if task_id == es[4].id and got is not listed:
                continue  # history is not read without it
            assert got[task_id] is not None and problem in got[task_id], (problem, got[task_id])


def test_bytes_that_are_not_utf8_read_as_escapes_with_a_problem(
        store: RedisStore, server: fakeredis.FakeServer) -> None:
    e = env()
    store.create([e])
    raw = fakeredis.FakeRedis(server=server)
    key = store.keys.task(e.id)
    raw.hset(key, "args", b"[1, \"\xff\xfe\"]")
    raw.hset(key, "name", b"AD\xffD")
    raw.hset(key, "error", b"bad \xc3(")
    task = store.get(e.id)
    assert task is not None and task.problem is not None
    assert "args is not valid JSON" in task.problem and "is not a task name" in task.problem
    assert task.name == "AD\\xffD" and task.error == "bad \\xc3("
    assert [t.id for t in store.view(None, 5, 1, late_after=1).tasks] == [e.id]


def test_a_lone_surrogate_is_stored_escaped_never_raised(fake_redis: fakeredis.FakeRedis) -> None:
    store = RedisStore(Settings(key_prefix="yadtq:surrogate"), fake_redis)  # strict encoding
    e = env()
    store.create([e])
    store.start("w\ud800", [e])
    assert store.finish("w\ud800", [Outcome(e.id, 1, F, error="boom \ud800", note="n\udfff")]) == [True]
    task = store.get(e.id)
    assert task is not None and task.problem is None
    assert task.error == "boom \\ud800" and task.history[-1].note == "n\\udfff"
    assert store.transition(e.id, F, Q, "retry \ud800", error="e \udc80") == 1
    store.heartbeat(Beat("w\ud800", "h\ud800", 1, time.time(), "t\ud800", 0, 0, (), "x\ud800"), 5)
    assert store.acquire_lock("l", "o\ud800", 5)


def test_malformed_worker_hashes_are_listed_best_effort(store: RedisStore) -> None:
    now = time.time()
    store.heartbeat(Beat("host-1", "host", 1, now, None, 3, 1, (0, 1)), ttl=30)
    store.r.hset(store.keys.worker("host-1"), mapping={"pid": "x", "done": "lots",
                                                       "last_beat": "nan", "partitions": "a,\u00b2,2"})
    store.r.zadd(store.keys.workers, {"host-2": now, "host-3": now})
    store.r.hset(store.keys.workers_last, "host-2", "{not json")
    store.r.set(store.keys.worker("host-3"), "a string")
    workers = {w.id: w for w in store.workers(late_after=2, now=now)}
    assert set(workers) == {"host-1", "host-2", "host-3"}
    w1 = workers["host-1"]
    assert (w1.status, w1.pid, w1.done, w1.failed, w1.partitions) == (WorkerStatus.ALIVE, 0, 0, 1, (2,))
    assert workers["host-2"].status is WorkerStatus.DEAD and workers["host-2"].host == "host"


# ---------------------------------------------------------------- stalled workers, repairs
def test_a_stalled_heartbeat_shows_the_worker_stalled_with_its_reason(store: RedisStore) -> None:
    now = time.time()
    store.heartbeat(Beat("a-1", "a", 1, now, "t" * 32, 0, 0, (0,), stalled="task over its limit",
                         progress_at=now - 40), ttl=30)
    store.heartbeat(Beat("b-2", "b", 2, now, None, 0, 0, (1,)), ttl=30)
    workers = {w.id: w for w in store.workers(late_after=2)}
    assert (workers["a-1"].status, workers["a-1"].stalled) == (WorkerStatus.STALLED,
                                                                "task over its limit")
    assert (workers["b-2"].status, workers["b-2"].stalled) == (WorkerStatus.ALIVE, None)
    assert float(store.r.hget(store.keys.worker("a-1"), "progress_at")) == pytest.approx(now - 40)
    store.r.delete(store.keys.worker("a-1"))
    dead = {w.id: w for w in store.workers(late_after=2)}["a-1"]
    assert (dead.status, dead.stalled) == (WorkerStatus.DEAD, None)


def test_the_lock_has_one_owner_renews_and_expires(store: RedisStore) -> None:
    assert store.acquire_lock("repair", "w1", ttl=10)
    assert not store.acquire_lock("repair", "w2", ttl=10)
    assert store.acquire_lock("repair", "w1", ttl=20)  # renewed
    assert 10_000 < store.r.pttl(store.keys.lock("repair")) <= 20_000
    store.release_lock("repair", "w2")  # not its lock: nothing happens
    assert not store.acquire_lock("repair", "w2", ttl=10)
    store.release_lock("repair", "w1")
    assert store.acquire_lock("repair", "w2", ttl=0.05)
    time.sleep(0.1)
    assert store.acquire_lock("repair", "w1", ttl=10)
    assert store.keys.lock("repair") == "yadtq:faults:lock:repair"


def test_stale_finds_unfinished_tasks_untouched_since_a_time(store: RedisStore) -> None:
    old = [env() for _ in range(5)]
    store.create(old)
    store.start("w1", old[:2])
    store.r.hset(store.keys.task(old[4].id), "attempt", "x")  # malformed: left out
    cut = time.time() + 0.001
    time.sleep(0.01)
    new = [env() for _ in range(2)]
    store.create(new)
    store.start("w1", new[:1])
    store.r.hset(store.keys.task(old[3].id), "updated_at", repr(time.time() + 1))  # touched later
    assert [t.id for t in store.stale(Q, cut)] == [old[2].id]
    assert [t.id for t in store.stale(P, cut)] == [old[0].id, old[1].id]
    assert [t.id for t in store.stale(P, cut, limit=1)] == [old[0].id]
    task = store.stale(Q, cut)[0]
    assert (task.name, task.args, task.attempt) == ("ADD", (2, 3), 0)
    with pytest.raises(ValueError):
        store.stale(C, cut)


def test_stale_reads_page_by_page(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from yadtq import store_upkeep as store_module

    monkeypatch.setattr(store_module, "STALE_PAGE", 3)
    es = [Envelope(uuid.uuid4().hex, "ADD", (i,), 1000.0 + i) for i in range(10)]
    store.create(es)
    assert [t.args for t in store.stale(Q, time.time() + 1, limit=7)] == [(i,) for i in range(7)]


def test_repairs_are_counted_and_in_the_view(store: RedisStore) -> None:
    assert store.repairs() == RepairStats(0, 0, 0, None, None, 0)
    store.record_repairs("w1", 3, 1)
    store.record_repairs("w2", 0, 2)
    stats = store.repairs()
    assert (stats.runs, stats.resent_queued, stats.requeued_in_progress) == (2, 3, 3)
    assert (stats.last_leader, stats.last_repaired) == ("w2", 2)
    assert stats.last_run_at is not None and abs(stats.last_run_at - time.time()) < 5
    assert store.view(None, 5, 5, late_after=2).repairs == stats
    store.r.hset(store.keys.repairs, mapping={"runs": "x", "last_run_at": "soon"})
    assert (store.repairs().runs, store.repairs().last_run_at) == (0, None)


def test_workers_is_one_round_trip_through_the_view_script(store: RedisStore) -> None:
    store.heartbeat(Beat("a-1", "a", 1, time.time(), None, 0, 0), ttl=30)
    store.workers(late_after=2)  # loads the script
    calls: list[Any] = []
    real = store.r.execute_command

    def counting(*a: Any, **k: Any) -> Any:
        calls.append(a[0])
        return real(*a, **k)

    store.r.execute_command = counting  # type: ignore[method-assign]
    assert [w.id for w in store.workers(late_after=2)] == ["a-1"]
    assert calls == ["EVALSHA"]
