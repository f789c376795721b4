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


_SNAPSHOT = """
local out = {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1)}
for i = 3, #KEYS do out[#out + 1] = redis.call('ZRANGE', KEYS[i], 0, -1) end
local missing = {}
for _, id in ipairs(out[2]) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then missing[#missing + 1] = id end
end
out[#out + 1] = missing
return out
"""


def consistent(store: RedisStore, listing: bool = True) -> dict[TaskState, int]:
    """Assert that every index agrees with the hashes and the counters; returns the counts. Read
    in one script (atomic, so it holds while workers and sweepers run): each state's counter == the
    size of its set; the index of every task == the union of the state sets and every id in it has
    its hash. With ``listing`` (when
    nothing else writes) the tasks listed in each state are the counted ones too."""
    keys = store.keys
    raw = store.script(_SNAPSHOT)(
        [keys.counts, keys.index, *(keys.state_index(s) for s in STATES)],
        [keys.task("")])
    flat, every, members, missing = raw[0], set(raw[1]), raw[2:-1], raw[-1]
    stored = dict(zip(flat[::2], (int(v) for v in flat[1::2]), strict=True))
    counts = {s: stored.get(s.value, 0) for s in STATES}
    sets = {s: set(m) for s, m in zip(STATES, members, strict=True)}
    for state in STATES:
        assert counts[state] == len(sets[state]), (state, counts, len(sets[state]))
    assert every == set().union(*sets.values())
    assert missing == []
    if listing:
        for state in STATES:
            listed = store.list(state, limit=max(1, counts[state]), history=False)
            assert {t.id for t in listed} == sets[state]
            assert all(t.state is state and t.problem is None for t in listed)
    return counts


def task_keys(store: RedisStore, ids: Sequence[str]) -> int:
    """How many of these tasks' hashes exist."""
    return int(store.r.exists(*[store.keys.task(i) for i in ids])) if ids else 0
