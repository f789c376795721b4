"""Cancel on the real Kafka and Redis, with real (supervised) worker processes.

Every task here records each start in a side counter in Redis (``YADTQ_TEST_COUNTS``), so "it never
started" and "it was not retried" are measured, not inferred from the state. One worker on one
partition, so the order of the tasks is the order they run in.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time

import pytest

import tests.tasks_for_tests  # noqa: F401 - registers SPINCOUNT, DEAF, STUCK for the client
from tests.conftest import ROOT, WorkerProcs
from tests.integration.helpers import send_raw, wait_balanced, wait_until
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.errors import TaskFinished, TaskNotFound
from yadtq.models import TaskState
from yadtq.wire import Envelope

pytestmark = pytest.mark.integration

X = TaskState.CANCELLED
QUIET_ENV = {"YADTQ_REPAIR_AFTER": "600", "YADTQ_STUCK_GRACE": "2"}
"""Nothing is old enough for the reconciler during a test; a task that ignores its interrupt is
ended 2 s after it."""


def _setup(real_settings: Settings, workers: WorkerProcs) -> tuple[Client, str]:
    """A client on one partition, one worker running one task at a time (these tests queue tasks
    behind a running one), and the side counter's key."""
    settings = real_settings.with_(partitions=1, concurrency=1)
    workers.settings = settings
    ensure_topics(settings)
    counts = f"{settings.key_prefix}:test-counts"
    workers.start(1, env={**QUIET_ENV, "YADTQ_TEST_COUNTS": counts})
    workers.wait_alive(1)
    client = Client(settings)
    wait_balanced(client, 1, 1, logs=workers.logs)
    return client, counts


def _starts(client: Client, counts: str, key: str) -> int:
    return int(client.store.r.hget(counts, key) or 0)


def _state(client: Client, task_id: str) -> TaskState:
    return client.get(task_id).state


@pytest.mark.timeout(90)
def test_a_queued_task_is_cancelled_and_never_starts(real_settings: Settings,
                                                     workers: WorkerProcs) -> None:
    client, counts = _setup(real_settings, workers)
    blocker = client.submit("SLEEP", [2])
    wait_until(lambda: _state(client, blocker) is TaskState.IN_PROGRESS, 20, "the blocker to start")
    doomed = client.submit("SPINCOUNT", ["doomed", 0])
    after = client.submit("ADD", [2, 3])
    result = client.cancel(doomed)
    assert (result.previous, result.running) == (TaskState.QUEUED, False)
    wait_until(lambda: _state(client, after) is TaskState.COMPLETED, 30,
               f"the task behind it to complete\n{workers.logs()}")
    task = client.get(doomed)
    assert (task.state, task.attempt, task.worker) == (X, 0, None)
    assert _starts(client, counts, "doomed") == 0
    assert "skipped: cancelled" in workers.logs()


@pytest.mark.timeout(120)
def test_a_running_task_is_interrupted_within_about_a_second_and_not_retried(
        real_settings: Settings, workers: WorkerProcs) -> None:
    """SPINCOUNT has max_attempts=3: a cancelled run is not retried. Five cancels, timed from the
    call to the state ``cancelled`` in Redis."""
    client, counts = _setup(real_settings, workers)
    latencies = []
    for i in range(5):
        task_id = client.submit("SPINCOUNT", [f"run{i}", 120])
        wait_until(lambda t=task_id: _state(client, t) is TaskState.IN_PROGRESS, 20,
                   f"task {i} to start\n{workers.logs()}")
        asked = time.monotonic()
        assert client.cancel(task_id).running
        wait_until(lambda t=task_id: _state(client, t) is X, 10,
                   f"task {i} to end cancelled\n{workers.logs()}", interval=0.01)
        latencies.append(time.monotonic() - asked)
        task = client.get(task_id)
        assert (task.attempt, task.error) == (1, "cancelled while running")
    after = client.submit("ADD", [1, 1])
    wait_until(lambda: _state(client, after) is TaskState.COMPLETED, 20, "a later task")
    assert all(_starts(client, counts, f"run{i}") == 1 for i in range(5))  # never retried
    assert all(client.get(f).attempt == 1 for f in [after])
    print(f"cancel -> cancelled: median {statistics.median(latencies):.3f} s, "
          f"max {max(latencies):.3f} s")
    assert max(latencies) < 3.0, latencies  # the watch reads once a second; generous bound


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["DEAF", "STUCK"])
def test_a_task_ignoring_the_cancel_ends_cancelled_and_its_worker_restarts(
        name: str, real_settings: Settings, workers: WorkerProcs) -> None:
    """It swallows the interrupt (DEAF) or blocks in C (STUCK): after stuck_grace (2 s) the worker
    writes it cancelled, commits past it and exits; its supervisor starts a fresh worker, which
    runs the task behind it. The cancelled task is not started again."""
    client, counts = _setup(real_settings, workers)
    doomed = client.submit(name, ["doomed"])
    wait_until(lambda: _starts(client, counts, "doomed") == 1, 20,
               f"{name} to start\n{workers.logs()}")
    first_worker = {w.id for w in client.workers() if w.status.value == "alive"}
    assert client.cancel(doomed).running
    after = client.submit("ADD", [4, 5])
    wait_until(lambda: _state(client, doomed) is X, 20, f"{name} to end\n{workers.logs()}")
    task = client.get(doomed)
    assert task.error is not None and "did not stop within 2 s more" in task.error, task.error
    wait_until(lambda: _state(client, after) is TaskState.COMPLETED, 60,
               f"the task behind it to complete\n{workers.logs()}")
    fresh = {w.id for w in client.workers() if w.status.value == "alive"}
    assert fresh and fresh.isdisjoint(first_worker), (first_worker, fresh)  # a new process
    assert workers.procs[0].poll() is None  # the supervisor itself goes on
    assert _starts(client, counts, "doomed") == 1
    assert client.get(doomed).state is X and client.get(doomed).attempt == 1


