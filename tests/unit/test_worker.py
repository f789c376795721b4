"""The worker loop over fakeredis (real Lua) and the in-memory Kafka with consumer groups."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import worker.runner as runner_module
import worker.worker as worker_module
from tests.polling import eventually
from worker.runner import backoff
from worker.worker import Worker
from yadtq import default_registry
from yadtq.builtins import register_builtins
from yadtq.client import Client
from yadtq.errors import PermanentTaskError, ServiceUnavailable
from yadtq.models import Outcome, Task, TaskState
from yadtq.registry import Registry
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.text import safe_text
from yadtq.wire import Envelope, decode, encode

S, Q, P, C, F = (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED,
                 TaskState.FAILED)
X = TaskState.CANCELLED

@pytest.fixture
def fake_settings() -> Settings:
    """One task at a time (``concurrency=1``): these tests pin down today's sequential behaviour;
    ``test_worker_concurrency.py`` runs several at once."""
    return Settings(key_prefix="yadtq:unit", heartbeat_interval=0.2, commit_after=0.0, concurrency=1)



class Harness:
    """A registry of test tasks that count their executions, a client and workers on one broker."""

    def __init__(self, settings: Settings, store: RedisStore, broker: FakeBroker) -> None:
        self.settings, self.store, self.broker = settings, store, broker
        self.calls: Counter[str] = Counter()
        self.started = threading.Event()
        self.reg = reg = Registry()
        register_builtins(reg)
        calls = self.calls

        @reg.task("COUNT", max_attempts=1)
        def count(key: str, seconds: float) -> str:
            calls[key] += 1
            self.started.set()
            end = time.monotonic() + seconds
            while time.monotonic() < end:  # short steps: a time limit could interrupt it
                time.sleep(0.01)
            return f"done {key}"

        @reg.task("FLAKY", max_attempts=3)
        def flaky(key: str, failures: int) -> int:
            calls[key] += 1
            if calls[key] <= failures:
                raise RuntimeError(f"flaky {calls[key]}")
            return calls[key]

        @reg.task("PERM", max_attempts=3)
        def perm(key: str) -> None:
            calls[key] += 1
            raise PermanentTaskError("bad input, retrying cannot help")

        @reg.task("LOOP", max_attempts=1, time_limit=0.3)
        def loop() -> None:
            while True:
                time.sleep(0.01)

        @reg.task("ENDS_LATE", max_attempts=1, time_limit=0.2)
        def ends_late() -> str:
            time.sleep(0.3)  # one C call: an interrupt can only land after it returns
            return "ok"

        self.client = Client(settings, store=store, producer_factory=broker.producer,
                             kafka_ping=broker.ping, registry=reg)

    def submit(self, name: str, *args: Any) -> str:
        return self.client.submit(name, args)

    def worker(self, worker_id: str = "w1", consumer_factory: Any = None) -> Worker:
        return Worker(self.settings, self.reg, store=self.store,
                      consumer_factory=consumer_factory or self.broker.consumer,
                      producer_factory=self.broker.producer, offsets_factory=self.broker.offsets,
                      worker_id=worker_id)

    def consumers(self, spoil_first: Callable[[Any], object]) -> tuple[Callable[..., Any], list[Any]]:
        """A consumer factory whose first consumer ``spoil_first`` breaks, and the consumers made."""
        made: list[Any] = []

        def factory(settings: Settings, wid: str, revoked: Any, assigned: Any) -> Any:
            consumer = self.broker.consumer(settings, wid, revoked, assigned)
            if not made:
                spoil_first(consumer)
            made.append(consumer)
            return consumer

        return factory, made

    def run(self, worker_id: str = "w1", idle_exit: float = 0.3, **kw: Any) -> Worker:
        w = self.worker(worker_id, **kw)
        w.run(idle_exit=idle_exit)
        return w

    def get(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        assert task is not None
        return task

    def committed(self) -> dict[int, int]:
        return dict(self.broker.groups[self.settings.group].committed)

    def all_offsets(self) -> dict[int, int]:
        parts = self.broker.topics[self.settings.topic]
        return {p: len(msgs) for p, msgs in enumerate(parts) if msgs}


@pytest.fixture
def h(fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> Harness:
    return Harness(fake_settings, fake_store, fake_broker)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "RETRY_BASE_SECONDS", 0.01)


def history(task: Task) -> list[tuple[str, int, str | None]]:
    return [(e.state.value, e.attempt, e.note) for e in task.history]


wait_until = eventually


# ---------------------------------------------------------------- the happy path
def test_tasks_complete_with_results_and_history(h: Harness) -> None:
    adds = [h.submit("ADD", i, 1) for i in range(10)]
    div, count = h.submit("DIV", 1, 4), h.submit("COUNT", "c", 0)
    w = h.worker()
    assert w.run(idle_exit=0.3) == 12
    for i, task_id in enumerate(adds):
        task = h.get(task_id)
        assert (task.state, task.result, task.attempt, task.worker) == (C, i + 1, 1, "w1")
        assert [e.state for e in task.history] == [Q, P, C]
    assert h.get(div).result == 0.25 and h.get(count).result == "done c"
    assert (w.done, w.failed, h.calls["c"]) == (12, 0, 1)
    assert h.store.counts() == {S: 0, Q: 0, P: 0, C: 12, F: 0, X: 0}
    assert h.committed() == h.all_offsets()
    assert h.store.workers(late_after=5) == []  # a clean exit removes the heartbeat
    assert sum(h.store.finished_per_second(5, now=time.time() + 1)) == 12
    assert sorted(s["name"] for s in h.store.published_specs()) == h.reg.names()


def test_offsets_are_committed_only_after_the_final_state(h: Harness) -> None:
    seen: list[dict[int, int]] = []
    early: list[str] = []

    def factory(settings: Settings, wid: str, revoked: Any, assigned: Any) -> Any:
        consumer = h.broker.consumer(settings, wid, revoked, assigned)
        real_commit = consumer.commit

        def commit(offsets: dict[int, int], wait: bool = True) -> None:
            for p, end in offsets.items():
                for value in h.broker.topics[settings.topic][p][:end]:
                    task = None if value == b"garbage" else h.store.get(decode(value).id)
                    # a retry is handed to the scheduler (``scheduled``, then a new message when
                    # due): that finishes its message too
                    retried = task is not None and any(e.state is S for e in task.history)
                    if value != b"garbage" and (task is None or not (task.state.is_final
                                                                     or retried)):
                        early.append(f"{p}/{end}: {task and task.state}")
            seen.append(dict(offsets))
            real_commit(offsets, wait)
        consumer.commit = commit  # type: ignore[method-assign]
        return consumer

    h.client.submit_many([*(("ADD", (i, i)) for i in range(6)), ("FLAKY", ("f", 1)),
                          ("DIV", (1, 0)), ("COUNT", ("slow", 0.05))])
    h.broker.append(h.settings.topic, b"garbage")
    h.run(consumer_factory=factory)
    assert early == []
    assert seen and h.committed() == h.all_offsets()
    assert h.store.counts() == {S: 0, Q: 0, P: 0, C: 8, F: 1, X: 0}


# ---------------------------------------------------------------- bad messages
def test_bad_messages_are_dead_lettered_and_the_rest_completes(h: Harness,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    system_calls: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a: system_calls.append(a) or 0)
    first = h.submit("ADD", 1, 1)
    topic = h.settings.topic
    h.broker.append(topic, b"not json at all")
    h.broker.append(topic, None)
    evil = Envelope("e" * 32, "os.system", ("touch /tmp/pwned",), time.time())
    h.broker.append(topic, encode(evil))
    bad_args = Envelope("b" * 32, "ADD", ("x", 1), time.time())
    h.broker.append(topic, encode(bad_args))
    after = [h.submit("MUL", i, 2) for i in range(5)]
    w = h.run()
    reasons = sorted(m.decode() for m in h.broker.messages(h.settings.dead_letter_topic))
    assert [r[:24] for r in reasons] == ["ADD: a must be a number,", "empty message (no value)",
                                         "message is not UTF-8 JSO", "unknown task 'os.system'"]
    assert reasons[3] == "unknown task 'os.system' on worker w1"
    assert system_calls == []
    assert (h.get(evil.id).state, h.get(evil.id).error) == (F, "unknown task 'os.system' on worker w1")
    assert (h.get(bad_args.id).state, h.get(bad_args.id).error) == \
        (F, "ADD: a must be a number, got str")
    assert h.get(first).result == 2
    assert [h.get(t).result for t in after] == [0, 2, 4, 6, 8]
    assert h.committed() == h.all_offsets()
    assert w.done == 6


def test_tasks_failed_at_validation_count_as_failed(h: Harness) -> None:
    h.broker.append(h.settings.topic, encode(Envelope("e" * 32, "NOPE", (), time.time())))
    w = h.run()
    assert h.get("e" * 32).state is F
    assert w.failed == 1


# ---------------------------------------------------------------- retries and failures
def test_retries_then_failure_success_on_a_later_attempt_and_permanent_errors(h: Harness) -> None:
    boom, flaky, perm = h.submit("FLAKY", "b", 99), h.submit("FLAKY", "f", 1), h.submit("PERM", "p")
    w = h.run()
    task = h.get(boom)  # retried up to max_attempts=3, then failed with the last error
    assert (task.state, task.attempt, task.error) == (F, 3, "RuntimeError: flaky 3")
    states = history(task)
    assert [s for s, _, _ in states] == ["queued", "in-progress", "scheduled", "queued", "in-progress",
                                         "scheduled", "queued", "in-progress", "failed"]
    assert [a for _, a, _ in states] == [0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert [n for s, a, n in states if s == "scheduled"][0].startswith("retry in")
    assert [n for s, a, n in states if s == "queued" and a] == ["due", "due"]
    assert states[-1][2] == "after 3 attempts"
    task = h.get(flaky)  # failed once, then succeeded
    assert (task.state, task.attempt, task.result, task.error) == (C, 2, 2, None)
    assert [s for s, _, _ in history(task)] == ["queued", "in-progress", "scheduled", "queued",
                                                "in-progress", "completed"]
    task = h.get(perm)  # PermanentTaskError: no retry
    assert (task.state, task.attempt, task.error) == (F, 1, "bad input, retrying cannot help")
    assert h.calls == {"b": 3, "f": 2, "p": 1}
    assert (w.done, w.failed) == (1, 2)
    assert h.store.counts() == {S: 0, Q: 0, P: 0, C: 1, F: 2, X: 0} and h.committed() == h.all_offsets()


def test_a_task_over_its_time_limit_is_interrupted(h: Harness) -> None:
    looping = h.submit("LOOP")
    after = h.submit("ADD", 2, 2)
    t0 = time.monotonic()
    h.run()
    assert time.monotonic() - t0 < 5
    task = h.get(looping)
    assert task.state is F and task.error is not None and "time limit" in task.error
    assert task.error == "time limit of 0.3 s exceeded"
    assert h.get(after).result == 4  # the runner thread survived the interruption


# ---------------------------------------------------------------- several workers
def test_two_workers_share_the_partitions(h: Harness) -> None:
    ids = [h.submit("COUNT", f"k{i}", 0.02) for i in range(32)]
    barrier = threading.Barrier(2)

    def factory(*args: Any) -> Any:
        consumer = h.broker.consumer(*args)
        barrier.wait(timeout=5)  # both are group members before either polls
        return consumer

    workers = [h.worker(f"w{i}", consumer_factory=factory) for i in (1, 2)]
    threads = [threading.Thread(target=w.run, kwargs={"idle_exit": 0.5}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    tasks = [h.get(i) for i in ids]
    assert {t.state for t in tasks} == {C}
    assert {t.worker for t in tasks} == {"w1", "w2"}
    assert workers[0].done > 0 and workers[1].done > 0
    assert workers[0].done + workers[1].done == 32 == sum(h.calls.values())
    assert h.committed() == h.all_offsets()


def test_a_member_stuck_joining_its_group_leaves_and_joins_again(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-python 3.0 members were seen stuck in a group join for good (alive, no partitions):
    after ``REJOIN_AFTER_SECONDS`` the worker closes that consumer and joins with a new one."""
    monkeypatch.setattr(worker_module, "REJOIN_AFTER_SECONDS", 0.3)
    # the first one never finishes joining
    factory, made = h.consumers(lambda consumer: setattr(consumer, "stuck", True))
    ids = [h.submit("ADD", i, 1) for i in range(5)]
    w = h.worker(consumer_factory=factory)
    assert w.run(idle_exit=1.0) == 5
    assert len(made) == 2 and made[0].closed  # the stuck one left the group
    assert w.metrics.renewals.labels("join")._value.get() == 1
    assert [h.get(t).state for t in ids] == [C] * 5


