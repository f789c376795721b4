"""Delays, ETAs, the scheduler and non-blocking retries on the real Kafka and Redis.

Timing bounds here are generous (2 s where the README's benchmark measures the lateness); what is
strict is that nothing starts before it is due, nothing is lost and nothing runs twice.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

import tests.tasks_for_tests  # noqa: F401 - registers FLAKY, BOOM... for the client's validation
from tests.conftest import WorkerProcs
from tests.integration.helpers import wait_ids_final, wait_until
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.models import Task, TaskState

pytestmark = pytest.mark.integration

LATE_BOUND = 2.0
"""A due task starts within this long after its due time in these tests (the benchmark measures
the real distribution: p99 well under 1 s)."""


def _use(real_settings: Settings, workers: WorkerProcs, **overrides: object) -> Client:
    settings = real_settings.with_(**overrides)
    workers.settings = settings
    ensure_topics(settings)
    return Client(settings)


def _started_at(task: Task) -> list[float]:
    return [h.at for h in task.history if h.state is TaskState.IN_PROGRESS]


def _check_on_time(client: Client, ids: list[str]) -> None:
    """Every task completed once, started at or after its due time and within ``LATE_BOUND``."""
    for task_id in ids:
        task = client.get(task_id)
        starts = _started_at(task)
        assert task.state is TaskState.COMPLETED and task.attempt == 1 and len(starts) == 1, task
        assert task.due_at is not None
        assert starts[0] >= task.due_at - 0.01, f"started {task.due_at - starts[0]:.3f} s early"
        assert starts[0] - task.due_at < LATE_BOUND, f"started {starts[0] - task.due_at:.3f} s late"


def test_delays_and_etas_run_at_their_time_and_not_before(real_settings: Settings,
                                                          workers: WorkerProcs) -> None:
    client = _use(real_settings, workers)
    workers.start(1)
    workers.wait_alive(1)
    immediate = client.submit("ADD", [0, 0])  # the pipeline runs: lateness below is the scheduler's
    wait_ids_final(client, [immediate], 60, workers.logs)
    now = datetime.now(UTC)
    delayed = client.submit_many([("ADD", [i, 1]) for i in range(20)], delay=3)
    eta = [client.submit("ADD", [i, 2], eta=now + timedelta(seconds=4)) for i in range(5)]
    eta.append(client.submit("ADD", [9, 9], eta=(now + timedelta(seconds=4)).astimezone().replace(
        tzinfo=None)))  # naive: local time
    text = client.submit_text("ADD 1 1", delay="3s")
    ids = [*delayed, *eta, text]
    assert {client.get(i).state for i in ids} == {TaskState.SCHEDULED}
    wait_ids_final(client, ids, 20, workers.logs)
    _check_on_time(client, ids)
    assert client.get(eta[-1]).due_at == pytest.approx((now + timedelta(seconds=4)).timestamp(),
                                                       abs=0.01)


def test_killed_scheduling_leader_hands_over_and_nothing_is_lost_or_run_twice(
        real_settings: Settings, workers: WorkerProcs) -> None:
    """Two ``--scheduler`` processes and one worker that does not schedule. Tasks come due over
    8 s; the leader is killed with SIGKILL in the middle; the other takes over."""
    client = _use(real_settings, workers, scheduler_lock_ttl=1.0, scheduler_lease=3.0)
    workers.start(1, "--no-scheduler")
    sched_a = workers.start(1, "--scheduler", "--no-supervisor", "--worker-id", "sched-a")[0]
    sched_b = workers.start(1, "--scheduler", "--no-supervisor", "--worker-id", "sched-b")[0]
    workers.wait_alive(1)
    lock = client.store.keys.lock("scheduler")
    wait_until(lambda: client.store.r.get(lock) in ("sched-a", "sched-b"), 15, "a scheduling leader")
    ids = []
    for i in range(80):
        ids += client.submit_many([("ADD", [i, j]) for j in range(5)], delay=1 + i * 0.1)
    time.sleep(3)
    leader = client.store.r.get(lock)
    victim, survivor = (sched_a, "sched-b") if leader == "sched-a" else (sched_b, "sched-a")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(5)
    wait_until(lambda: client.store.r.get(lock) == survivor, 10, "the other scheduler to lead")
    wait_ids_final(client, ids, 40, workers.logs)
    twice = [i for i in ids if len(_started_at(client.get(i))) != 1]
    assert not twice, f"{len(twice)} tasks started more than once"
    assert all(client.get(i).state is TaskState.COMPLETED for i in ids)
    assert [client.get(i).result for i in ids[:5]] == [0, 1, 2, 3, 4]
    wait_until(lambda: client.store.r.zcard(client.store.keys.dispatching) == 0, 10,
               "the dispatching set to drain")
    assert client.store.r.zcard(client.store.keys.due) == 0


def test_a_retrying_task_does_not_block_its_partition(real_settings: Settings,
                                                      workers: WorkerProcs,
                                                      tmp_path: object) -> None:
    """One worker, one partition: a task that fails once, with a 10 s backoff, then tasks behind
    it. They complete during the backoff; the failed one runs again when due, not before."""
    client = _use(real_settings, workers, partitions=1)
    workers.start(1, env={"YADTQ_RETRY_BACKOFF": "10", "YADTQ_TEST_DIR": str(tmp_path)})
    workers.wait_alive(1)
    flaky = client.submit("FLAKY", [uuid.uuid4().hex[:8], 1])
    behind = client.submit_many([("ADD", [i, 1]) for i in range(30)])
    wait_ids_final(client, behind, 40, workers.logs)
    done_behind = max(client.get(i).updated_at for i in behind)
    wait_ids_final(client, [flaky], 60, workers.logs)
    task = client.get(flaky)
    assert (task.state, task.attempt, task.result) == (TaskState.COMPLETED, 2, "ok after 1")
    assert task.due_at is not None
    assert done_behind < task.due_at  # the tasks behind it finished during its backoff
    failed_at = next(h.at for h in task.history if h.state is TaskState.SCHEDULED)
    assert task.due_at - failed_at == pytest.approx(10, abs=0.5)
    assert _started_at(task)[1] >= task.due_at - 0.01


def test_malformed_entries_in_the_due_set_are_reported_not_fatal(real_settings: Settings,
                                                                 workers: WorkerProcs) -> None:
    client = _use(real_settings, workers)
    store = client.store
    bad, unknown = uuid.uuid4().hex, uuid.uuid4().hex
    store.r.hset(store.keys.task(bad), mapping={"id": bad, "state": "scheduled", "attempt": "x"})
    store.r.zadd(store.keys.due, {bad: 0, unknown: 0})
    workers.start(1)
    workers.wait_alive(1)
    good = client.submit_many([("ADD", [i, 1]) for i in range(10)], delay=1)
    wait_ids_final(client, good, 40, workers.logs)
    assert store.r.zcard(store.keys.due) == 0
    wait_until(lambda: "malformed" in workers.logs() and bad in workers.logs(), 5,
               "the malformed entry in the worker's log")
    assert unknown not in workers.logs()  # an unknown id is dropped quietly
    after = client.submit("ADD", [2, 3], delay=0.5)  # the scheduler still runs
    wait_ids_final(client, [after], 10, workers.logs)
    assert client.get(after).result == 5
