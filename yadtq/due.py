"""The due set in Redis: tasks scheduled for later, claimed by the scheduling leader when due.

``DueSet`` runs the scripts of ``yadtq.lua_due`` through a ``RedisStore`` (which translates Redis's
errors); it imports no Redis client itself. Layout: ``Keys.due`` (id -> due time) and
``Keys.dispatching`` (id -> lease deadline), both in Redis's clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yadtq import lua_due
from yadtq.keys import DEFAULT_PRIORITY, DEFAULT_QUEUE
from yadtq.models import STATES
from yadtq.records import dump, safe_text, stored_priority, stored_queue
from yadtq.store import RedisStore
from yadtq.wire import Envelope

LOCK = "scheduler"
"""Name of the scheduling leader's lock (``Keys.lock``)."""


@dataclass(frozen=True)
class Due:
    """One claimed task to send, with the time it was due."""

    envelope: Envelope
    due_at: float | None


@dataclass(frozen=True)
class Claim:
    """What one ``CLAIM`` returned to the leader."""

    tasks: list[Due]
    dropped: int
    """Ids removed without sending: their task is gone or no longer scheduled (or queued, for an
    expired lease)."""
    malformed: list[tuple[str, str]]
    """Ids removed because their record cannot be dispatched, with the reason."""
    next_due: float | None
    """Due time of the earliest id left in the due set (None: empty)."""
    now: float
    """Redis's clock at the claim."""


class DueSet:
    """Scheduling, claiming and repairing the due set of one key prefix."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.keys = store.keys
        self._schedule = store.r.register_script(lua_due.SCHEDULE)
        self._claim = store.r.register_script(lua_due.CLAIM)
        self._restore = store.r.register_script(lua_due.RESTORE)
        self._state_keys = [self.keys.state_index(s) for s in STATES]

    def schedule(self, envelopes: Sequence[Envelope], due: float, relative: bool) -> list[float | None]:
        """Record tasks as ``scheduled``, due at ``due`` (epoch seconds) or, with ``relative``,
        ``due`` seconds after Redis's clock now. Per task its due time, None if the id existed."""
        if not envelopes:
            return []
        args: list[Any] = [repr(self.store.clock())]
        for e in envelopes:
            args += [e.id, safe_text(e.name), dump(list(e.args)), repr(e.created_at), repr(float(due)),
                     "1" if relative else "0", stored_queue(e.queue),
                     stored_priority(e.priority)]
        keys = [self.keys.counts, *self._state_keys, self.keys.index, self.keys.due,
                *(self.keys.task(e.id) for e in envelopes)]
        out = self.store.call(lambda: self._schedule(keys=keys, args=args))
        return [float(x) if x not in (0, "0") else None for x in out]

    def claim(self, owner: str, lock_ttl: float, limit: int, lease: float) -> Claim | None:
        """Claim up to ``limit`` due tasks (expired leases first, then in due order) if ``owner``
        holds or can take the scheduler's lock (renewed for ``lock_ttl`` s); None if another does."""
        keys = [self.keys.counts, *self._state_keys, self.keys.due, self.keys.dispatching,
                self.keys.lock(LOCK)]
        args = [safe_text(owner), max(1, int(lock_ttl * 1000)), max(1, limit), repr(float(lease)),
                self.keys.task("")]
        got = self.store.call(lambda: self._claim(keys=keys, args=args))
        if not got or int(got[0]) != 1:
            return None
        _, flat, dropped, bad, next_due, now = got
        tasks = []
        for i in range(0, len(flat) - 6, 7):
            task_id, name, args_json, created, due_at, queue, priority = flat[i:i + 7]
            tasks.append(Due(_envelope(task_id, name, args_json, created, queue, priority),
                             _float(due_at)))
        malformed = [(str(bad[i]), str(bad[i + 1])) for i in range(0, len(bad) - 1, 2)]
        return Claim(tasks, int(dropped), malformed, _float(next_due), float(now))

    def dispatched(self, task_ids: Sequence[str]) -> None:
        """Kafka acknowledged these: take them out of the dispatching set."""
        if task_ids:
            ids = list(task_ids)
            self.store.call(lambda: self.store.r.zrem(self.keys.dispatching, *ids))

    def dispatching(self, task_ids: Sequence[str]) -> set[str]:
        """Which of these ids are claimed and being sent (in the dispatching set)."""
        if not task_ids:
            return set()
        ids = list(task_ids)
        scores = self.store.call(lambda: self.store.r.zmscore(self.keys.dispatching, ids))
        return {i for i, s in zip(ids, scores, strict=True) if s is not None}

    def restore(self, page: int = 500, most: int = 20_000) -> list[str]:
        """Put back into the due set every well-formed ``scheduled`` task that is in neither the
        due nor the dispatching set (a lost write); reads at most ``most`` ids. The ids put back."""
        keys = [self.keys.counts, *self._state_keys, self.keys.due, self.keys.dispatching]
        back: list[str] = []
        first = 0
        while first < most:
            args: list[Any] = [self.keys.task(""), first, page]

            def run(a: list[Any] = args) -> Any:
                return self._restore(keys=keys, args=a)
            ids, read = self.store.call(run)
            back += [str(i) for i in ids]
            if int(read) < page:
                break
            first += page
        return back

    def due_count(self) -> int:
        """How many ids wait in the due set."""
        return int(self.store.call(lambda: self.store.r.zcard(self.keys.due)))

    def release(self, owner: str) -> None:
        """Give the scheduler's lock up if ``owner`` holds it."""
        self.store.release_lock(LOCK, owner)


def _float(raw: Any) -> float | None:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _envelope(task_id: Any, name: Any, args_json: Any, created: Any, queue: Any,
              priority: Any) -> Envelope:
    """The claimed task's message (``CLAIM`` checked that args is a JSON array, the queue a
    queue name and the priority a level)."""
    return Envelope(str(task_id), str(name), tuple(json.loads(args_json)), float(created),
                    str(queue) if queue else DEFAULT_QUEUE,
                    str(priority) if priority else DEFAULT_PRIORITY)
