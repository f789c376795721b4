"""``@task(isolation="process")`` on the real Kafka and Redis: a process task runs in a child of the
worker, a task blocked in C is killed at its time limit without replacing the worker, a child that
exits is one failed attempt, a cancel kills it, and a CPU-bound process task does not hold the
worker's other tasks."""

from __future__ import annotations

import pytest

import tests.tasks_process  # noqa: F401 - registers the process tasks for the client's validation
from tests.conftest import WorkerProcs
from tests.integration.helpers import wait_ids_final
from tests.polling import eventually
from yadtq import Client, Settings
from yadtq.models import TaskState

pytestmark = pytest.mark.integration


def test_process_tasks_on_the_real_stack(real_settings: Settings, real_client: Client,
                                         workers: WorkerProcs) -> None:
    workers.start(1, "--tasks", "tests.tasks_process", "--concurrency", "4", "--no-supervisor")
    workers.wait_alive(1)
    [worker_pid] = [p.pid for p in workers.procs]

    first = real_client.submit("PPID", [])
    blocked = real_client.submit("PBLOCK", [])
    wait_ids_final(real_client, [first, blocked], 60)
    ran = real_client.get(first)
    assert ran.state is TaskState.COMPLETED and ran.result not in (None, worker_pid)
    stuck = real_client.get(blocked)
    assert stuck.state is TaskState.FAILED and stuck.error == "time limit of 1 s exceeded"

    exits = real_client.submit("PEXIT", [7])
    wait_ids_final(real_client, [exits], 60)
    died = real_client.get(exits)
    assert died.state is TaskState.FAILED
    assert died.error == "the task's process ended (exit status 7)"

    # while one process task holds a CPU for 5 s, 200 thread tasks complete on the same worker
    spin = real_client.submit("PSPIN", [5.0])
    adds = real_client.submit_many([("ADD", [i, 1]) for i in range(200)])
    wait_ids_final(real_client, adds, 60)
    assert [real_client.get(t).result for t in adds] == [i + 1 for i in range(200)]
    assert real_client.get(spin).state is not TaskState.COMPLETED  # the adds did not wait for it
    wait_ids_final(real_client, [spin], 60)
    assert real_client.get(spin).state is TaskState.COMPLETED

    # a cancel kills the running child too: cancelled, never retried
    long = real_client.submit("PSPIN", [60.0])
    assert eventually(lambda: real_client.get(long).state is TaskState.IN_PROGRESS, 30)
    real_client.cancel(long)
    assert eventually(lambda: real_client.get(long).state is TaskState.CANCELLED, 30)

    # the worker was never replaced: the same process, alive, no restart in its log
    assert workers.procs[0].poll() is None and workers.procs[0].pid == worker_pid
    assert "restart" not in workers.logs().lower()
