"""The reconciler over fakeredis (real Lua) and the in-memory Kafka: it re-sends exactly the tasks
that nothing will deliver, and leaves alone the ones a message or a live worker still stands behind."""

from __future__ import annotations

import threading
import time

import pytest

import worker.repair as repair_module
from tests.unit.test_worker import C, Harness, P, Q
from worker.outbox import Outbox
from worker.repair import Reconciler
from yadtq.models import Beat, TaskState
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope


@pytest.fixture
def h(fake_settings: Settings, fake_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setattr(repair_module, "SEND_MARGIN_SECONDS", 0.0)
    settings = fake_settings.with_(repair_after=0.05, repair_interval=0.1)
    return Harness(settings, RedisStore(settings, fake_store.r), FakeBroker(partitions=2))


def reconciler(h: Harness, name: str = "r1") -> Reconciler:
    return Reconciler(h.settings, h.store, h.broker.offsets,
                      Outbox(h.settings, h.broker.producer, name), name, threading.Event())


def recorded_only(h: Harness, n: int) -> list[str]:
    """Tasks whose client died after writing the record, before sending the message."""
    envs = [Envelope(f"{i:032x}", "ADD", (i, 1), time.time()) for i in range(1, n + 1)]
    h.store.create(envs)
    return [e.id for e in envs]


def test_queued_tasks_with_no_message_are_resent_and_run(h: Harness) -> None:
    sent = [h.submit("ADD", i, 2) for i in range(4)]
    h.run()  # consumes and commits everything that was sent
    lost = recorded_only(h, 5)
    time.sleep(0.1)
    r = reconciler(h)
    done = r.run_once()
    assert done is not None and (done.resent_queued, done.requeued_in_progress) == (5, 0)
    h.run()
    assert [h.get(i).state for i in sent + lost] == [C] * 9
    assert h.get(lost[0]).history[1].note is not None
    assert "re-sent by the reconciler" in (h.get(lost[0]).history[1].note or "")
    stats = h.store.repairs()
    assert stats.resent_queued == 5 and stats.runs >= 1 and stats.last_run_at is not None
    again = r.run_once()  # nothing left to repair, and nothing repaired twice
    assert again is not None and again.resent_queued == 0


def test_a_task_whose_message_waits_in_kafka_is_left_alone(h: Harness) -> None:
    waiting = [h.submit("ADD", i, 2) for i in range(3)]  # sent, never consumed
    time.sleep(0.1)
    done = reconciler(h).run_once()
    assert done is not None and done.resent_queued == 0
    assert len(h.broker.messages(h.settings.topic)) == 3
    assert [h.get(i).state for i in waiting] == [Q] * 3


def test_a_snapshot_older_than_the_change_does_not_count(h: Harness,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The end offsets must be read after the task's last change plus the producer's delivery
    time: a message still being sent is not behind an older snapshot."""
    monkeypatch.setattr(repair_module, "SEND_MARGIN_SECONDS", 3600.0)
    recorded_only(h, 2)
    time.sleep(0.1)
    done = reconciler(h).run_once()
    assert done is not None and done.resent_queued == 0


def test_in_progress_tasks_of_a_dead_worker_are_requeued(h: Harness) -> None:
    ids = [h.submit("ADD", i, 2) for i in range(3)]
    h.run()
    # Redis lost the outcome of one (AOF): in-progress for a worker that is gone
    h.store.r.hset(h.store.keys.task(ids[0]), mapping={"state": "in-progress", "worker": "gone-1"})
    h.store.r.zrem(h.store.keys.state_index("completed"), ids[0])
    h.store.r.zadd(h.store.keys.state_index("in-progress"), {ids[0]: 1.0})
    time.sleep(0.1)
    done = reconciler(h).run_once()
    assert done is not None and done.requeued_in_progress == 1
    assert h.get(ids[0]).state is Q
    h.run()
    task = h.get(ids[0])
    assert task.state is C and task.attempt == 2


def test_a_task_a_live_worker_is_running_is_left_alone(h: Harness) -> None:
    ids = [h.submit("ADD", i, 2) for i in range(2)]
    h.run()
    key = h.store.keys.task(ids[0])
    h.store.r.hset(key, mapping={"state": "in-progress", "worker": "busy-1"})
    h.store.r.zrem(h.store.keys.state_index("completed"), ids[0])
    h.store.r.zadd(h.store.keys.state_index("in-progress"), {ids[0]: 1.0})
    h.store.heartbeat(Beat("busy-1", "h", 1, time.time(), ids[0], 0, 0), ttl=30)
    time.sleep(0.1)
    done = reconciler(h).run_once()
    assert done is not None and done.requeued_in_progress == 0
    assert h.get(ids[0]).state is P


def test_one_leader_at_a_time(h: Harness) -> None:
    recorded_only(h, 1)
    first, second = reconciler(h, "r1"), reconciler(h, "r2")
    assert first.run_once() is not None
    assert second.run_once() is None
    h.store.release_lock(repair_module.LOCK, "r1")
    assert second.run_once() is not None


def test_the_loop_runs_in_every_worker_and_repairs_on_its_own(h: Harness) -> None:
    lost = recorded_only(h, 3)
    w = h.worker()
    t = threading.Thread(target=w.run, kwargs={"idle_exit": 3.0}, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(h.get(i).state is C for i in lost):
        time.sleep(0.05)
    w.request_stop()
    t.join(5)
    assert [h.get(i).state for i in lost] == [C] * 3
    assert h.store.repairs().resent_queued == 3
    assert h.store.r.exists(h.store.keys.lock(repair_module.LOCK)) == 0  # released at stop
    assert TaskState.QUEUED not in {h.get(i).state for i in lost}
