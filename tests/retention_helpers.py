"""Helpers for the retention tests (unit, integration and dashboard): tasks finished at chosen times,
and the invariant that what is listed agrees with the counts and the indexes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from yadtq.models import STATES, Outcome, TaskState
from yadtq.store import RedisStore
from yadtq.wire import Envelope

WORKER = "w-retention-1"


def finished_tasks(store: RedisStore, n: int, at: float, state: TaskState = TaskState.COMPLETED,
                   created: float | None = None, batch: int = 1000) -> list[str]:
    """``n`` ADD tasks created at ``created`` (default ``at - 1``), run and finished in ``state``
    at time ``at`` (the store's clock is moved there and back)."""
    clock = store.clock
    ids: list[str] = []
    try:
        store.clock = lambda: at
        for first in range(0, n, batch):
            envs = [Envelope(uuid.uuid4().hex, "ADD", (i, 1), at - 1 if created is None else created)
                    for i in range(first, min(n, first + batch))]
            store.create(envs)
            store.start(WORKER, envs)
            done = state is TaskState.COMPLETED
            store.finish(WORKER, [Outcome(e.id, 1, state, result=e.args[0] + 1 if done else None,
                                          error=None if done else "RuntimeError: boom")
                                  for e in envs])
            ids += [e.id for e in envs]
    finally:
        store.clock = clock
    return ids


def unfinished_tasks(store: RedisStore, n: int, created: float, started: bool = False) -> list[str]:
    """``n`` tasks created at ``created``, left queued (or in-progress when ``started``)."""
    clock = store.clock
    try:
        store.clock = lambda: created
        envs = [Envelope(uuid.uuid4().hex, "ADD", (i, 2), created) for i in range(n)]
        store.create(envs)
        if started:
            store.start(WORKER, envs)
    finally:
        store.clock = clock
    return [e.id for e in envs]


def consistent(store: RedisStore) -> dict[TaskState, int]:
    """Assert that every index agrees with the hashes and the counters; returns the counts. Each
    state's counter == the size of its set == the tasks listed in it; the index of every task ==
    the union of the state sets; every id listed has its hash; the finish-time index holds exactly
    the finished tasks."""
    r, keys = store.r, store.keys
    counts = store.counts()
    every = set(r.zrange(keys.index, 0, -1))
    union: set[str] = set()
    for state in STATES:
        members = set(r.zrange(keys.state_index(state), 0, -1))
        assert counts.get(state, 0) == len(members), (state, counts, len(members))
        listed = store.list(state, limit=max(1, len(members)), history=False)
        assert len(listed) == len(members), (state, len(listed), len(members))
        assert all(t.state is state and t.problem is None for t in listed)
        union |= members
    assert every == union
    finished = set(r.zrange(keys.finished, 0, -1))
    assert finished == {i for s in STATES if s.is_final
                        for i in r.zrange(keys.state_index(s), 0, -1)}
    assert r.exists(*[keys.task(i) for i in every]) == len(every) if every else True
    return counts


def task_keys(store: RedisStore, ids: Sequence[str]) -> int:
    """How many of these tasks' hashes exist."""
    return int(store.r.exists(*[store.keys.task(i) for i in ids])) if ids else 0
