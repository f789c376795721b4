"""Cancel in the store and the client, over fakeredis (the real Lua scripts): a waiting task is
cancelled at once and never starts; a running one is flagged and whatever its attempt writes ends
``cancelled``; a finished or unknown task is an error that changes nothing."""

from __future__ import annotations

import pytest

from worker.runner import CANCELLED
from yadtq.cancel import Cancels
from yadtq.client import Client
from yadtq.errors import InvalidTask, TaskFinished, TaskNotFound
from yadtq.models import Outcome, TaskState
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope, decode

S, Q, P, C, F = (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED,
                 TaskState.FAILED)
X = TaskState.CANCELLED


def _sent(broker: FakeBroker, client: Client) -> list[Envelope]:
    return [decode(m) for m in broker.messages(client.settings.topic) if m is not None]


def _raw(store: RedisStore, task_id: str) -> dict[str, str]:
    return dict(store.r.hgetall(store.keys.task(task_id)))


def test_a_queued_task_is_cancelled_at_once_and_its_message_never_starts(
        fake_client: Client, fake_broker: FakeBroker, fake_store: RedisStore) -> None:
    task_id = fake_client.submit("ADD", [2, 3])
    fake_store.r.zadd(fake_store.keys.due, {task_id: 1.0})  # as if it were also due later
    result = fake_client.cancel(task_id)
    assert (result.task_id, result.previous, result.running) == (task_id, Q, False)
    task = fake_client.get(task_id)
    assert (task.state, task.attempt, task.error) == (X, 0, "cancelled before it started")
    assert [(h.state, h.note) for h in task.history] == [
        (Q, None), (X, "cancelled before it started")]
    assert fake_client.counts() == {S: 0, Q: 0, P: 0, C: 0, F: 0, X: 1}
    assert [t.id for t in fake_client.list(X)] == [task_id] and fake_client.list(Q) == []
    assert fake_store.r.zscore(fake_store.keys.due, task_id) is None
    # the message is still in Kafka: START refuses it (a delivery or a redelivery alike)
    (env,) = _sent(fake_broker, fake_client)
    assert fake_store.start("w1", [env]) == [CANCELLED]
    assert fake_store.start("w2", [env]) == [CANCELLED]
    assert fake_client.get(task_id).state is X and fake_client.get(task_id).attempt == 0


def test_a_running_task_is_flagged_and_any_outcome_of_its_attempt_ends_cancelled(
        fake_client: Client, fake_broker: FakeBroker, fake_store: RedisStore) -> None:
    cancels = Cancels(fake_store)
    ids = fake_client.submit_many([("ADD", [1, 1]), ("ADD", [2, 2]), ("ADD", [3, 3])])
    envs = _sent(fake_broker, fake_client)
    assert fake_store.start("w1", envs) == [1, 1, 1]
    assert cancels.requested(ids) == set()
    for task_id in ids:
        result = fake_client.cancel(task_id)
        assert (result.previous, result.running) == (P, True)
        assert fake_client.cancel(task_id).running  # asked twice: the same answer, no change
        assert task_id in cancels.requested(ids)
        assert fake_client.get(task_id).state is P  # its worker writes the end
    # whatever the attempt ends with, it is written as cancelled: never retried, never failed
    written = fake_store.finish("w1", [
        Outcome(ids[0], 1, C, result=2),
        Outcome(ids[1], 1, F, error="RuntimeError: boom"),
        Outcome(ids[2], 1, Q, error="RuntimeError: flaky", note="retry in 0.5 s"),
    ])
    assert written == [True, True, True]
    done, failed, retried = (fake_client.get(i) for i in ids)
    assert [t.state for t in (done, failed, retried)] == [X, X, X]
    assert (done.result, done.error) == (2, "cancelled")
    assert "completed first: its result is kept" in (done.history[-1].note or "")
    assert failed.error == "cancelled; the attempt ended with: RuntimeError: boom"
    assert retried.history[-1].note == ("cancelled on request (the attempt not retried, not "
                                        "started again)")
    assert [h.note for h in done.history[:-1]] == [None, None, "cancel requested"]
    assert fake_client.counts() == {S: 0, Q: 0, P: 0, C: 0, F: 0, X: 3}
    # the retry's restart of that task is refused
    assert fake_store.start("w1", [envs[2]]) == [CANCELLED]


