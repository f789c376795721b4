"""Several tasks in flight per worker on the real Kafka and Redis (issue 12): observed at once,
finishing out of order within one partition, a SIGKILL in the middle redelivering exactly the
unfinished ones, a long task not holding the short ones behind it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import redis

import tests.tasks_concurrency  # noqa: F401 - registers SPAN, GATED for the client's validation
from tests.conftest import WorkerProcs
from tests.integration.helpers import wait_ids_final
from tests.polling import eventually
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.broker_types import kafka_offsets
from yadtq.models import TaskState

pytestmark = pytest.mark.integration

TASKS = "tests.tasks_concurrency"
FINAL = {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED}


@pytest.fixture
def one_partition(real_settings: Settings, workers: WorkerProcs) -> Iterator[tuple[Client, str]]:
    """A client on a one-partition topic (every task on the same partition), and the name of the
    hash the tasks record into (under the test's prefix, removed with it)."""
    settings = real_settings.with_(partitions=1, commit_after=0.2)
    workers.settings = settings
    ensure_topics(settings)
    client = Client(settings)
    yield client, f"{settings.key_prefix}:test:spans"
    client.close()


def start(workers: WorkerProcs, spans: str, concurrency: int, *extra: str) -> None:
    workers.start(1, "--tasks", TASKS, "--concurrency", str(concurrency), "--no-supervisor", *extra,
                  env={"YADTQ_TEST_SPANS": spans})


def spans_of(settings: Settings, spans: str) -> dict[str, str]:
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    return r.hgetall(spans)


def most_at_once(fields: dict[str, str], keys: list[str]) -> int:
    events = sorted([(float(fields[f"{k}:start"]), 1) for k in keys] +
                    [(float(fields[f"{k}:end"]), -1) for k in keys])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def committed(settings: Settings) -> dict[int, int]:
    offsets = kafka_offsets(settings)
    try:
        return offsets.committed()
    finally:
        offsets.close()


def test_n_tasks_from_one_partition_run_at_once(one_partition: tuple[Client, str],
                                                workers: WorkerProcs) -> None:
    client, spans = one_partition
    start(workers, spans, 4)
    keys = [f"s{i}" for i in range(12)]
    ids = client.submit_many([("SPAN", [k, 1.0]) for k in keys])
    wait_ids_final(client, ids, 90)
    assert all(client.get(i).state is TaskState.COMPLETED for i in ids)
    fields = spans_of(client.settings, spans)
    assert most_at_once(fields, keys) == 4  # observed: 4 at once, never more
    assert all(fields[f"{k}:runs"] == "1" for k in keys)


def test_a_long_task_does_not_hold_the_short_ones_behind_it(one_partition: tuple[Client, str],
                                                            workers: WorkerProcs) -> None:
    client, spans = one_partition
    start(workers, spans, 2)
    long_id = client.submit("GATED", ["long"])
    short = client.submit_many([("SPAN", [f"s{i}", 0.01]) for i in range(30)])
    r = redis.Redis.from_url(client.settings.redis_url)
    try:
        assert eventually(lambda: all(client.get(i).state is TaskState.COMPLETED for i in short),
                          60)
        assert client.get(long_id).state is TaskState.IN_PROGRESS
        time.sleep(1.0)
        assert committed(client.settings).get(0, 0) == 0  # not past the running task
    finally:
        r.hset(spans, "open:long", 1)
    wait_ids_final(client, [long_id], 30)
    assert client.get(long_id).state is TaskState.COMPLETED
    assert eventually(lambda: committed(client.settings).get(0) == 31, 30, 0.1)


def test_sigkill_with_out_of_order_completion_redelivers_exactly_the_unfinished(
        one_partition: tuple[Client, str], workers: WorkerProcs) -> None:
    """One partition: short tasks around two that wait. The short ones finish out of order, past
    the waiting ones; the worker is SIGKILLed; a new worker runs the two waiting tasks again
    (attempt 2) and no short one (each ran once); every task ends with one outcome."""
    client, spans = one_partition
    start(workers, spans, 4)
    plan = ([("SPAN", ["a0", 0.01])] + [("GATED", ["A"])] +
            [("SPAN", [f"b{i}", 0.01]) for i in range(10)] + [("GATED", ["B"])] +
            [("SPAN", [f"c{i}", 0.01]) for i in range(10)])
    ids = client.submit_many(plan)
    keys = [args[0] for _, args in plan]
    gated_ids = [ids[1], ids[12]]
    short_ids = [i for i in ids if i not in gated_ids]
    assert eventually(lambda: all(client.get(i).state is TaskState.COMPLETED for i in short_ids),
                      60)
    assert [client.get(i).state for i in gated_ids] == [TaskState.IN_PROGRESS] * 2
    assert eventually(lambda: committed(client.settings).get(0) == 1, 30)  # at task A, no further
    proc = workers.procs[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(0.5)
    assert committed(client.settings).get(0) == 1
    start(workers, spans, 4)
    fields = {}

    def both_restarted() -> bool:
        nonlocal fields
        fields = spans_of(client.settings, spans)
        return fields.get("A:runs") == "2" and fields.get("B:runs") == "2"

    assert eventually(both_restarted, 60, 0.1)
    r = redis.Redis.from_url(client.settings.redis_url)
    r.hset(spans, mapping={"open:A": 1, "open:B": 1})
    wait_ids_final(client, ids, 60)
    fields = spans_of(client.settings, spans)
    runs = {k: int(fields[f"{k}:runs"]) for k in keys}
    assert runs == {k: 2 if k in ("A", "B") else 1 for k in keys}
    for task_id in ids:
        task = client.get(task_id)
        assert task.state is TaskState.COMPLETED
        finals = [e for e in task.history if e.state in FINAL]
        assert len(finals) == 1, (task_id, [(e.state.value, e.attempt) for e in task.history])
        assert task.attempt == (2 if task_id in gated_ids else 1)
    assert eventually(lambda: committed(client.settings).get(0) == len(plan), 30, 0.1)


def test_async_tasks_run_many_at_once_with_one_thread(one_partition: tuple[Client, str],
                                                      workers: WorkerProcs) -> None:
    """``--concurrency 1``: one runner thread, yet 40 one-second coroutines overlap."""
    client, spans = one_partition
    start(workers, spans, 1)
    keys = [f"a{i}" for i in range(40)]
    ids = client.submit_many([("ASPAN", [k, 1.0]) for k in keys])
    wait_ids_final(client, ids, 90)
    assert all(client.get(i).state is TaskState.COMPLETED for i in ids)
    fields = spans_of(client.settings, spans)
    assert most_at_once(fields, keys) >= 20
    assert all(fields[f"{k}:runs"] == "1" for k in keys)
    assert eventually(lambda: committed(client.settings).get(0) == 40, 30, 0.1)