@pytest.mark.timeout(90)
def test_a_cancelled_tasks_message_sent_again_never_runs(real_settings: Settings,
                                                         workers: WorkerProcs) -> None:
    """The message of a cancelled task delivered again (the same bytes, sent again to the topic, as
    a group-offset reset or a reconciler re-send would): skipped, the task stays as it was."""
    client, counts = _setup(real_settings, workers)
    blocker = client.submit("SLEEP", [1])
    wait_until(lambda: _state(client, blocker) is TaskState.IN_PROGRESS, 20, "the blocker to start")
    doomed = client.submit("SPINCOUNT", ["doomed", 0])
    client.cancel(doomed)
    first = client.submit("ADD", [1, 2])
    wait_until(lambda: _state(client, first) is TaskState.COMPLETED, 30, "the first pass")
    before = client.store.r.hgetall(client.store.keys.task(doomed))
    task = client.get(doomed)
    send_raw(client.settings, [Envelope(task.id, task.name, task.args, task.created_at).encode()],
             [0])
    second = client.submit("ADD", [3, 4])
    wait_until(lambda: _state(client, second) is TaskState.COMPLETED, 30, "the second pass")
    assert _starts(client, counts, "doomed") == 0
    assert client.store.r.hgetall(client.store.keys.task(doomed)) == before
    assert workers.logs().count(f"task {doomed} skipped: cancelled") == 2


@pytest.mark.timeout(60)
def test_cancelling_a_finished_or_unknown_task_is_an_error(real_settings: Settings,
                                                           workers: WorkerProcs) -> None:
    client, _counts = _setup(real_settings, workers)
    done = client.submit("ADD", [1, 2])
    wait_until(lambda: _state(client, done) is TaskState.COMPLETED, 30, "ADD to complete")
    before = client.store.r.hgetall(client.store.keys.task(done))
    with pytest.raises(TaskFinished, match="already completed"):
        client.cancel(done)
    assert client.store.r.hgetall(client.store.keys.task(done)) == before
    with pytest.raises(TaskNotFound):
        client.cancel("f" * 32)
    # the CLI: exit 8 and 3, one line on stderr each
    env = {**os.environ, **client.settings.to_env()}
    for task_id, code in ((done, 8), ("f" * 32, 3)):
        proc = subprocess.run([sys.executable, "-m", "yadtq.cli", "cancel", task_id], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert (proc.returncode, proc.stdout) == (code, ""), proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("yadtq: ")
    assert client.store.r.hgetall(client.store.keys.task(done)) == before


@pytest.mark.timeout(120)
def test_cancels_racing_starts_end_with_one_final_state_each(real_settings: Settings,
                                                             workers: WorkerProcs) -> None:
    """120 short tasks (50 ms each) run one after another while the test cancels every one of
    them, in order, at a random pace near the worker's: some are cancelled while queued, some
    while running, some are finished first. Every accepted cancel ends ``cancelled`` (never
    started when it was queued, started once when it was running), every refused one is
    ``completed``; each task has exactly one final history entry."""
    client, counts = _setup(real_settings, workers)
    n = 120
    ids = client.submit_many([("SPINCOUNT", [f"r{i}", 0.05]) for i in range(n)])
    wait_until(lambda: _starts(client, counts, "r3") == 1, 30, "the first tasks to run")
    pace = random.Random(13)
    seen: dict[str, TaskState | None] = {}
    for task_id in ids:
        time.sleep(pace.uniform(0, 0.12))  # about the pace of the worker: it runs ahead, then behind
        try:
            seen[task_id] = client.cancel(task_id).previous
        except TaskFinished:
            seen[task_id] = None
    wait_until(lambda: all(_state(client, t).is_final for t in ids), 60,
               f"every task to end\n{workers.logs()}")
    kinds = {"queued": 0, "running": 0, "finished first": 0}
    for i, task_id in enumerate(ids):
        task, starts = client.get(task_id), _starts(client, counts, f"r{i}")
        finals = [h for h in task.history if h.state.is_final]
        assert len(finals) == 1, (task_id, task.history)
        if seen[task_id] is None:
            kinds["finished first"] += 1
            assert (task.state, starts) == (TaskState.COMPLETED, 1), task
        elif seen[task_id] is TaskState.QUEUED:
            kinds["queued"] += 1
            assert (task.state, starts) == (X, 0), task
        else:
            kinds["running"] += 1
            assert (task.state, starts) == (X, 1), task
    print(f"cancels: {kinds}")
    assert kinds["queued"] > 0 and kinds["finished first"] > 0, kinds
