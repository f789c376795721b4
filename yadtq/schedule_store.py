"""Periodic schedules in Redis: what the workers publish, the per-schedule marker of the latest
period fired, and the ``FIRE`` script (``yadtq.lua_periodic``) that creates a period's task.

It goes through ``RedisStore``'s client and its error translation (``store.py`` stays the only
module that imports redis): every call raises ``ServiceUnavailable`` or ``StoreError`` only.
Whatever the schedules hash holds (an entry from an older or broken worker, text edited by
hand, a key of the wrong type), ``infos`` returns one ``ScheduleInfo`` per entry, malformed
ones with ``problem`` set, and never raises for it.

Each published entry carries the time of its publication (``published_at``, Redis's clock) in
its JSON, so the time always belongs to the definition it stands next to: an older worker
publishing the same schedule writes it without a time, and it is shown as before (not stale). A
schedule no worker published for more than ``STALE_AFTER`` is stale (no next run: no running
worker declares it); one not published for ``FORGET_AFTER`` is removed by the next publish of
any worker (``yadtq.lua_periodic.PUBLISH``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from yadtq import lua_periodic, records
from yadtq.errors import StoreError
from yadtq.models import STATES
from yadtq.schedules import Schedule, ScheduleError, ScheduleInfo, task_id_for
from yadtq.store import RedisStore

INVALID = "invalid"
"""The last-run state shown for a task whose stored record is malformed."""
PUBLISH_EVERY = 60.0
"""Seconds between two publications of a worker's schedules (``worker.periodic``; a deleted
hash comes back)."""
STALE_AFTER = 3 * PUBLISH_EVERY
"""A schedule not published for longer is stale: no running worker declares it, it has no next
run (three publications missed: one slow or failed publish is not enough)."""
FORGET_AFTER = 24 * 3600.0
"""A schedule not published for longer is removed from the hash by the next publish."""


@dataclass(frozen=True)
class Fired:
    """What one ``fire`` call did (``code``: a ``yadtq.lua_periodic.FIRE_*`` value)."""

    code: int
    created_at: float
    """Redis's clock at the call: the task's ``created_at`` when it was created."""

    @property
    def created(self) -> bool:
        return self.code == lua_periodic.FIRE_CREATED


class ScheduleStore:
    """The periodic part of the Redis store (same client, same error translation)."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.keys = store.keys
        self._fire = store.r.register_script(lua_periodic.FIRE)
        self._publish = store.r.register_script(lua_periodic.PUBLISH)

    def now(self) -> float:
        """Redis's clock (``TIME``), the one clock every scheduler uses."""
        sec, usec = self.store._call(self.store.r.time)
        return int(sec) + int(usec) / 1e6

    def publish(self, schedules: Sequence[Schedule], now: float | None = None) -> list[str]:
        """Publish (or refresh) these schedules' definitions for the CLI and the dashboard, each
        with the time ``now`` (default: Redis's clock), and remove the entries nobody published
        for ``FORGET_AFTER`` (one script: see ``yadtq.lua_periodic.PUBLISH``). Returns the names
        removed, sorted."""
        if not schedules:
            return []
        now = self.now() if now is None else now
        args: list[str | float] = [now - FORGET_AFTER]
        for s in schedules:
            args += [s.name, records.dump({**s.to_public(), "published_at": now})]
        removed = self.store._call(lambda: self._publish(keys=[self.keys.schedules], args=args))
        return sorted(str(name) for name in removed or [])

    def fire(self, schedule: Schedule, period: int) -> Fired:
        """Create the task of ``schedule``'s ``period`` unless that period (or a later one) was
        fired: one atomic script with the marker (see ``yadtq.lua_periodic.FIRE``)."""
        keys = [self.keys.counts, *(self.keys.state_index(s) for s in STATES),
                self.keys.schedules_last, self.keys.index, self.keys.task(schedule.task_id(period))]
        note = f"periodic: schedule {schedule.name}, period {period}"
        args = [schedule.name, period, schedule.task_id(period), schedule.task,
                records.dump(list(schedule.args)), note, records.stored_queue(schedule.queue or ""), ""]
        code, created = self.store._call(lambda: self._fire(keys=keys, args=args))
        return Fired(int(code), float(created))

    def markers(self) -> dict[str, int]:
        """The latest period fired per schedule (malformed markers are left out)."""
        raw = self.store._call(lambda: self.store.r.hgetall(self.keys.schedules_last))
        return {name: p for name, value in raw.items() if (p := _period(value)) is not None}

    def infos(self, now: float | None = None) -> list[ScheduleInfo]:
        """Every published schedule with its next run after ``now`` (default: Redis's clock) and
        its last run (task id and state), sorted by name; a malformed entry comes back with
        ``problem`` set."""
        now = self.now() if now is None else now

        def read() -> tuple[dict[str, str], dict[str, str]]:
            pipe = self.store.r.pipeline(transaction=False)
            pipe.hgetall(self.keys.schedules)
            pipe.hgetall(self.keys.schedules_last)
            published, last = pipe.execute(raise_on_error=False)
            if isinstance(published, Exception):
                raise StoreError(f"the schedules key {self.keys.schedules} is unreadable: "
                                 f"{published}")
            return published, last if isinstance(last, dict) else {}
        published, last = self.store._call(read)
        out: list[ScheduleInfo] = []
        for name in sorted(published):
            out.append(_info(name, published[name], last.get(name), now))
        ids = [i.last_task for i in out if i.last_task]
        if not ids:
            return out
        states = self.store._call(lambda: _states(self.store, ids))
        return [_with_state(i, states) for i in out]