def test_a_warm_stop_finishes_the_current_task_and_loses_nothing(fake_settings: Settings,
                                                                 fake_store: RedisStore) -> None:
    h = Harness(fake_settings, fake_store, FakeBroker(partitions=1))  # one partition: known order
    fast = [h.submit("ADD", i, 0) for i in range(3)]
    long_id = h.submit("COUNT", "L", 0.6)
    rest = [h.submit("ADD", i, 100) for i in range(3, 8)]
    w = h.worker("w1")
    beats: list[Any] = []

    def stopper() -> None:
        assert h.started.wait(5)
        beats.append(wait_until(lambda: [(b.id, b.current_task) for b in
                                         h.store.workers(late_after=5)] == [("w1", long_id)]))
        w.request_stop()

    t = threading.Thread(target=stopper)
    t.start()
    w.run(idle_exit=5)
    t.join(5)
    assert beats == [True]  # the heartbeat showed the running task
    long_task = h.get(long_id)
    assert (long_task.state, long_task.result, h.calls["L"]) == (C, "done L", 1)
    assert [h.get(i).state for i in fast] == [C, C, C]
    # a task not known to be fast runs in a chunk of its own: nothing after it was started
    assert [(h.get(i).state, h.get(i).attempt) for i in rest] == [(Q, 0)] * 5
    assert h.store.counts() == {S: 0, Q: 5, P: 0, C: 4, F: 0, X: 0}
    assert h.committed() == {0: 4}
    assert h.store.workers(late_after=5) == []

    h.run("w2")
    assert h.store.counts() == {S: 0, Q: 0, P: 0, C: 9, F: 0, X: 0}
    assert h.calls["L"] == 1
    assert [h.get(i).result for i in rest] == [103, 104, 105, 106, 107]
    assert [h.get(i).attempt for i in rest] == [1, 1, 1, 1, 1]
    assert h.get(long_id).worker == "w1"
    assert h.committed() == {0: 9}


