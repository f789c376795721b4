"""Cancelling a task in Redis: the ``CANCEL`` script and the flag a worker checks.

A ``queued`` (or ``scheduled``) task is set ``cancelled`` in one compare-and-set script and never
starts: ``START`` refuses it, so its message is skipped and committed past. A running task gets a
``cancel_requested`` field instead, and a counter of such requests moves: each busy worker reads the
counter once a second (``counter``), and when it moved, the flags of its running tasks
(``requested``); it interrupts a flagged task the way it enforces time limits; whatever the attempt then
writes, ``FINISH`` turns it into ``cancelled``. The flag lives in the task's hash, so a worker that
was disconnected when the cancel came still finds it. No I/O of its own: the store runs the calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yadtq import lua
from yadtq.errors import InvalidTask, StoreError, TaskFinished, TaskNotFound
from yadtq.models import STATES, TaskState
from yadtq.records import safe_text
from yadtq.store import RedisStore

CANCEL_NOTE = "cancelled before it started"
"""The error and history note of a task cancelled while it waited."""

# CANCEL's answers (see yadtq.lua)
_CANCELLED, _REQUESTED, _FINAL, _MISSING, _MALFORMED = 1, 2, 0, -1, -3


@dataclass(frozen=True)
class CancelResult:
    """What a cancel did."""

    task_id: str
    previous: TaskState
    """The state the task was in."""

    @property
    def running(self) -> bool:
        """True when the task was running: its worker interrupts it (it ends ``cancelled``
        within about a second, or after the worker's ``stuck_grace`` if it ignores the interrupt)."""
        return self.previous is TaskState.IN_PROGRESS


class Cancels:
    """The cancel calls of one store."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._cancel = store.r.register_script(lua.CANCEL)

    def cancel(self, task_id: str) -> CancelResult:
        """Cancel ``task_id`` (a full id): ``TaskNotFound`` if there is none, ``TaskFinished`` if it
        is completed, failed or cancelled already, ``InvalidTask`` if its record is malformed;
        nothing changes then."""
        keys = self.store.keys
        script_keys = [keys.counts, *(keys.state_index(s) for s in STATES), keys.due,
                       keys.task(task_id), keys.cancel_requests]
        args: list[Any] = [self.store.clock(), CANCEL_NOTE]
        code, state = self.store.call(lambda: self._cancel(keys=script_keys, args=args))
        code, state = int(code), safe_text(str(state))
        if code == _MISSING:
            raise TaskNotFound(f"no task with id {task_id}")
        if code == _FINAL:
            raise TaskFinished(f"task {task_id} is already {state}: only queued, scheduled or "
                               "running tasks can be cancelled; nothing changed")
        if code not in (_CANCELLED, _REQUESTED):
            raise InvalidTask(f"task {task_id} has a malformed stored record"
                              f"{f' (state {state!r})' if state else ''}: not cancelled")
        return CancelResult(task_id, TaskState(state))

    def counter(self) -> int | None:
        """How many times a running task was flagged (``CANCEL`` bumps it): unchanged means no
        running task anywhere got a cancel request since it was last read. None when the key holds
        something else (not a number, another type): then nothing can be told from it.
        ``ServiceUnavailable`` when Redis cannot answer."""
        try:
            value = self.store.call(lambda: self.store.r.get(self.store.keys.cancel_requests))
            return int(value or 0)
        except (StoreError, ValueError):
            return None

    def requested(self, task_ids: Sequence[str]) -> set[str]:
        """Those of ``task_ids`` whose cancel was requested: one pipelined round trip of an
        ``HEXISTS`` each (a worker asks for all its running tasks at once)."""
        if not task_ids:
            return set()

        def read() -> list[Any]:
            pipe = self.store.r.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hexists(self.store.keys.task(task_id), "cancel_requested")
            return list(pipe.execute())

        flags = self.store.call(read)
        return {task_id for task_id, flag in zip(task_ids, flags, strict=True) if flag}
