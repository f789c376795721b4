"""A confirmed submit writes the Redis record while Kafka acknowledges the message
(``yadtq.enqueue``): the races that overlap opens, forced, on the real stack with each client.

- the message wins: the worker starts the task before the client's record lands, recreates the
  record from the message and runs it once; the client's late write leaves it as it is;
- the client cannot reach Redis at all: Kafka took the task, so it is not refused; a worker runs it
  and records it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.conftest import WorkerProcs
from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from tests.integration.helpers import wait_ids_final
from tests.polling import wait_until
from tests.ports import free_port
from yadtq import Client, Settings
from yadtq.errors import ServiceUnavailable
from yadtq.models import TaskState
from yadtq.wire import Envelope

pytestmark = pytest.mark.integration
Q, P, C = TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED


def test_the_message_wins_the_race_and_the_task_runs_once(real_client: Client,
                                                          workers: WorkerProcs) -> None:
    workers.start(1)
    original = real_client.store.create
    late: list[list[bool]] = []

    def create_after_the_worker(envelopes: Sequence[Envelope]) -> list[bool]:
        task_id = envelopes[0].id
        wait_until(lambda: real_client.store.get(task_id) is not None, 60,
                   "the worker to start the task before its record is written")
        late.append(original(envelopes))
        return late[-1]

    real_client.store.create = create_after_the_worker  # type: ignore[method-assign]
    task_id = real_client.submit("ADD", [2, 3])
    real_client.store.create = original  # type: ignore[method-assign]
    assert late == [[False]]  # the record was there: left as the worker wrote it
    wait_ids_final(real_client, [task_id], timeout=30, logs=workers.logs)
    task = real_client.get(task_id)
    assert (task.state, task.result, task.attempt) == (C, 5, 1)
    assert [(h.state, h.note) for h in task.history][:2] == [(Q, "record recreated by worker"),
                                                            (P, None)]
    assert [h.state for h in task.history] == [Q, P, C]
    counts = real_client.counts()
    assert (counts[C], counts[Q], counts[P]) == (1, 0, 0), counts


def test_a_client_without_redis_still_enqueues_what_kafka_takes(real_settings: Settings,
                                                                real_client: Client,
                                                                workers: WorkerProcs) -> None:
    workers.start(1)
    cut_off = Client(real_settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        task_id = cut_off.submit("ADD", [40, 2])  # Redis unreachable, Kafka acknowledged
        assert not cut_off.health().redis_ok
    finally:
        cut_off.close()
    wait_ids_final(real_client, [task_id], timeout=60, logs=workers.logs)
    task = real_client.get(task_id)
    assert (task.state, task.result) == (C, 42)
    assert task.history[0].note == "record recreated by worker"


def test_without_redis_or_kafka_the_submit_is_refused(real_settings: Settings) -> None:
    cut_off = Client(real_settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                         kafka_bootstrap=f"127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(ServiceUnavailable):
            cut_off.submit("ADD", [1, 1])
    finally:
        cut_off.close()


def test_wait_returns_what_a_real_worker_wrote(real_client: Client, workers: WorkerProcs) -> None:
    """``Client.wait`` on the real stack: woken by the worker's announcement (the recheck is set
    far beyond the timeout, so only the announcement can end these waits in time)."""
    from yadtq import waiting

    workers.start(1)
    saved, waiting.RECHECK_SECONDS = waiting.RECHECK_SECONDS, 300.0
    try:
        added = real_client.submit("ADD", [2, 3])
        assert (real_client.wait(added, timeout=60).result) == 5
        boom = real_client.submit("BOOM", ["kaboom [b]not markup[/b]"])
        failed = real_client.wait(boom, timeout=60)
        assert failed.state is TaskState.FAILED and "kaboom [b]not markup[/b]" in (failed.error or "")
        nap = real_client.submit("NAP", [2.0])
        with pytest.raises(TimeoutError, match="still (queued|in-progress)"):
            real_client.wait(nap, timeout=0.5)
        assert real_client.wait(nap, timeout=60).result == 2.0
    finally:
        waiting.RECHECK_SECONDS = saved
