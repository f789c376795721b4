"""Several tasks in flight in one worker (``concurrency`` > 1), over fakeredis (real Lua) and the
in-memory Kafka: out-of-order completion, commits only up to the lowest unfinished offset, time
limits, cancels and the stuck-task escalation per task."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tests.polling import eventually
from tests.unit.test_worker import Harness
from tests.unit.test_worker_healing import run_in_thread
from worker.inflight import InFlight
from worker.worker import EXIT_RESTART
from yadtq.broker_types import Record
from yadtq.client import Client
from yadtq.models import TaskState
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import decode

C, F, Q, P, X = (TaskState.COMPLETED, TaskState.FAILED, TaskState.QUEUED, TaskState.IN_PROGRESS,
                 TaskState.CANCELLED)


def harness(fake_store: RedisStore, concurrency: int, partitions: int = 1, **kw: Any) -> Harness:
    settings = Settings(key_prefix="yadtq:unit", heartbeat_interval=0.2, commit_after=0.0,
                        concurrency=concurrency, **kw)
    h = Harness(settings, RedisStore(settings, fake_store.r), FakeBroker(partitions=partitions))
    gates: dict[str, threading.Event] = {}
    h.gates = gates  # type: ignore[attr-defined]
    running = {"now": 0, "most": 0}
    h.running = running  # type: ignore[attr-defined]
    lock = threading.Lock()

    @h.reg.task("GATE", max_attempts=1, time_limit=60)
    def gate(key: str) -> str:
        """Runs until its gate opens (short waits: an interrupt lands)."""
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        try:
            event = gates.setdefault(key, threading.Event())
            while not event.wait(0.01):
                pass
            return key
        finally:
            with lock:
                running["now"] -= 1

    @h.reg.task("SPIN_LIMITED", max_attempts=1, time_limit=0.3)
    def spin() -> None:
        while True:
            time.sleep(0.01)

    @h.reg.task("WEDGED", max_attempts=1, time_limit=0.2)
    def wedged() -> None:
        while True:
            try:
                time.sleep(0.01)
            except BaseException:
                pass

    h.client = Client(settings, store=h.store, producer_factory=h.broker.producer,
                      kafka_ping=h.broker.ping, registry=h.reg)
    return h


def open_gate(h: Harness, key: str) -> None:
    h.gates.setdefault(key, threading.Event()).set()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the offsets in flight
def test_committable_is_the_lowest_unfinished_offset() -> None:
    flight = InFlight()
    items = flight.add([Record(0, o, b"", "t") for o in range(10, 15)] + [Record(1, 7, b"", "t")])
    tracks = {rec.offset: track for track, rec in items}
    assert flight.committable() == {}  # nothing finished: nothing new to commit
    for offset in (11, 13, 14):
        flight.finish(tracks[offset], offset)
    assert flight.committable() == {}  # 10 is not finished: still nothing new
    flight.finish(tracks[10], 10)
    assert flight.committable() == {0: 12}
    flight.finish(tracks[12], 12)
    assert flight.committable() == {0: 15}
    # a redelivery of what this owner already has (in flight or finished) is not tracked again
    assert flight.add([Record(0, 12, b"", "t"), Record(0, 15, b"", "t")])[0][1].offset == 15
    assert flight.committable() == {0: 15}
    gone = flight.revoke({0})
    assert [t.partition for t in gone] == [0] and not gone[0].live
    flight.finish(gone[0], 15)  # a task of a moved partition that ends later changes nothing
    assert flight.committable() == {} and flight.pending() == 1


def test_a_partition_far_behind_its_committed_offset_is_crowded() -> None:
    flight = InFlight()
    items = flight.add([Record(0, o, b"", "t") for o in range(20)])
    for track, rec in items[1:]:
        flight.finish(track, rec.offset)
    assert flight.crowded(limit=20) == {0} and flight.crowded(limit=21) == set()


# ---------------------------------------------------------------- several at once
def test_n_tasks_run_at_once_from_one_partition(fake_store: RedisStore) -> None:
    h = harness(fake_store, concurrency=4)
    ids = [h.submit("GATE", f"g{i}") for i in range(6)]
    w = h.worker()
    t = run_in_thread(w, idle_exit=5)
    try:
        assert eventually(lambda: h.running["now"] == 4, 10)  # type: ignore[attr-defined]
        time.sleep(0.3)
        assert h.running["most"] == 4  # type: ignore[attr-defined]
        assert [h.get(i).state for i in ids].count(P) == 4
    finally:
        for i in range(6):
            open_gate(h, f"g{i}")
    t.join(10)
    assert [h.get(i).state for i in ids] == [C] * 6
    assert h.committed() == {0: 6}


def test_out_of_order_completion_commits_only_below_the_unfinished(fake_store: RedisStore) -> None:
    """One partition: a task that waits, then short ones behind it. They finish first; the
    committed offset stays at the waiting task until it finishes too."""
    h = harness(fake_store, concurrency=3)
    first = h.submit("ADD", 1, 1)
    slow = h.submit("GATE", "slow")
    behind = [h.submit("ADD", i, 1) for i in range(20)]
    w = h.worker()
    t = run_in_thread(w, idle_exit=5)
    try:
        assert eventually(lambda: all(h.get(i).state is C for i in behind), 10)
        assert h.get(slow).state is P and h.get(first).state is C
        time.sleep(0.5)
        assert h.committed() == {0: 1}  # never past the unfinished task
    finally:
        open_gate(h, "slow")
    assert eventually(lambda: h.committed() == {0: 22}, 10)
    t.join(10)
    assert h.get(slow).state is C and w.done == 22


def test_a_stop_commits_below_the_running_tasks_only(fake_store: RedisStore) -> None:
    """A warm stop with a task still waiting: the others finished, the commit stays below it, and
    a second worker runs exactly that one again."""
    h = harness(fake_store, concurrency=2)
    slow = h.submit("GATE", "s")
    behind = [h.submit("ADD", i, 1) for i in range(5)]
    w = h.worker()
    t = run_in_thread(w, idle_exit=10)
    assert eventually(lambda: all(h.get(i).state is C for i in behind), 10)
    w.request_stop()
    time.sleep(0.3)
    open_gate(h, "s")  # the running task finishes during the warm stop
    t.join(10)
    assert h.get(slow).state is C and h.committed() == {0: 6}


def test_a_time_limit_interrupts_only_its_task(fake_store: RedisStore) -> None:
    h = harness(fake_store, concurrency=3)
    spin = h.submit("SPIN_LIMITED")
    gated = h.submit("GATE", "g")
    adds = [h.submit("ADD", i, 1) for i in range(5)]
    w = h.worker()
    t = run_in_thread(w, idle_exit=5)
    try:
        assert eventually(lambda: h.get(spin).state is F, 10)
        assert h.get(gated).state is P  # the other running task was not touched
        assert "time limit of 0.3 s exceeded" in (h.get(spin).error or "")
        assert all(h.get(i).state is C for i in adds)
    finally:
        open_gate(h, "g")
    t.join(10)
    assert h.get(gated).state is C and w.exit_code == 0


def test_a_cancel_interrupts_only_its_task(fake_store: RedisStore) -> None:
    h = harness(fake_store, concurrency=2)
    a, b = h.submit("GATE", "a"), h.submit("GATE", "b")
    w = h.worker()
    t = run_in_thread(w, idle_exit=5)
    try:
        assert eventually(lambda: h.get(a).state is P and h.get(b).state is P, 10)
        assert h.client.cancel(a).running
        assert eventually(lambda: h.get(a).state is X, 10)
        assert h.get(b).state is P
    finally:
        open_gate(h, "b")
    t.join(10)
    assert h.get(b).state is C and h.committed() == {0: 2}


def test_a_wedged_task_is_escalated_after_the_others_finish(fake_store: RedisStore) -> None:
    """A task that swallows its interrupts: failed after the grace period, the other running task
    gets the grace period to finish, the commit passes both, and the worker asks for a restart.
    Nothing queued behind them is started any more (the next worker runs it)."""
    h = harness(fake_store, concurrency=2, stuck_grace=1.0)
    wedged = h.submit("WEDGED")
    gated = h.submit("GATE", "g")
    w = h.worker()
    t = run_in_thread(w, idle_exit=30)
    assert eventually(lambda: h.get(gated).state is P and h.get(wedged).state is P, 10)
    later = [h.submit("ADD", i, 1) for i in range(3)]
    time.sleep(0.8)  # the wedged task is past its limit and in its grace period
    open_gate(h, "g")
    t.join(15)
    assert w.exit_code == EXIT_RESTART
    assert h.get(wedged).state is F and "did not stop within 1 s" in (h.get(wedged).error or "")
    assert h.get(gated).state is C
    committed = h.committed()
    done = sum(h.get(i).state is C for i in later)
    assert committed == {0: 2 + done}  # never past a task that is not final
    h.run("w2")
    assert [h.get(i).state for i in later] == [C] * 3


@pytest.mark.parametrize("concurrency", [1, 4])
def test_many_partitions_many_tasks_exactly_once_outcomes(fake_store: RedisStore,
                                                         concurrency: int) -> None:
    h = harness(fake_store, concurrency=concurrency, partitions=4)
    ids = [h.submit("ADD", i, i) for i in range(300)]
    w = h.run(idle_exit=0.5)
    tasks = [h.get(i) for i in ids]
    assert [t.result for t in tasks] == [2 * i for i in range(300)]
    assert {t.attempt for t in tasks} == {1} and w.done == 300
    assert h.committed() == h.all_offsets()


# ---------------------------------------------------------------- async def tasks
def async_harness(fake_store: RedisStore, concurrency: int = 1, **kw: Any) -> Harness:
    h = harness(fake_store, concurrency=concurrency, **kw)
    gates = h.gates  # type: ignore[attr-defined]
    state = {"now": 0, "most": 0, "threads": set()}
    h.aio = state  # type: ignore[attr-defined]

    @h.reg.task("AGATE", max_attempts=1, time_limit=60)
    async def agate(key: str) -> str:
        """Awaits until its gate opens."""
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        state["threads"].add(threading.get_ident())
        try:
            while not gates.setdefault(key, threading.Event()).is_set():
                await asyncio.sleep(0.01)
            return key
        finally:
            state["now"] -= 1

    @h.reg.task("ANAP", max_attempts=1, time_limit=0.3)
    async def anap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @h.reg.task("ABAD", max_attempts=2)
    async def abad() -> None:
        raise ValueError("async boom")

    @h.reg.task("ADEAF", max_attempts=1, time_limit=0.2)
    async def adeaf() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:  # ignores its cancellation on purpose
                pass

    h.client = Client(h.settings, store=h.store, producer_factory=h.broker.producer,
                      kafka_ping=h.broker.ping, registry=h.reg)
    return h


def test_async_tasks_run_many_at_once_on_one_loop_without_a_thread_each(
        fake_store: RedisStore) -> None:
    """One runner thread, 50 coroutines in flight at once on the worker's one event loop."""
    h = async_harness(fake_store, concurrency=1)
    ids = [h.submit("AGATE", f"a{i}") for i in range(50)]
    fast = [h.submit("ADD", i, 1) for i in range(5)]
    w = h.worker()
    t = run_in_thread(w, idle_exit=5)
    try:
        assert eventually(lambda: h.aio["now"] == 50, 10)  # type: ignore[attr-defined]
        assert eventually(lambda: all(h.get(i).state is C for i in fast), 10)  # not held
        assert len(h.aio["threads"]) == 1  # type: ignore[attr-defined]
        assert h.committed().get(0, 0) == 0
    finally:
        for i in range(50):
            open_gate(h, f"a{i}")
    t.join(10)
    assert [h.get(i).result for i in ids] == [f"a{i}" for i in range(50)]
    assert h.committed() == {0: 55} and w.done == 55


