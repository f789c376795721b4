"""A worker process that grew past its memory limit, or ran its number of tasks, is replaced
warm (``worker/recycle.py``), on the real Kafka and Redis, the worker under its supervisor.

Without a limit, a worker whose tasks leak grows until the kernel's OOM killer SIGKILLs it: every
task in flight dies with it and comes back a suspect. With one, the worker finishes what it runs,
hands back what waits, commits, and a fresh process takes over at once: nothing runs twice."""

from __future__ import annotations

from collections import Counter

import pytest

import tests.tasks_for_tests  # noqa: F401 - registers HOG for the client's validation
from tests.conftest import WorkerProcs
from tests.integration.helpers import wait_ids_final
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.models import TaskState

pytestmark = pytest.mark.integration


def _client(real_settings: Settings, workers: WorkerProcs) -> Client:
    settings = real_settings.with_(partitions=1)
    workers.settings = settings
    ensure_topics(settings)
    return Client(settings)


def _ran_by(client: Client, ids: list[str]) -> Counter[str]:
    """How many of ``ids`` each worker process completed; every one completed in its first
    attempt, with its result."""
    by: Counter[str] = Counter()
    for i, task_id in enumerate(ids):
        task = client.get(task_id)
        assert (task.state, task.attempt, task.result) == (TaskState.COMPLETED, 1, i + 1), task
        by[task.worker or "?"] += 1
    return by


@pytest.mark.timeout(180)
def test_a_worker_over_its_memory_limit_is_replaced_warm(real_settings: Settings,
                                                         workers: WorkerProcs) -> None:
    """12 tasks that each keep 40 MiB, one worker limited to 160 MiB: it is replaced every few
    tasks, each task runs once (attempt 1: a warm stop charges no start) and completes. Without
    the limit one process runs all 12 and grows past 500 MiB."""
    client = _client(real_settings, workers)
    ids = client.submit_many([("HOG", [40, i]) for i in range(12)])
    workers.start(1, "--concurrency", "2", env={"YADTQ_MAX_MEMORY_MB": "160"})
    wait_ids_final(client, ids, timeout=150, logs=workers.logs)
    by = _ran_by(client, ids)
    assert len(by) >= 3, f"ran by {dict(by)}\n{workers.logs()}"
    assert "over its memory limit" in workers.logs()


@pytest.mark.timeout(180)
def test_a_worker_is_replaced_after_its_number_of_tasks(real_settings: Settings,
                                                        workers: WorkerProcs) -> None:
    """``YADTQ_MAX_TASKS_PER_PROCESS=5``: 15 tasks run by at least 3 processes, none more than 5
    plus the one it had in hand when it reached them, each once (attempt 1)."""
    client = _client(real_settings, workers)
    ids = client.submit_many([("NAP", [0.2]) for _ in range(15)])  # not fast: one start each
    workers.start(1, "--concurrency", "1", env={"YADTQ_MAX_TASKS_PER_PROCESS": "5"})
    wait_ids_final(client, ids, timeout=150, logs=workers.logs)
    by: Counter[str] = Counter()
    for task_id in ids:
        task = client.get(task_id)
        assert (task.state, task.attempt, task.result) == (TaskState.COMPLETED, 1, 0.2), task
        by[task.worker or "?"] += 1
    assert len(by) >= 3 and max(by.values()) <= 6, f"ran by {dict(by)}\n{workers.logs()}"
    assert "ran 5 tasks (the limit is 5 per process)" in workers.logs()
