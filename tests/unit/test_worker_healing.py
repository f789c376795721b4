"""Self-healing in the worker, over fakeredis (real Lua) and the in-memory Kafka: whatever one
message or one task does stays confined to it, and a runner that cannot go on is replaced."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

import worker.runner as runner_module
import worker.worker as worker_module
from tests.unit.test_worker import C, F, Harness, wait_until
from worker.worker import EXIT_RESTART, Worker
from yadtq.client import Client
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker


@pytest.fixture
def fake_settings() -> Settings:
    """One task at a time (``concurrency=1``): these tests pin down today's sequential behaviour;
    ``test_worker_concurrency.py`` runs several at once."""
    return Settings(key_prefix="yadtq:unit", heartbeat_interval=0.2, commit_after=0.0, concurrency=1)



@pytest.fixture
def h(fake_settings: Settings, fake_store: RedisStore) -> Harness:
    settings = fake_settings.with_(stuck_grace=0.4)
    harness = Harness(settings, RedisStore(settings, fake_store.r), FakeBroker(partitions=1))
    reg = harness.reg
    release = threading.Event()
    harness.release = release  # type: ignore[attr-defined]

    @reg.task("EXIT", max_attempts=3)
    def exit_() -> None:
        sys.exit(3)

    @reg.task("INTERRUPT", max_attempts=3)
    def interrupt() -> None:
        raise KeyboardInterrupt

    @reg.task("BLOCK", max_attempts=1, time_limit=0.2)
    def block() -> None:
        release.wait()  # one C call: the interrupt cannot land

    @reg.task("SWALLOW", max_attempts=1, time_limit=0.2)
    def swallow() -> None:
        while not release.is_set():
            try:
                time.sleep(0.01)
            except BaseException:  # what a careless task does
                continue

    harness.client = Client(settings, store=harness.store, producer_factory=harness.broker.producer,
                            kafka_ping=harness.broker.ping, registry=reg)
    yield harness
    release.set()


def run_in_thread(w: Worker, idle_exit: float = 1.0) -> threading.Thread:
    t = threading.Thread(target=w.run, kwargs={"idle_exit": idle_exit}, daemon=True)
    t.start()
    return t


def test_sys_exit_and_keyboard_interrupt_fail_only_their_task(h: Harness) -> None:
    before = [h.submit("ADD", i, 1) for i in range(3)]
    bad = [h.submit("EXIT"), h.submit("INTERRUPT")]
    after = [h.submit("ADD", i, 2) for i in range(3)]
    w = h.run()
    assert [h.get(i).state for i in before + after] == [C] * 6
    errors = [(h.get(i).state, h.get(i).attempt, h.get(i).error) for i in bad]
    assert errors == [(F, 1, "SystemExit: the task called sys.exit(3)"), (F, 1, "KeyboardInterrupt")]
    assert w.exit_code == 0  # the runner lived through both: no restart asked for
    assert h.committed() == h.all_offsets()


def test_a_runner_that_fails_unexpectedly_reads_its_batch_again(h: Harness,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [h.submit("ADD", i, 1) for i in range(5)]
    w = h.worker()
    real_finish = w.store.finish
    calls = {"n": 0}

    def finish_twice_broken(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("a bug nobody foresaw")
        return real_finish(*args, **kw)

    monkeypatch.setattr(w.store, "finish", finish_twice_broken)
    w.run(idle_exit=0.5)
    assert [h.get(i).state for i in ids] == [C] * 5
    # the first (a chunk of its own: ADD is not known to be fast yet) was started, its outcome
    # refused twice (the coalesced write, then the write on its own) and so handed back to the
    # runner, which started it again; the others ran once
    assert [h.get(i).attempt for i in ids] == [2, 1, 1, 1, 1]
    assert calls["n"] >= 4
    assert h.committed() == h.all_offsets() and w.exit_code == 0


def test_a_runner_that_keeps_failing_asks_for_a_restart(h: Harness,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [h.submit("ADD", i, 1) for i in range(3)]
    w = h.worker()

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("always")

    monkeypatch.setattr(w.store, "finish", broken)
    w.run(idle_exit=5)
    assert w.exit_code == EXIT_RESTART
    assert h.committed() == {}  # nothing committed past unrecorded work
    assert [h.get(i).state.value for i in ids] == ["in-progress"] * 3


@pytest.mark.parametrize("name", ["BLOCK", "SWALLOW"])
def test_a_task_that_will_not_stop_is_failed_and_the_worker_replaced(h: Harness, name: str) -> None:
    first = h.submit("ADD", 1, 1)
    stuck = h.submit(name)
    after = [h.submit("ADD", i, 2) for i in range(3)]
    w = h.worker()
    stalled: list[str] = []
    t = run_in_thread(w, idle_exit=10)

    def watch() -> bool:
        reason = w.heartbeat.beat().stalled
        if reason:
            stalled.append(reason)
        return bool(stalled)

    assert wait_until(watch, 3)
    t.join(5)
    assert not t.is_alive() and w.exit_code == EXIT_RESTART
    assert "over its time limit of 0.2 s and has not stopped" in stalled[0]
    task = h.get(stuck)
    assert task.state is F and task.error is not None and "did not stop within 0.4 s" in task.error
    assert h.get(first).state is C
    # committed past the stuck task, not past the ones behind it: a fresh worker runs those
    offsets = h.committed()
    assert offsets == {0: 2}
    h.release.set()  # type: ignore[attr-defined]
    h.run("w2")
    assert [h.get(i).state for i in after] == [C] * 3
    assert h.get(stuck).attempt == 1


def test_tasks_of_a_revoked_partition_are_not_started(h: Harness) -> None:
    from yadtq.broker_types import Record

    w = h.worker()
    ids = [h.submit("ADD", i, 1) for i in range(4)]
    records = [Record(0, o, v, h.settings.topic)
               for o, v in enumerate(h.broker.topics[h.settings.topic][0])]
    items = w.inflight.add(records)
    w.inflight.revoke({0})
    w.runner.submit(items)
    unit = w.runner.work.get()
    assert unit is not None and w.runner._take_chunk(unit) == []
    assert [h.get(i).state.value for i in ids] == ["queued"] * 4 and w.inflight.committable() == {}


def test_a_retry_backoff_does_not_block_its_partition(fake_settings: Settings,
                                                     fake_store: RedisStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker, one partition: a failing task with a 30 s backoff, then tasks behind it. They
    complete during the backoff; the failed task waits ``scheduled`` in the due set, not in the
    runner, and the partition is committed past it."""
    monkeypatch.setattr(runner_module, "RETRY_BASE_SECONDS", 30.0)
    h = Harness(fake_settings, fake_store, FakeBroker(partitions=1))
    flaky = h.submit("FLAKY", "k", 1)
    behind = [h.submit("ADD", i, 1) for i in range(5)]
    t0 = time.monotonic()
    w = h.run(idle_exit=0.5)
    assert time.monotonic() - t0 < 10
    assert [h.get(i).state for i in behind] == [C] * 5
    task = h.get(flaky)
    assert (task.state.value, task.attempt, task.error) == ("scheduled", 1, "RuntimeError: flaky 1")
    due = fake_store.r.zscore(fake_store.keys.due, flaky)
    assert task.due_at is not None and due is not None and abs(due - task.due_at) < 1e-3
    assert task.due_at - task.updated_at == pytest.approx(30, abs=1)
    assert h.committed() == {0: 6} and w.done == 5


