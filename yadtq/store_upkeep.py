"""The part of ``RedisStore`` the background jobs use: leader locks (reconciler, retention sweeper,
scheduler, periodic tasks), the reconciler's candidates (tasks left unchanged) and its counters.
Mixed into ``RedisStore``: it uses the store's connection and error translation, and imports no
Redis client of its own."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from yadtq import records
from yadtq.errors import StoreError
from yadtq.keys import Keys
from yadtq.models import RepairStats, Task, TaskState
from yadtq.records import BRIEF as _BRIEF
from yadtq.records import safe_text as _safe

T = TypeVar("T")

STALE_PAGE = 500
STALE_SCAN_MAX = 20_000
"""``stale`` reads the state set oldest first in pages of ``STALE_PAGE`` ids and looks at no more
than ``STALE_SCAN_MAX`` ids per call (the next round goes on from the oldest again)."""


class UpkeepStore:
    r: Any
    keys: Keys
    clock: Callable[[], float]
    _acquire: Any
    _release: Any

    if TYPE_CHECKING:
        def call(self, fn: Callable[[], T]) -> T: ...

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take lock ``name`` for ``owner`` for ``ttl`` seconds, or renew it if ``owner`` holds it.
        False while another owner holds it."""
        ms = max(1, int(ttl * 1000))
        return bool(self.call(lambda: self._acquire(keys=[self.keys.lock(_safe(name))],
                                                     args=[_safe(owner), ms])))

    def release_lock(self, name: str, owner: str) -> None:
        """Give lock ``name`` up if ``owner`` holds it (a lock another owner took is left alone)."""
        self.call(lambda: self._release(keys=[self.keys.lock(_safe(name))],
                                         args=[_safe(owner)]))

    def stale(self, state: TaskState, older_than: float, limit: int = 500) -> builtins.list[Task]:
        """Up to ``limit`` tasks in ``state`` (not final) whose ``updated_at`` is before
        ``older_than`` (epoch s), oldest created first. Reads the state set in creation order up
        to ``older_than`` (a task is updated after it is created), a page at a time, at most
        ``STALE_SCAN_MAX`` ids per call; malformed records are left out (no state change applies
        to them)."""
        if state.is_final:
            raise ValueError(f"stale() is for unfinished tasks, not {state}")
        index = self.keys.state_index(state)

        def run() -> builtins.list[Task]:
            out: builtins.list[Task] = []
            offset = 0
            while len(out) < limit and offset < STALE_SCAN_MAX:
                ids = self.r.zrangebyscore(index, "-inf", f"({older_than!r}", start=offset,
                                           num=STALE_PAGE)
                if not ids:
                    break
                offset += len(ids)
                pipe = self.r.pipeline(transaction=False)
                for task_id in ids:
                    pipe.hmget(self.keys.task(task_id), _BRIEF)
                for task in records.brief_tasks(ids, pipe.execute(raise_on_error=False)):
                    if task.problem is None and task.state is state and task.updated_at < older_than:
                        out.append(task)
            return out[:limit]
        return self.call(run)

    def record_repairs(self, worker_id: str, resent_queued: int, requeued_in_progress: int) -> None:
        """Count one reconciler round by ``worker_id`` and what it repaired."""
        key = self.keys.repairs

        def run() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.hincrby(key, "runs", 1)
            pipe.hincrby(key, "resent_queued", resent_queued)
            pipe.hincrby(key, "requeued_in_progress", requeued_in_progress)
            pipe.hset(key, mapping={"last_run_at": repr(self.clock()),
                                    "last_leader": _safe(worker_id),
                                    "last_repaired": resent_queued + requeued_in_progress})
            pipe.execute()
        self.call(run)

    def repairs(self) -> RepairStats:
        """What the reconciler repaired so far."""
        try:
            raw = self.call(lambda: self.r.hgetall(self.keys.repairs))
        except StoreError:  # not a hash: nothing readable was recorded
            return RepairStats()
        return records.repairs(raw)