def test_a_duplicate_delivery_of_a_finished_task_is_skipped(h: Harness) -> None:
    counted = h.submit("COUNT", "d", 0)
    added = h.submit("ADD", 1, 2)
    h.run("w1")
    before = (h.get(counted), h.get(added))
    h.broker.groups[h.settings.group].committed.clear()  # the commit was lost
    w2 = h.run("w2")
    assert h.calls["d"] == 1
    assert (h.get(counted), h.get(added)) == before
    assert before[0].worker == "w1" and len(before[0].history) == 3
    assert (w2.done, w2.failed) == (0, 0)
    assert h.committed() == h.all_offsets()


# ---------------------------------------------------------------- small pieces
def test_backoff_doubles_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "RETRY_BASE_SECONDS", 0.5)
    assert [backoff(a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(30) == runner_module.RETRY_MAX_SECONDS


def test_escape_keeps_log_lines_single() -> None:
    # the worker escapes task data in log lines with the core's safe_text()
    assert safe_text("a\nb\x1b[2J", 300) == "a\\nb\\x1b[2J"
    assert safe_text("x" * 500, 10) == "x" * 9 + "…"


# ---------------------------------------------------------------- races (bug demonstrations)
class RacingStore(RedisStore):
    """Once a retry is scheduled, it comes due and another worker runs it to completion before
    this worker's scheduler claims it."""

    raced = False

    def finish(self, worker_id: str, outcomes: Any) -> list[bool]:
        out = super().finish(worker_id, outcomes)
        for o in outcomes:
            if o.state is S and o.error and not self.raced:
                self.raced = True
                task = self.get(o.task_id)
                assert task is not None
                assert self.transition(task.id, S, Q, "due") == 1
                env = Envelope(task.id, task.name, task.args, task.created_at)
                attempt = super().start("w-other", [env])[0]
                super().finish("w-other", [Outcome(task.id, attempt, C, result="other")])
        return out


def test_a_retry_taken_by_another_worker_does_not_drop_the_batch(fake_settings: Settings,
                                                                 fake_redis: Any) -> None:
    store = RacingStore(fake_settings, fake_redis)
    h = Harness(fake_settings, store, FakeBroker(partitions=1))
    flaky = h.submit("FLAKY", "f", 1)
    rest = [h.submit("ADD", i, 1) for i in range(3)]
    h.run()
    assert (h.get(flaky).state, h.get(flaky).result) == (C, "other")
    assert [h.get(i).state for i in rest] == [C, C, C]
    assert h.committed() == {0: 4}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_late_time_limit_interrupt_does_not_kill_the_runner(h: Harness,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real_interrupt = runner_module.interrupt_thread
    w = h.worker()

    def preempted_interrupt(thread: threading.Thread, exc: type[BaseException]) -> bool:
        # The watchdog saw the task over its limit, then lost the CPU while the task ended on its
        # own, just past its limit: the interrupt lands in the runner's own code after it.
        time.sleep(0.3)
        return real_interrupt(thread, exc)

    monkeypatch.setattr(runner_module, "interrupt_thread", preempted_interrupt)
    late = h.submit("ENDS_LATE")
    t = threading.Thread(target=w.run, kwargs={"idle_exit": 3}, daemon=True)
    t.start()
    try:
        assert wait_until(lambda: h.get(late).state.is_final)
        time.sleep(0.1)
        after = h.submit("ADD", 1, 1)
        assert wait_until(lambda: h.get(after).state is C, 2)
    finally:
        w.request_stop()
        t.join(5)


def test_a_task_never_shows_in_progress_while_it_waits_behind_a_slow_one(
        fake_settings: Settings, fake_store: RedisStore) -> None:
    """Fast tasks share chunks; one not known to be fast (COUNT, first seen) runs alone, so the
    tasks queued behind it stay 'queued' until they really start."""
    h = Harness(fake_settings, fake_store, FakeBroker(partitions=1))
    first = [h.submit("ADD", i, 0) for i in range(3)]
    long_id = h.submit("COUNT", "L", 0.5)
    after = [h.submit("ADD", i, 1) for i in range(3)]
    w = h.worker("w1")
    seen: list[Any] = []

    def watch() -> None:
        assert h.started.wait(5)
        seen.append([h.get(i).state for i in after])
        w.request_stop()

    t = threading.Thread(target=watch)
    t.start()
    w.run(idle_exit=5)
    t.join(5)
    assert seen == [[Q, Q, Q]]
    assert h.get(long_id).state is C and [h.get(i).state for i in first] == [C, C, C]


# ---------------------------------------------------------------- a worker started before Kafka waits for it
def test_worker_waits_for_kafka(fake_client: Client, fake_broker: FakeBroker,
                                fake_settings: Settings, fake_store: RedisStore) -> None:
    task_id = fake_client.submit("ADD", [2, 3])
    attempts = []

    def flaky_factory(*args: Any) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ServiceUnavailable("Kafka unreachable (test)")
        return fake_broker.consumer(*args)

    worker = Worker(fake_settings, default_registry, store=fake_store,
                    consumer_factory=flaky_factory, producer_factory=fake_broker.producer)
    worker.run(idle_exit=0.3)
    assert len(attempts) == 3
    task = fake_client.get(task_id)
    assert task.state is TaskState.COMPLETED and task.result == 5
