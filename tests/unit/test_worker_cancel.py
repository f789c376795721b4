"""Cancel in the worker, over fakeredis (real Lua) and the in-memory Kafka: a cancelled task never
starts; a running one is interrupted within about a second and ends ``cancelled``, never retried;
one that ignores the interrupt is ended by a worker restart, as a stuck task is."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import worker.runner as runner_module
from tests.unit.test_worker import C, Harness, X, wait_until
from tests.unit.test_worker_healing import run_in_thread
from worker.worker import EXIT_RESTART, Worker
from yadtq.client import Client
from yadtq.errors import ServiceUnavailable
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker

POLL = 0.05
"""The cancel watch's interval in these tests (1 s in a real worker)."""

@pytest.fixture
def fake_settings() -> Settings:
    """One task at a time (``concurrency=1``): these tests pin down today's sequential behaviour;
    ``test_worker_concurrency.py`` runs several at once."""
    return Settings(key_prefix="yadtq:unit", heartbeat_interval=0.2, commit_after=0.0, concurrency=1)



@pytest.fixture
def h(fake_settings: Settings, fake_store: RedisStore) -> Iterator[Harness]:
    settings = fake_settings.with_(stuck_grace=0.5)
    harness = Harness(settings, RedisStore(settings, fake_store.r), FakeBroker(partitions=1))
    reg, calls = harness.reg, harness.calls
    release = threading.Event()

    @reg.task("SPIN", max_attempts=3, time_limit=60)
    def spin(key: str) -> str:
        """Runs until interrupted (short sleeps: an interrupt lands), with retries configured."""
        calls[key] += 1
        harness.started.set()
        while not release.is_set():
            time.sleep(0.01)
        return key

    @reg.task("FAILS", max_attempts=3)
    def fails(key: str) -> None:
        calls[key] += 1
        harness.started.set()
        raise RuntimeError("fails every time")

    @reg.task("DEAF", max_attempts=3, time_limit=60)
    def deaf(key: str) -> None:
        """Swallows every interrupt, the cancel's included."""
        calls[key] += 1
        harness.started.set()
        while not release.is_set():
            try:
                time.sleep(0.01)
            except BaseException:  # what a careless task does
                continue

    @reg.task("BLOCKED", max_attempts=3, time_limit=60)
    def blocked(key: str) -> None:
        """Blocks in one C call: the interrupt cannot land."""
        calls[key] += 1
        harness.started.set()
        release.wait()

    harness.client = Client(settings, store=harness.store, producer_factory=harness.broker.producer,
                            kafka_ping=harness.broker.ping, registry=reg)
    yield harness
    release.set()


def _worker(h: Harness, worker_id: str = "w1") -> Worker:
    w = h.worker(worker_id)
    w.cancel_watch.interval = POLL
    return w


def test_a_cancelled_queued_task_never_runs_and_its_offset_is_committed(h: Harness) -> None:
    first = h.submit("ADD", 1, 1)
    doomed = h.submit("SPIN", "doomed")
    after = h.submit("ADD", 2, 2)
    assert not h.client.cancel(doomed).running
    w = _worker(h)
    w.run(idle_exit=0.5)
    assert h.calls["doomed"] == 0
    assert [h.get(i).state for i in (first, doomed, after)] == [C, X, C]
    assert h.get(doomed).attempt == 0
    assert h.committed() == h.all_offsets() == {0: 3}
    # read again from the start (a group reset): still never runs
    h.broker.groups[h.settings.group].committed.clear()
    _worker(h, "w2").run(idle_exit=0.5)
    assert h.calls["doomed"] == 0 and h.get(doomed).state is X


def test_a_running_task_is_interrupted_within_a_second_and_never_retried(h: Harness) -> None:
    doomed = h.submit("SPIN", "doomed")
    after = h.submit("ADD", 2, 2)
    w = _worker(h)
    t = run_in_thread(w, idle_exit=1.0)
    assert h.started.wait(5)
    asked = time.monotonic()
    assert h.client.cancel(doomed).running
    assert wait_until(lambda: h.get(doomed).state is X, 5)
    latency = time.monotonic() - asked
    t.join(10)
    assert not t.is_alive() and w.exit_code == 0
    task = h.get(doomed)
    assert (task.state, task.attempt, task.error) == (X, 1, "cancelled while running")
    assert task.history[-1].note == "interrupted on request"
    assert h.calls["doomed"] == 1  # max_attempts=3, yet no retry
    assert latency < 3.0, latency  # about POLL + one consume-loop tick here
    assert h.get(after).state is C
    assert h.committed() == {0: 2}
    assert (w.done, w.failed) == (1, 0)


def test_a_cancel_during_a_retry_backoff_ends_the_retries(h: Harness,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "RETRY_BASE_SECONDS", 1.0)
    doomed = h.submit("FAILS", "doomed")
    w = _worker(h)
    t = run_in_thread(w, idle_exit=1.0)
    assert h.started.wait(5)
    assert wait_until(lambda: h.get(doomed).state.value == "scheduled", 5)  # waiting to retry
    assert not h.client.cancel(doomed).running
    t.join(10)
    task = h.get(doomed)
    assert (task.state, task.attempt, h.calls["doomed"]) == (X, 1, 1)
    assert h.committed() == {0: 1}


@pytest.mark.parametrize("name", ["DEAF", "BLOCKED"])
def test_a_task_that_ignores_the_cancel_ends_cancelled_by_a_worker_restart(h: Harness,
                                                                          name: str) -> None:
    doomed = h.submit(name, "doomed")
    after = h.submit("ADD", 2, 2)
    w = _worker(h)
    t = run_in_thread(w, idle_exit=10)
    assert h.started.wait(5)
    h.client.cancel(doomed)
    stalled: list[str] = []

    def watch() -> bool:
        reason = w.heartbeat.beat().stalled
        if reason:
            stalled.append(reason)
        return bool(stalled)

    assert wait_until(watch, 5)
    assert "was cancelled" in stalled[0] and "has not stopped" in stalled[0]
    t.join(10)
    assert not t.is_alive() and w.exit_code == EXIT_RESTART
    task = h.get(doomed)
    assert task.state is X and task.error is not None
    assert task.error.startswith("cancelled while running, and the task did not stop within 0.5 s")
    assert h.committed() == {0: 1}  # past the cancelled task, not past the one behind it
    _worker(h, "w2").run(idle_exit=0.5)  # the fresh worker
    assert h.get(after).state is C and h.calls["doomed"] == 1


def test_a_cancel_made_while_redis_was_unreachable_for_the_worker_is_not_lost(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch's reads fail for a while (the worker cut off from Redis): the flag stays in the
    task's hash, and the first read that works finds it."""
    doomed = h.submit("SPIN", "doomed")
    w = _worker(h)
    real = w.cancel_watch.cancels.requested
    failures = {"left": 10}

    def flaky_read(task_id: str) -> bool:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ServiceUnavailable("Redis unreachable (test)")
        return real(task_id)

    monkeypatch.setattr(w.cancel_watch.cancels, "requested", flaky_read)
    t = run_in_thread(w, idle_exit=1.0)
    assert h.started.wait(5)
    h.client.cancel(doomed)
    assert wait_until(lambda: h.get(doomed).state is X, 10)
    t.join(10)
    assert failures["left"] == 0 and h.calls["doomed"] == 1
