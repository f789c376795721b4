"""The pipeline end to end on the real Kafka and Redis, with real worker processes, once with each
Kafka client (kafka-python, confluent-kafka)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import ROOT, WorkerProcs
from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from tests.integration.helpers import wait_all_final, wait_balanced, wait_until
from yadtq import Client, Settings
from yadtq.broker import TaskProducer
from yadtq.errors import ServiceUnavailable
from yadtq.models import TaskState

pytestmark = pytest.mark.integration


def test_thousand_tasks_three_workers(real_client: Client, workers: WorkerProcs) -> None:
    """1,000 tasks through 3 real workers: all completed, right results, every worker worked."""
    workers.start(3)
    wait_balanced(real_client, 3, real_client.settings.partitions, logs=workers.logs)
    expected: dict[str, int] = {}
    for i in range(100):  # one at a time, like a program would
        expected[real_client.submit("ADD", [i, 7])] = i + 7
    items = [("MUL", [i, 3]) for i in range(900)]
    for chunk in range(0, 900, 300):
        ids = real_client.submit_many(items[chunk:chunk + 300])
        for task_id, (_, (a, b)) in zip(ids, items[chunk:chunk + 300], strict=True):
            expected[task_id] = a * b
    wait_all_final(real_client, 1000, timeout=60)
    confluent = real_client.settings.kafka_client == "confluent"
    assert type(real_client._get_producer()).__name__ == (
        "ConfluentProducer" if confluent else "TaskProducer")
    started = "".join(f.read_text(errors="replace") for f in workers.log_dir.glob("worker-*.log"))
    assert started.count("Kafka consumer ConfluentConsumer" if confluent
                         else "Kafka consumer TaskConsumer") == 3, workers.logs()

    counts = real_client.counts()
    assert counts[TaskState.COMPLETED] == 1000, counts
    assert counts[TaskState.QUEUED] == counts[TaskState.IN_PROGRESS] == 0
    by_worker: Counter[str] = Counter()
    for task_id, value in expected.items():
        task = real_client.get(task_id)
        assert task.state is TaskState.COMPLETED and task.result == value, task
        assert [h.state for h in task.history] == [TaskState.QUEUED, TaskState.IN_PROGRESS,
                                                   TaskState.COMPLETED], task.history
        assert task.attempt == 1
        by_worker[task.worker or "?"] += 1
    assert len(by_worker) == 3 and min(by_worker.values()) > 0, by_worker
    # the heartbeats report the same split once they catch up
    wait_until(lambda: {w.id: w.done for w in real_client.workers()} == dict(by_worker), 10,
               f"heartbeat counts to match {dict(by_worker)}")


def test_cli_submit_wait_and_user_tasks(real_client: Client, workers: WorkerProcs) -> None:
    workers.start(1)
    workers.wait_alive(1)
    env = workers.env()
    cli = [sys.executable, "-m", "yadtq.cli"]
    out = subprocess.run([*cli, "submit", "add", "2", "3", "--wait", "30"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5"
    # a task only the worker knows (registered by --tasks), learned by the CLI from Redis
    out = subprocess.run([*cli, "submit", "ECHO", "hello world", "--wait", "30"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello world"
    out = subprocess.run([*cli, "submit", "DIV", "1", "0"], env=env, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    task_id = out.stdout.strip()
    wait_until(lambda: real_client.get(task_id).state is TaskState.FAILED, 30, "DIV to fail")
    assert real_client.get(task_id).error == "division by zero"
    out = subprocess.run([*cli, "view", task_id], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert "division by zero" in out.stdout and "failed" in out.stdout


def test_submit_when_kafka_is_unreachable(real_settings: Settings) -> None:
    settings = real_settings.with_(kafka_bootstrap="127.0.0.1:1")
    client = Client(settings)
    with pytest.raises(ServiceUnavailable, match="not enqueued"):
        client.submit("ADD", [1, 2])
    counts = client.counts()
    assert counts[TaskState.QUEUED] == 0 and counts[TaskState.FAILED] == 1
    assert client.list()[0].error.startswith("not enqueued")


def test_poison_messages_are_dead_lettered(real_client: Client, workers: WorkerProcs) -> None:
    settings = real_client.settings
    producer = TaskProducer(settings)
    bad = [b"not json", b'{"v": 99}', b'{"v":1,"id":"' + b"a" * 32 + b'","name":"os.system",'
           b'"args":["rm -rf /"],"created_at":1}', b"x" * 70000, b'[1,2,3]']
    for value in bad:
        producer.send_raw(settings.topic, value)
    producer.close()
    good = real_client.submit("ADD", [20, 22])
    workers.start(1)
    wait_until(lambda: real_client.get(good).state is TaskState.COMPLETED, 40, "good task")
    assert real_client.get(good).result == 42
    from kafka import KafkaConsumer  # test-only reader of the dead-letter topic

    consumer = KafkaConsumer(settings.dead_letter_topic, bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    reasons = [m.value for m in consumer]
    consumer.close()
    assert len(reasons) == len(bad), reasons
    assert any(b"unknown task 'os.system'" in r for r in reasons)
    for p in workers.procs:
        assert p.poll() is None, "the worker must keep running"


def test_warm_shutdown_finishes_the_running_task(real_client: Client,
                                                  workers: WorkerProcs) -> None:
    (proc,) = workers.start(1)
    workers.wait_alive(1)
    task_id = real_client.submit("NAP", [1.5])
    wait_until(lambda: real_client.get(task_id).state is TaskState.IN_PROGRESS, 30, "start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    task = real_client.get(task_id)
    assert task.state is TaskState.COMPLETED and task.result == 1.5
    assert real_client.workers() == []  # a clean exit removes the heartbeat at once


def test_sigkilled_worker_turns_dead_and_its_task_is_redone(real_client: Client,
                                                            workers: WorkerProcs) -> None:
    first, = workers.start(1)
    workers.wait_alive(1)
    task_id = real_client.submit("NAP", [3])
    wait_until(lambda: real_client.get(task_id).state is TaskState.IN_PROGRESS, 30, "start")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    t_kill = time.monotonic()
    workers.start(1)
    wait_until(lambda: real_client.get(task_id).state is TaskState.COMPLETED, 60, "redo")
    recovery = time.monotonic() - t_kill
    task = real_client.get(task_id)
    assert task.attempt == 2 and task.result == 3
    wait_until(lambda: any(w.status.value == "dead" for w in real_client.workers()), 15,
               "the killed worker to show dead")
    print(f"recovered in {recovery:.1f}s")


def test_task_longer_than_max_poll_interval_runs_once(settings_factory, tmp_path) -> None:
    """The kq#15 / kafka-python#746 bug: a task outlasting max.poll.interval.ms must not be
    redelivered. Workers poll (paused) while the task runs, so it stays one attempt."""
    settings = settings_factory(max_poll_interval_ms=3000, session_timeout_ms=3000)
    from yadtq.broker import ensure_topics

    ensure_topics(settings)
    client = Client(settings)
    pool = WorkerProcs(settings, tmp_path)
    try:
        pool.start(2)
        wait_balanced(client, 2, settings.partitions, logs=pool.logs)
        logs = sorted(tmp_path.glob("worker-*.log"))
        offsets = {f: f.stat().st_size for f in logs}  # rebalances before this are the start-up
        long_id = client.submit("NAP", [8])
        short = [client.submit("ADD", [i, i]) for i in range(20)]
        wait_until(lambda: client.get(long_id).state is TaskState.COMPLETED, 40, "the long task")
        wait_until(lambda: all(client.get(t).state is TaskState.COMPLETED for t in short), 20,
                   "the short tasks")
        task = client.get(long_id)
        assert task.attempt == 1, task.history
        assert [h.state for h in task.history] == [TaskState.QUEUED, TaskState.IN_PROGRESS,
                                                   TaskState.COMPLETED]
        after = "".join(f.read_bytes()[offsets[f]:].decode(errors="replace") for f in logs)
        assert "revoked" not in after, after  # no rebalance while the long task ran
    finally:
        pool.stop()
        client.close()
