"""Priorities on the real Kafka and Redis, with each Kafka client: the order under a saturating
load (high tasks overtake a normal backlog, low ones are held back but not starved). The
per-level assignment: tests/integration/test_assignor.py."""

from __future__ import annotations

from tests.conftest import WorkerProcs
from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from tests.polling import wait_until
from yadtq import Client
from yadtq.models import TaskState


def _finished(client: Client, ids: list[str]) -> list[float]:
    out = []
    for i in ids:
        task = client.get(i)
        assert task.state is TaskState.COMPLETED, (i, task.state, task.error)
        out.append(task.history[-1].at)
    return out


def test_high_overtakes_a_normal_backlog_and_low_is_not_starved(real_client: Client,
                                                                workers: WorkerProcs) -> None:
    """One worker, two threads, a backlog of 20 ms tasks at ``normal``; 20 ``high`` and 10 ``low``
    tasks submitted once it is saturated. The highs all finish while most of the backlog still
    waits; the lows are held back, yet each gets its turns (``priority_max_wait`` 1 s) and they
    all finish before the backlog does."""
    workers.start(1, "--worker-id", "w-prio", "--concurrency", "2",
                  env={"YADTQ_PRIORITY_MAX_WAIT": "1"})
    workers.wait_alive(1)
    backlog = real_client.submit_many([("NAP", [0.02]) for _ in range(300)])
    wait_until(lambda: real_client.counts().get(TaskState.COMPLETED, 0) >= 10, 60,
               "the worker to be busy with the backlog", interval=0.05)
    high = real_client.submit_many([("NAP", [0.02]) for _ in range(20)], priority="high")
    low = real_client.submit_many([("NAP", [0.02]) for _ in range(10)], priority="low")
    everything = backlog + high + low
    wait_until(lambda: real_client.counts().get(TaskState.COMPLETED, 0) == len(everything), 120,
               "every task to complete", interval=0.2)
    normal_done = sorted(_finished(real_client, backlog))
    last_high = max(_finished(real_client, high))
    after = sum(1 for t in normal_done if t > last_high)
    assert after >= 100, f"only {after} of 300 normal tasks finished after the last high one"
    low_done = _finished(real_client, low)
    assert max(low_done) < normal_done[-1], "a low task waited for the whole normal backlog"
    assert {real_client.get(i).priority for i in high} == {"high"}
