"""A dead worker keeps what its last heartbeat said (done, failed, what it was running)."""

from __future__ import annotations

import time

from yadtq.models import WorkerStatus
from yadtq.store import Beat, RedisStore


def test_dead_worker_keeps_its_last_heartbeat(fake_store: RedisStore) -> None:
    fake_store.heartbeat(Beat("host-1", "host", 1, time.time() - 60, "ab" * 16, 41, 2, (0, 1)),
                         ttl=5)
    fake_store.r.delete(fake_store.keys.worker("host-1"))  # the TTL ran out
    (dead,) = fake_store.workers(late_after=2)
    assert dead.status is WorkerStatus.DEAD
    assert (dead.done, dead.failed, dead.current_task) == (41, 2, "ab" * 16)
    assert dead.partitions == () and dead.uptime() >= 59


def test_clean_exit_forgets_the_worker(fake_store: RedisStore) -> None:
    fake_store.heartbeat(Beat("host-2", "host", 2, time.time(), None, 1, 0), ttl=5)
    fake_store.remove_worker("host-2")
    assert fake_store.workers(late_after=2) == []
    assert fake_store.r.hget(fake_store.keys.workers_last, "host-2") is None
