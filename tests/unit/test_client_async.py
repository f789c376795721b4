"""``submit(wait=False)``: fast single submits whose failures still surface and lose nothing."""

from __future__ import annotations

import pytest

from yadtq import Client
from yadtq.errors import ServiceUnavailable, TaskNotFound
from yadtq.models import TaskState
from yadtq.testing import FakeBroker


def test_unconfirmed_submits_reach_the_topic(fake_client: Client, fake_broker: FakeBroker) -> None:
    ids = [fake_client.submit("ADD", [i, 1], wait=False) for i in range(5)]
    fake_client.flush()
    assert len(fake_broker.messages(fake_client.settings.topic)) == 5
    assert {fake_client.get(i).state for i in ids} == {TaskState.QUEUED}


def test_unconfirmed_submit_refused_by_kafka_is_marked_failed_and_flush_raises(
        fake_client: Client, fake_broker: FakeBroker) -> None:
    fake_broker.available = False
    task_id = fake_client.submit("ADD", [1, 2], wait=False)
    with pytest.raises(ServiceUnavailable, match="1 tasks not enqueued"):
        fake_client.flush()
    task = fake_client.get(task_id)
    assert task.state is TaskState.FAILED and task.error.startswith("not enqueued")
    fake_client.flush()  # reported once


def test_close_flushes_and_reports(fake_client: Client, fake_broker: FakeBroker) -> None:
    fake_broker.available = False
    fake_client.submit("ADD", [1, 2], wait=False)
    with pytest.raises(ServiceUnavailable):
        fake_client.close()


def test_many_unconfirmed_submits_are_recorded_and_sent_in_batches(
        fake_client: Client, fake_broker: FakeBroker) -> None:
    ids = [fake_client.submit("ADD", [i, i], wait=False) for i in range(1500)]
    fake_client.flush()
    assert len(set(ids)) == 1500
    assert len(fake_broker.messages(fake_client.settings.topic)) == 1500
    assert fake_client.counts()[TaskState.QUEUED] == 1500


def test_unconfirmed_submits_while_redis_is_down_are_neither_recorded_nor_sent(
        fake_client: Client, fake_broker: FakeBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(_envelopes: object) -> None:
        raise ServiceUnavailable("Redis unreachable (test)")

    monkeypatch.setattr(fake_client.store, "create", down)
    task_id = fake_client.submit("ADD", [1, 2], wait=False)
    with pytest.raises(ServiceUnavailable, match="not enqueued"):
        fake_client.flush()
    monkeypatch.undo()
    assert fake_broker.messages(fake_client.settings.topic) == []
    with pytest.raises(TaskNotFound):
        fake_client.get(task_id)


def test_a_lone_submit_goes_out_at_once_and_a_burst_waits_to_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The background submitter lingers only after a batch of several tasks (traffic is fast);
    a task submitted alone is recorded and sent without waiting."""
    import threading
    import time

    from yadtq import batcher
    from yadtq.wire import Envelope

    naps: list[float] = []
    monkeypatch.setattr(batcher.time, "sleep", naps.append)
    sent: list[int] = []
    gate = threading.Event()

    def create(envs: object) -> None:
        gate.wait(5)  # hold the first batch so the burst queues up behind it

    sub = batcher.BackgroundSubmitter(create, lambda envs: sent.append(len(envs)),
                                      lambda timeout: None, lambda env, exc: None)
    try:
        env = Envelope("0" * 32, "ADD", (1, 2), time.time())
        sub.add([env])          # alone: taken at once
        while not sub._in_flight:  # until the flusher holds it (time.sleep is patched)
            threading.Event().wait(0.001)
        sub.add([env] * 5)      # arrives while the first is in flight: one batch of 5
        gate.set()
        sub.flush()
        assert sent == [1, 5]
        assert naps == [batcher.BUSY_LINGER_SECONDS]  # after the batch of 5 only
    finally:
        gate.set()
        sub.close()


def test_exit_drain_runs_before_atexit_callbacks(monkeypatch: pytest.MonkeyPatch,
                                                 fake_client: Client) -> None:
    """The drain is a threading exit hook: those run before ``atexit`` callbacks such as
    kafka-python's, which closes the producer."""
    import threading

    hooks: list[object] = []
    monkeypatch.setattr(threading, "_register_atexit", lambda fn, *a: hooks.append((fn, a)))
    fake_client.submit("ADD", [1, 2], wait=False)
    fake_client.submit("ADD", [1, 3], wait=False)
    assert len(hooks) == 1  # one hook per client
    fake_client.flush()


def test_exit_drain_sends_and_says_loudly_what_it_could_not(
        fake_client: Client, fake_broker: FakeBroker, capsys: pytest.CaptureFixture[str]) -> None:
    import weakref

    from yadtq import batcher

    fake_client.submit("ADD", [1, 2], wait=False)
    batcher.flush_at_exit(weakref.ref(fake_client))
    assert len(fake_broker.messages(fake_client.settings.topic)) == 1
    assert capsys.readouterr().err == ""
    fake_broker.available = False
    fake_client.submit("ADD", [1, 2], wait=False)
    fake_client.submit("ADD", [1, 3], wait=False)
    batcher.flush_at_exit(weakref.ref(fake_client))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "yadtq: WARNING at exit: 2 tasks not enqueued" in err


def test_a_permanent_redis_error_while_marking_a_task_failed_does_not_stop_the_submitter(
        fake_client: Client, fake_broker: FakeBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from yadtq.errors import StoreError

    def refused(*_a: object, **_k: object) -> int:
        raise StoreError("Redis refused: OOM command not allowed")

    monkeypatch.setattr(fake_client.store, "transition", refused)
    fake_broker.available = False
    fake_client.submit("ADD", [1, 2], wait=False)
    with pytest.raises(ServiceUnavailable, match="1 tasks not enqueued"):
        fake_client.flush(timeout=3)
    fake_broker.available = True
    fake_client.submit("ADD", [1, 3], wait=False)
    fake_client.flush(timeout=3)  # the submitter thread is still there
    assert len(fake_broker.messages(fake_client.settings.topic)) == 1


def test_health_reports_a_permanent_redis_error(fake_client: Client,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from yadtq.errors import StoreError

    def refused() -> None:
        raise StoreError("Redis refused: NOPERM no permissions to run the 'ping' command")

    monkeypatch.setattr(fake_client.store, "ping", refused)
    health = fake_client.health()
    assert not health.redis_ok and "NOPERM" in (health.redis_error or "")