def test_a_cancel_racing_a_start_ends_cancelled_once(fake_client: Client, fake_broker: FakeBroker,
                                                     fake_store: RedisStore) -> None:
    """The task starts between the caller's look and the cancel: the cancel flags the running
    attempt; a redelivery (worker died, partition moved) is not started again but ends the task
    cancelled; the first attempt's late outcome is fenced. One final state: cancelled."""
    task_id = fake_client.submit("ADD", [1, 2])
    (env,) = _sent(fake_broker, fake_client)
    assert fake_client.get(task_id).state is Q  # what the caller saw
    assert fake_store.start("w1", [env]) == [1]  # the start wins the race
    assert fake_client.cancel(task_id).running
    assert fake_store.start("w2", [env]) == [CANCELLED]  # a redelivery elsewhere
    assert fake_store.finish("w1", [Outcome(task_id, 1, C, result=3)]) == [False]
    task = fake_client.get(task_id)
    assert (task.state, task.attempt) == (X, 1)
    assert [h.state for h in task.history].count(X) == 1
    assert fake_client.counts() == {S: 0, Q: 0, P: 0, C: 0, F: 0, X: 1}


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
def test_cancelling_a_finished_task_is_an_error_and_changes_nothing(
        end: str, fake_client: Client, fake_broker: FakeBroker, fake_store: RedisStore) -> None:
    task_id = fake_client.submit("ADD", [1, 2])
    if end == "cancelled":
        fake_client.cancel(task_id)
    else:
        (env,) = _sent(fake_broker, fake_client)
        fake_store.start("w1", [env])
        fake_store.finish("w1", [Outcome(task_id, 1, TaskState(end), result=3)])
    before, counts = _raw(fake_store, task_id), fake_client.counts()
    with pytest.raises(TaskFinished, match=f"task {task_id} is already {end}: only queued"):
        fake_client.cancel(task_id)
    assert _raw(fake_store, task_id) == before and fake_client.counts() == counts


@pytest.mark.parametrize("task_id", ["0" * 32, "", "not an id!", "a" * 65])
def test_cancelling_an_unknown_id_is_an_error(task_id: str, fake_client: Client,
                                              fake_store: RedisStore) -> None:
    with pytest.raises(TaskNotFound):
        fake_client.cancel(task_id)
    assert fake_store.r.keys("*") == []


@pytest.mark.parametrize("fields", [
    {"state": "queued"},  # no id, attempt or created_at
    {"state": "nonsense", "id": "x", "attempt": "0", "created_at": "1"},
    {"attempt": "0"},  # no state
])
def test_a_malformed_record_is_not_cancelled(fields: dict[str, str], fake_client: Client,
                                             fake_store: RedisStore) -> None:
    task_id = "ab" * 16
    fake_store.r.hset(fake_store.keys.task(task_id), mapping=fields)
    with pytest.raises(InvalidTask, match="malformed"):
        fake_client.cancel(task_id)
    assert _raw(fake_store, task_id) == fields


def test_a_key_of_another_type_is_not_cancelled(fake_client: Client, fake_store: RedisStore) -> None:
    task_id = "cd" * 16
    fake_store.r.set(fake_store.keys.task(task_id), "a string")
    with pytest.raises(InvalidTask, match="malformed"):
        fake_client.cancel(task_id)
    assert fake_store.r.get(fake_store.keys.task(task_id)) == "a string"


def test_a_flagged_task_requeued_by_the_reconciler_is_cancelled_at_its_start(
        fake_client: Client, fake_broker: FakeBroker, fake_store: RedisStore) -> None:
    """Its worker died after the cancel was asked: the reconciler puts it back to queued and
    re-sends it; the start of that delivery cancels it instead of running it."""
    task_id = fake_client.submit("ADD", [1, 2])
    (env,) = _sent(fake_broker, fake_client)
    assert fake_store.start("w1", [env]) == [1]
    fake_client.cancel(task_id)
    assert fake_store.transition(task_id, P, Q, note="re-queued: its worker is dead", attempt=1) == 1
    assert fake_store.start("w2", [env]) == [CANCELLED]
    task = fake_client.get(task_id)
    assert (task.state, task.attempt) == (X, 1)
    assert fake_client.counts() == {S: 0, Q: 0, P: 0, C: 0, F: 0, X: 1}


