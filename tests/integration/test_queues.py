"""Named queues on the real Kafka and Redis: each queue its own topic, created on first use,
consumed only by the workers started with it, with each Kafka client. Hostile cases first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, WorkerProcs
from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from tests.polling import wait_until
from yadtq import Client
from yadtq.broker import KafkaAdmin
from yadtq.models import TaskState
from yadtq.settings import Settings


def _run(args: list[str], settings: Settings, module: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_a_bad_queue_name_is_refused_by_the_worker_and_the_cli(real_settings: Settings) -> None:
    worker = _run(["--queues", "default,a.b", "--no-supervisor"], real_settings, "worker.main")
    assert worker.returncode == 2 and "invalid queue name 'a.b'" in worker.stderr
    cli = _run(["submit", "ADD", "1", "2", "--queue", "../x"], real_settings, "yadtq.cli")
    assert cli.returncode == 2 and "invalid queue name" in cli.stderr
    assert Client(real_settings).total() == 0


def test_queues_are_routed_and_run_only_by_their_workers(real_client: Client,
                                                         workers: WorkerProcs) -> None:
    """A worker of ``default`` never receives a message of ``emails``: its tasks stay queued, never
    started, and the group commits nothing on their topic, until a worker of ``emails`` starts."""
    settings = real_client.settings
    workers.start(1, "--worker-id", "w-default", "--queues", "default")
    workers.wait_alive(1)
    mails = real_client.submit_many([("ADD", [i, 1]) for i in range(20)], queue="emails")
    plain = real_client.submit_many([("ADD", [i, 2]) for i in range(20)])
    wait_until(lambda: all(real_client.get(i).state is TaskState.COMPLETED for i in plain), 90,
               "the default queue's tasks to complete", interval=0.2)
    admin = KafkaAdmin(settings)
    try:
        topic = f"{settings.topic}.emails"
        assert topic in admin.list_topics()  # created by the first submit to it
        assert sum(admin.end_offsets(admin.partitions(topic), topic).values()) == 20
        assert admin.committed(topic) == {}  # never consumed by the default worker
        for task in (real_client.get(i) for i in mails):
            assert (task.state, task.attempt, task.worker, task.queue) == \
                (TaskState.QUEUED, 0, None, "emails")
        workers.start(1, "--worker-id", "w-emails", "--queues", "emails")
        wait_until(lambda: all(real_client.get(i).state is TaskState.COMPLETED for i in mails), 90,
                   "the emails queue's tasks to complete", interval=0.2)
        assert {real_client.get(i).worker for i in mails} == {"w-emails"}
        assert {real_client.get(i).worker for i in plain} == {"w-default"}
        assert [real_client.get(i).result for i in mails] == [i + 1 for i in range(20)]
        wait_until(lambda: sum(admin.committed(topic).values()) == 20, 60,
                   "the emails topic to be committed")
    finally:
        admin.close()


def test_a_worker_started_before_its_queue_exists_receives_its_first_tasks(
        real_client: Client, workers: WorkerProcs) -> None:
    """The worker creates its queues' topics at start: a subscription to a missing topic would
    only see it at kafka-python's next metadata refresh (5 minutes)."""
    workers.start(1, "--worker-id", "w-new", "--queues", "fresh")
    workers.wait_alive(1)
    ids = real_client.submit_many([("ADD", [i, i]) for i in range(5)], queue="fresh")
    wait_until(lambda: all(real_client.get(i).state is TaskState.COMPLETED for i in ids), 90,
               "the new queue's tasks to complete", interval=0.2)


def test_a_worker_restarted_with_other_queues(real_client: Client, workers: WorkerProcs,
                                              tmp_path: Path) -> None:
    """Restarted from ``--queues a`` to ``--queues b``: it runs b's tasks, leaves a's new ones
    queued (nobody consumes a now), and nothing runs twice."""
    (first,) = workers.start(1, "--worker-id", "w1", "--queues", "a")
    done_a = real_client.submit_many([("ADD", [i, 0]) for i in range(5)], queue="a")
    wait_until(lambda: all(real_client.get(i).state is TaskState.COMPLETED for i in done_a), 90,
               "queue a's tasks to complete", interval=0.2)
    workers.stop()
    later_a = real_client.submit_many([("ADD", [i, 0]) for i in range(5)], queue="a")
    workers.start(1, "--worker-id", "w1", "--queues", "b")
    b = real_client.submit_many([("ADD", [i, 0]) for i in range(5)], queue="b")
    wait_until(lambda: all(real_client.get(i).state is TaskState.COMPLETED for i in b), 90,
               "queue b's tasks to complete", interval=0.2)
    assert {real_client.get(i).state for i in later_a} == {TaskState.QUEUED}
    assert all(real_client.get(i).attempt == 1 for i in done_a + b)
