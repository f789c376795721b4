"""``Client.wait``: woken by the workers' announcement of finished ids (``yadtq.waiting``), with a
read every ``RECHECK_SECONDS`` for final states nothing announces. fakeredis runs the real Lua."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from yadtq import waiting
from yadtq.client import Client
from yadtq.errors import ServiceUnavailable, TaskNotFound
from yadtq.models import Outcome, TaskState
from yadtq.wire import Envelope

C, F = TaskState.COMPLETED, TaskState.FAILED


def finish(client: Client, task_id: str, state: TaskState = C, result: Any = 5) -> None:
    task = client.get(task_id)
    client.store.start("w1", [Envelope(task.id, task.name, task.args, task.created_at)])
    assert client.store.finish("w1", [Outcome(task_id, 1, state, result=result)])


def later(seconds: float, fn: Any, *args: Any) -> threading.Thread:
    t = threading.Timer(seconds, fn, args)
    t.start()
    return t


@pytest.fixture
def no_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads only when woken (and once at the start): a wait that returns was announced."""
    monkeypatch.setattr(waiting, "RECHECK_SECONDS", 120.0)


def test_a_wait_is_woken_by_the_finish(fake_client: Client, no_recheck: None) -> None:
    task_id = fake_client.submit("ADD", [2, 3])
    later(0.3, finish, fake_client, task_id)
    start = time.monotonic()
    task = fake_client.wait(task_id, timeout=60)
    assert (task.state, task.result) == (C, 5)
    assert time.monotonic() - start < 60  # woken, not timed out (the recheck is 120 s)


def test_many_waits_each_get_their_own_task(fake_client: Client, no_recheck: None) -> None:
    ids = fake_client.submit_many([("ADD", [i, 0]) for i in range(20)])
    got: dict[str, Any] = {}

    def wait(task_id: str) -> None:
        got[task_id] = fake_client.wait(task_id, timeout=60).result

    threads = [threading.Thread(target=wait, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for n, task_id in enumerate(reversed(ids)):
        finish(fake_client, task_id, result=n)
    for t in threads:
        t.join(70)
    assert got == {task_id: n for n, task_id in enumerate(reversed(ids))}


def test_a_finished_task_returns_at_once_and_errors_are_clear(fake_client: Client) -> None:
    task_id = fake_client.submit("ADD", [2, 3])
    finish(fake_client, task_id, F, None)
    assert fake_client.wait(task_id, timeout=0).state is F
    with pytest.raises(TaskNotFound):
        fake_client.wait("0" * 32, timeout=5)
    queued = fake_client.submit("ADD", [1, 1])
    with pytest.raises(TimeoutError, match="still queued after 0.2 s"):
        fake_client.wait(queued, timeout=0.2)


def test_a_final_state_nothing_announces_is_found_by_the_recheck(
        fake_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "RECHECK_SECONDS", 0.05)
    task_id = fake_client.submit("ADD", [2, 3])
    later(0.3, lambda: fake_client.cancel(task_id))  # a waiting task cancelled: not announced
    assert fake_client.wait(task_id, timeout=30).state is TaskState.CANCELLED


def test_junk_on_the_channel_does_not_stop_the_listener(fake_client: Client,
                                                         no_recheck: None) -> None:
    task_id = fake_client.submit("ADD", [2, 3])
    channel = fake_client.store.keys.finished

    def junk_then_finish() -> None:
        for junk in ("not json", '{"a": 1}', "[1, 2, null]", '"' + task_id + '"', "\x00\xff"):
            fake_client.store.r.publish(channel, junk)
        finish(fake_client, task_id)

    later(0.3, junk_then_finish)
    assert fake_client.wait(task_id, timeout=60).result == 5


def test_redis_down_is_a_clear_error(redis_down_client: Client) -> None:
    with pytest.raises(ServiceUnavailable, match="Redis unreachable"):
        redis_down_client.wait("a" * 32, timeout=5)


def test_a_retry_is_not_final_so_the_wait_goes_on(fake_client: Client, no_recheck: None) -> None:
    task_id = fake_client.submit("ADD", [2, 3])
    task = fake_client.get(task_id)
    env = Envelope(task.id, task.name, task.args, task.created_at)

    def fail_then_complete() -> None:
        fake_client.store.start("w1", [env])
        fake_client.store.finish("w1", [Outcome(task_id, 1, TaskState.SCHEDULED, delay=0)])
        fake_client.store.transition(task_id, TaskState.SCHEDULED, TaskState.QUEUED, "due")
        fake_client.store.start("w1", [env])
        fake_client.store.finish("w1", [Outcome(task_id, 2, C, result=7)])

    later(0.3, fail_then_complete)
    task = fake_client.wait(task_id, timeout=60)
    assert (task.state, task.result, task.attempt) == (C, 7, 2)


def test_a_wait_after_close_subscribes_again(fake_client: Client, no_recheck: None) -> None:
    first = fake_client.submit("ADD", [1, 1])
    later(0.2, finish, fake_client, first)
    assert fake_client.wait(first, timeout=60).state is C
    fake_client.close()
    second = fake_client.submit("ADD", [2, 2])
    later(0.3, finish, fake_client, second)
    assert fake_client.wait(second, timeout=60).state is C  # woken: the recheck is 120 s