def test_the_cancel_watch_reads_every_running_task_in_one_round_trip(
        fake_client: Client, fake_broker: FakeBroker, fake_store: RedisStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With many tasks in flight (1,000 ``async def`` ones per worker) one ``HEXISTS`` per task
    each second, one after another, had been up to 1,000 round trips a second from one thread."""
    import threading
    import time

    from worker.cancel_watch import CancelWatch
    from worker.state import RunnerStatus, Running

    ids = fake_client.submit_many([("ADD", [i, 1]) for i in range(300)])
    assert fake_store.start("w1", _sent(fake_broker, fake_client)) == [1] * 300
    status = RunnerStatus()
    for n, task_id in enumerate(ids):
        status.running[n] = Running(task_id, "ADD", 1, None, None, n,  # type: ignore[arg-type]
                                    lambda kind: None, time.monotonic() + 60, 60)
    assert fake_client.cancel(ids[123]).running
    pipelines = []
    real = fake_store.r.pipeline

    def counted(*args: object, **kwargs: object) -> object:
        pipelines.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fake_store.r, "pipeline", counted)
    monkeypatch.setattr(fake_store.r, "hexists", lambda *a: pytest.fail("one HEXISTS per task"))
    watch = CancelWatch(fake_store, status, threading.Event())
    assert watch.check() is True and len(pipelines) == 1
    assert [n for n, r in status.running.items() if r.cancel_seen is not None] == [123]
    assert watch.check() is False and len(pipelines) == 2  # seen once: not marked again
    assert Cancels(fake_store).requested([]) == set()


def test_the_cancel_watch_reads_the_flags_only_when_the_request_counter_moved(
        fake_client: Client, fake_broker: FakeBroker, fake_store: RedisStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy worker reads one counter a second; its running tasks' flags only after a cancel of a
    running task moved it (then twice: a task whose START had returned but which was not listed
    yet), and every ``FULL_READ_SECONDS`` anyway (a counter lost with a Redis restart)."""
    import threading
    import time

    from worker import cancel_watch
    from worker.cancel_watch import CancelWatch
    from worker.state import RunnerStatus, Running

    ids = fake_client.submit_many([("ADD", [i, 1]) for i in range(4)])
    assert fake_store.start("w1", _sent(fake_broker, fake_client)) == [1] * 4
    status = RunnerStatus()
    for n, task_id in enumerate(ids[:3]):
        status.running[n] = Running(task_id, "ADD", 1, None, None, n,  # type: ignore[arg-type]
                                    lambda kind: None, time.monotonic() + 60, 60)
    reads: list[list[str]] = []
    watch = CancelWatch(fake_store, status, threading.Event())
    real = watch.cancels.requested

    def counted(task_ids: list[str]) -> set[str]:
        reads.append(list(task_ids))
        return real(task_ids)

    monkeypatch.setattr(watch.cancels, "requested", counted)
    assert watch.check() is False and len(reads) == 1  # the first look reads them all (twice)
    assert watch.check() is False and watch.check() is False and len(reads) == 2
    assert fake_client.cancel(ids[3]).running  # not this worker's: read, nothing found
    assert watch.check() is False and len(reads) == 3
    # the cancelled task's START had returned, but the worker listed it only after that read
    status.running[3] = Running(ids[3], "ADD", 1, None, None, 3,  # type: ignore[arg-type]
                                lambda kind: None, time.monotonic() + 60, 60)
    assert watch.check() is True and len(reads) == 4 and status.running[3].cancel_seen
    assert watch.check() is False and len(reads) == 4
    assert fake_client.cancel(ids[1]).running
    assert watch.check() is True and status.running[1].cancel_seen is not None
    assert watch.check() is False and watch.check() is False and len(reads) == 6
    monkeypatch.setattr(cancel_watch, "FULL_READ_SECONDS", 0.0)  # the fallback: read anyway
    assert watch.check() is False and len(reads) == 7
    assert fake_store.get(ids[0]).state is TaskState.IN_PROGRESS


@pytest.mark.parametrize("spoil", ["text", "hash"])
def test_a_spoiled_cancel_counter_neither_loses_a_cancel_nor_stops_the_watch(
        spoil: str, fake_client: Client, fake_broker: FakeBroker, fake_store: RedisStore) -> None:
    """The counter key holds something else (not a number, or another type): ``CANCEL`` still
    flags the running task and answers, and the watch reads the flags every second instead."""
    import threading
    import time

    from worker.cancel_watch import CancelWatch
    from worker.state import RunnerStatus, Running

    key = fake_store.keys.cancel_requests
    if spoil == "text":
        fake_store.r.set(key, "not a number")
    else:
        fake_store.r.hset(key, "a", "b")
    ids = fake_client.submit_many([("ADD", [i, 1]) for i in range(2)])
    assert fake_store.start("w1", _sent(fake_broker, fake_client)) == [1, 1]
    status = RunnerStatus()
    for n, task_id in enumerate(ids):
        status.running[n] = Running(task_id, "ADD", 1, None, None, n,  # type: ignore[arg-type]
                                    lambda kind: None, time.monotonic() + 60, 60)
    watch = CancelWatch(fake_store, status, threading.Event())
    assert watch.cancels.counter() is None
    assert watch.check() is False and watch.check() is False
    assert fake_client.cancel(ids[1]).running
    assert watch.check() is True and status.running[1].cancel_seen is not None
    assert fake_store.r.hexists(fake_store.keys.task(ids[1]), "cancel_requested")