def _states(store: RedisStore, ids: list[str]) -> dict[str, str | None]:
    pipe = store.r.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(store.keys.task(task_id), "state")
    out: dict[str, str | None] = {}
    for task_id, value in zip(ids, pipe.execute(raise_on_error=False), strict=True):
        if value is None:
            out[task_id] = None
        elif isinstance(value, Exception) or value not in {s.value for s in STATES}:
            out[task_id] = INVALID
        else:
            out[task_id] = str(value)
    return out


def _with_state(info: ScheduleInfo, states: dict[str, str | None]) -> ScheduleInfo:
    if info.last_task is None:
        return info
    return replace(info, last_state=states.get(info.last_task))


def _period(value: Any) -> int | None:
    try:
        p = float(value)
    except (TypeError, ValueError):
        return None
    return int(p) if math.isfinite(p) and p >= 0 and p == int(p) else None


def _published_at(raw: str) -> float | None:
    """The ``published_at`` of an entry: None unless it is a finite number (an older worker's
    entry has none)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    at = data.get("published_at") if isinstance(data, dict) else None
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        return None
    return float(at)


def _info(name: str, raw: str, marker: Any, now: float) -> ScheduleInfo:
    """The entry's definition, next and last run; stale (no next run) when not published for
    more than ``STALE_AFTER``."""
    info = _definition(name, raw, marker, now)
    at = _published_at(raw)
    if at is None or now - at <= STALE_AFTER:
        return replace(info, published_at=at)
    return replace(info, published_at=at, stale=True, next_run=None)


def _definition(name: str, raw: str, marker: Any, now: float) -> ScheduleInfo:
    try:
        schedule = Schedule.from_public(raw)
    except ScheduleError as exc:
        return ScheduleInfo(name, None, str(exc).removeprefix(f"schedule {name}: "))
    except (TypeError, ValueError) as exc:  # a field of the wrong type reaching a validator
        return ScheduleInfo(name, None, f"malformed: {exc}")
    if schedule.name != name:
        return ScheduleInfo(name, None, f"published under {name!r} but names {schedule.name!r}")
    period = _period(marker)
    problem = None if marker is None or period is not None else "the last-period marker is malformed"
    return ScheduleInfo(name, schedule, problem, schedule.next_after(now), period,
                        task_id_for(name, period) if period is not None else None)