def test_consecutive_async_tasks_share_their_start_and_none_waits_for_its_outcome_write(
        fake_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 async tasks on one partition with one runner thread: a few START round trips (a chunk
    each, not one per task), every coroutine in flight at once, each outcome written by the
    writer's thread (none by a runner thread), every task exactly once, committed to the end."""
    h = async_harness(fake_store, concurrency=1)
    ids = [h.submit("AGATE", f"s{i}") for i in range(100)]
    w = h.worker()
    starts: list[int] = []
    writers: set[str] = set()
    real_start, real_finish = w.store.start_ex, w.store.finish

    def start(worker_id: str, envs: Any, alone: Any = None) -> Any:
        starts.append(len(envs))
        return real_start(worker_id, envs, alone)

    def finish(worker_id: str, outcomes: Any) -> Any:
        writers.add(threading.current_thread().name)
        return real_finish(worker_id, outcomes)

    monkeypatch.setattr(w.store, "start_ex", start)
    monkeypatch.setattr(w.store, "finish", finish)
    t = run_in_thread(w, idle_exit=5)
    try:
        assert eventually(lambda: h.aio["now"] == 100, 10)  # type: ignore[attr-defined]
    finally:
        for i in range(100):
            open_gate(h, f"s{i}")
    t.join(10)
    assert sum(starts) == 100 and len(starts) <= 5, starts
    assert writers == {"yadtq-ends"}
    assert [h.get(i).result for i in ids] == [f"s{i}" for i in range(100)]
    assert [h.get(i).attempt for i in ids] == [1] * 100
    assert h.committed() == {0: 100} and w.done == 100


def test_async_time_limit_failure_and_cancel(fake_store: RedisStore) -> None:
    h = async_harness(fake_store, concurrency=1)
    ok, slow, bad = h.submit("ANAP", 0.01), h.submit("ANAP", 5), h.submit("ABAD")
    gated = h.submit("AGATE", "c")
    w = h.worker()
    t = run_in_thread(w, idle_exit=5)
    try:
        assert eventually(lambda: h.get(gated).state is P, 10)
        assert h.client.cancel(gated).running
        assert eventually(lambda: h.get(gated).state is X, 10)
        assert eventually(lambda: h.get(bad).state is F, 10)
        assert eventually(lambda: h.get(slow).state is F, 10)
    finally:
        open_gate(h, "c")
    t.join(10)
    assert h.get(ok).result == 0.01
    assert "time limit of 0.3 s exceeded" in (h.get(slow).error or "")
    assert h.get(bad).error == "ValueError: async boom" and h.get(bad).attempt == 2
    assert w.exit_code == 0


def test_an_async_task_that_ignores_its_cancellation_is_escalated(fake_store: RedisStore) -> None:
    h = async_harness(fake_store, concurrency=2, stuck_grace=0.5)
    deaf = h.submit("ADEAF")
    w = h.worker()
    t = run_in_thread(w, idle_exit=10)
    t.join(15)
    assert w.exit_code == EXIT_RESTART
    task = h.get(deaf)
    assert task.state is F and "did not stop within 0.5 s" in (task.error or "")
    assert h.committed() == {0: 1}


def test_tasks_left_in_progress_by_a_dead_worker_run_one_at_a_time(fake_store: RedisStore) -> None:
    """A worker died with 4 tasks started. When they come again, each is charged exactly one more
    start and they run one at a time (one of them may be what killed it: ``worker/suspects.py``);
    the fresh tasks beside them run once each."""
    h = harness(fake_store, concurrency=4)
    live = {"now": 0, "most": 0, "fresh_most": 0, "fresh_now": 0}
    lock = threading.Lock()

    @h.reg.task("NAPKEY", max_attempts=1)
    def nap(key: str) -> str:
        kind = "now" if key.startswith("s") else "fresh_now"
        with lock:
            live[kind] += 1
            live["most"], live["fresh_most"] = (max(live["most"], live["now"]),
                                                max(live["fresh_most"], live["fresh_now"]))
        time.sleep(0.1)
        with lock:
            live[kind] -= 1
        return key

    h.client = Client(h.settings, store=h.store, producer_factory=h.broker.producer,
                      kafka_ping=h.broker.ping, registry=h.reg)  # one that knows NAPKEY
    suspects = [h.submit("NAPKEY", f"s{i}") for i in range(4)]
    fresh = [h.submit("NAPKEY", f"f{i}") for i in range(4)]
    envs = [decode(m) for m in h.broker.messages(h.settings.topic)]
    assert h.store.start("dead", envs[:4]) == [1] * 4  # the dead worker's starts, 10 s ago
    secs, micros = h.store.r.time()  # (ages are measured on Redis's clock)
    for e in envs[:4]:
        h.store.r.hset(h.store.keys.task(e.id), "started_at", repr(secs + micros / 1e6 - 10))
    h.run(idle_exit=1.0)
    assert [h.get(i).result for i in suspects + fresh] == [f"s{i}" for i in range(4)] + [
        f"f{i}" for i in range(4)]
    assert [h.get(i).attempt for i in suspects] == [2] * 4
    assert [h.get(i).attempt for i in fresh] == [1] * 4
    assert live["most"] == 1, live  # (the fresh ones may overlap: not asserted, load decides)
    assert h.committed() == {0: 8}


def test_a_suspect_holds_its_turn_for_alone_seconds_at_most() -> None:
    """A long task that came again after a crash runs alone for ``alone_seconds``, then the next
    suspect starts beside it (it does not wait for the whole run); one that ends sooner hands the
    turn on at once."""
    from worker.suspects import Suspects

    suspects = Suspects(alone_seconds=0.3)
    order: list[str] = []

    def long() -> None:
        with suspects.turn():
            order.append("long starts")
            time.sleep(1.2)
            order.append("long ends")

    t = threading.Thread(target=long)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    with suspects.turn():
        waited = time.monotonic() - t0
        order.append("next starts")
    t0 = time.monotonic()
    with suspects.turn():  # "next" ended: no wait, though "long" still runs
        assert time.monotonic() - t0 < 0.1
    t.join()
    assert 0.15 <= waited < 1.0 and order == ["long starts", "next starts", "long ends"]


def test_a_suspect_whose_partition_moved_is_forgotten() -> None:
    """A suspect skipped because its partition was revoked is not kept for ever: the next one
    added drops it, and a later delivery of the same offset (a new ownership) is not a suspect."""
    from worker.inflight import Track
    from worker.suspects import Suspects
    from yadtq.broker_types import Record

    suspects = Suspects()
    old, kept = Track(partition=0), Track(partition=1)
    suspects.add((old, Record(0, 7, b""), None))
    suspects.add((kept, Record(1, 3, b""), None))
    old.live = False
    suspects.add((kept, Record(1, 4, b""), None))
    assert not suspects.take((Track(partition=0), Record(0, 7, b""), None))
    assert suspects.take((kept, Record(1, 3, b""), None))
    assert not suspects.take((kept, Record(1, 3, b""), None))  # once
    assert suspects.take((kept, Record(1, 4, b""), None))


def test_a_task_handed_over_between_live_workers_is_not_failed_as_a_killer(
        fake_store: RedisStore) -> None:
    """A task whose partition moved 5 times between workers that all still run (rebalances while
    it ran: scaling, workers joining) is taken over and run, not failed as one that kills its
    worker: before, each hand-over counted as a start that never finished, and ``make chaos``
    failed a good 2 s task "started 4 times and never finished". One whose workers really died
    with it in hand 3 times is still failed (``max_attempts`` 1 + ``EXTRA_STARTS`` 2)."""
    from yadtq.models import Beat

    h = harness(fake_store, concurrency=2)
    moved, killer = h.submit("ADD", 1, 2), h.submit("ADD", 3, 4)
    envs = {e.id: e for e in (decode(m) for m in h.broker.messages(h.settings.topic))}
    secs, micros = h.store.r.time()
    for n, w in enumerate(["w1", "w2", "w3", "w4", "w5"], start=1):
        h.store.heartbeat(Beat(w, "host", n, 1000.0, None, 0, 0), ttl=60)
        assert h.store.start_ex(w, [envs[moved]]) == [(n, 0)]
    for n in range(1, 4):  # three workers that died with it (no heartbeat): three deaths
        assert h.store.start_ex(f"dead{n}", [envs[killer]]) == [(n, n - 1)]
    for task_id in (moved, killer):  # all long ago (suspects, when their worker is gone)
        h.store.r.hset(h.store.keys.task(task_id), "started_at", repr(secs + micros / 1e6 - 60))
    h.run(idle_exit=1.0)
    done = h.get(moved)
    assert (done.state, done.result, done.attempt) == (TaskState.COMPLETED, 3, 6), done
    failed = h.get(killer)
    assert failed.state is TaskState.FAILED and "died or was restarted with it in hand 3 times" in (
        failed.error or ""), failed