def test_offsets_are_committed_only_once_redis_has_had_time_to_persist(
        fake_settings: Settings, fake_store: RedisStore) -> None:
    """With appendfsync everysec a Redis crash loses up to a second of writes: a finished task's
    offset is committed ``commit_after`` seconds after its outcome was written, never sooner."""
    settings = fake_settings.with_(commit_after=0.6)
    h = Harness(settings, RedisStore(settings, fake_store.r), FakeBroker(partitions=1))
    ids = [h.submit("ADD", i, 1) for i in range(3)]
    w = h.worker()
    t = run_in_thread(w, idle_exit=1.5)
    assert wait_until(lambda: all(h.get(i).state is C for i in ids))
    finished_at = time.monotonic()
    assert h.committed() == {}
    assert wait_until(lambda: h.committed() == {0: 3}, 2)
    assert time.monotonic() - finished_at >= 0.5
    t.join(5)


def test_a_lost_asynchronous_commit_is_sent_again(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """An asynchronous commit that fails unseen (during a rebalance) must not leave an idle
    partition's committed offset behind for good: the reconciler waits on it."""
    import worker.worker as worker_module

    monkeypatch.setattr(worker_module, "RECOMMIT_SECONDS", 0.2)
    consumers: list[Any] = []

    def factory(settings: Settings, wid: str, revoked: Any, assigned: Any) -> Any:
        consumer = h.broker.consumer(settings, wid, revoked, assigned)
        consumer.lose_async_commits = 1_000_000 if not consumers else 0
        consumers.append(consumer)
        return consumer

    ids = [h.submit("ADD", i, 1) for i in range(3)]
    w = h.worker(consumer_factory=factory)
    t = run_in_thread(w, idle_exit=5.0)
    assert wait_until(lambda: all(h.get(i).state is C for i in ids))
    time.sleep(0.5)
    assert h.committed() == {}  # every asynchronous commit so far was lost
    consumers[0].lose_async_commits = 0  # the rebalance is over: the next re-commit lands
    assert wait_until(lambda: h.committed() == {0: 3}, 1.5)  # well before the idle exit's commit
    w.request_stop()
    t.join(5)


def test_a_consumer_that_stops_delivering_a_partition_is_renewed(
        fake_settings: Settings, fake_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kafka client that no longer delivers a partition though its messages wait (kafka-python
    3.0.12 stranded a paused partition's fetched records so: tests/integration/
    test_paused_fetch.py): the idle worker sees the lag stay with nothing delivered, logs it and
    joins with a new consumer, which reads the partition again from its committed offset."""
    monkeypatch.setattr(worker_module, "STALL_CHECK_SECONDS", 0.2)
    h = Harness(fake_settings, fake_store, FakeBroker(partitions=2))
    # the first one never delivers partition 1
    factory, made = h.consumers(lambda consumer: setattr(consumer, "withheld", {1}))
    ids = [h.submit("ADD", i, 1) for i in range(8)]
    w = h.worker(consumer_factory=factory)
    assert w.run(idle_exit=2.0) == 8
    assert len(made) == 2 and made[0].closed  # the stalled one left the group
    assert [h.get(t).state for t in ids] == [C] * 8
    assert w.metrics.renewals.labels("stalled")._value.get() == 1
    assert w.metrics.renewals.labels("join")._value.get() == 0
    assert h.committed() == h.all_offsets()


def test_a_paused_or_caught_up_partition_is_not_a_stall(
        fake_settings: Settings, fake_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing waiting, or waiting only where the worker paused it itself: no renewal."""
    monkeypatch.setattr(worker_module, "STALL_CHECK_SECONDS", 0.1)
    h = Harness(fake_settings, fake_store, FakeBroker(partitions=2))
    factory, made = h.consumers(lambda consumer: None)
    ids = [h.submit("ADD", i, 1) for i in range(4)]
    w = h.worker(consumer_factory=factory)
    assert w.run(idle_exit=1.0) == 4
    assert len(made) == 1 and [h.get(t).state for t in ids] == [C] * 4


class _Lags:
    def __init__(self, lags: dict[int, int] | None) -> None:
        self.lags_now = lags
        self.asked: list[set[int]] = []

    def assignment(self) -> set[int]:
        return {0, 1, 2}

    def lags(self, partitions: set[int]) -> dict[int, int] | None:
        self.asked.append(partitions)
        return None if self.lags_now is None else {p: n for p, n in self.lags_now.items()
                                                   if p in partitions}


def test_the_stall_check_needs_two_idle_checks_and_skips_paused_partitions() -> None:
    from worker.stall import StallCheck

    check, c = StallCheck(), _Lags({0: 0, 1: 7, 2: 9})
    assert check.check(c, paused={2}, every=0.0) == {}  # a first sight is not a stall
    assert c.asked == [{0, 1}]  # the paused one is not asked about
    assert check.check(c, paused={2}, every=0.0) == {1: 7}
    check.busy()  # work came: the idle stretch starts again
    assert check.check(c, paused=set(), every=0.0) == {}
    c.lags_now = {0: 0, 1: 0, 2: 9}  # partition 1 delivered meanwhile, 2 did not
    assert check.check(c, paused=set(), every=0.0) == {2: 9}
    assert check.check(c, paused=set(), every=3600.0) == {}  # not yet time: nothing asked
    assert len(c.asked) == 4
    blind = _Lags(None)  # a client that cannot tell (confluent): never a stall
    assert check.check(blind, paused=set(), every=0.0) == {} == check.check(blind, set(), 0.0)


def test_a_stall_check_whose_lags_cannot_be_read_is_not_a_stall() -> None:
    """Kafka unreachable while idle: nothing is renewed (the consume loop waits it out)."""
    from worker.stall import StallCheck
    from yadtq.errors import ServiceUnavailable

    class Unreachable(_Lags):
        def lags(self, partitions: set[int]) -> dict[int, int] | None:
            raise ServiceUnavailable("Kafka at 127.0.0.1:9092 is not reachable (reading lags)")

    check = StallCheck()
    assert check.check(Unreachable(None), paused=set(), every=0.0) == {}
    assert check.check(Unreachable(None), paused=set(), every=0.0) == {}
