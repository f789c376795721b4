"""Retention: finished tasks expire ``result_ttl`` seconds after they finished, and ``yadtq purge``
removes finished tasks on demand.

The set of each final state (``TaskState.is_final``: completed, failed, ...) is scored by finish
time (``yadtq.lua``), so it is its own finish-time index: the oldest finished are its head. The
sweeper (``worker.retention``, one worker at a time) and purge remove them from there, a bounded
batch per script call (``yadtq.lua_retention``): hash, index entries and one off the counter, in one
step. So the per-state counts are **current** totals, always equal to what is listed, and memory
stays flat under a steady load once the first tasks expire. Neither ever touches a task that is not
final, or a key outside the prefix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable

from yadtq import lua_retention
from yadtq.models import TaskState
from yadtq.store import RedisStore

FINAL_STATES: tuple[TaskState, ...] = tuple(s for s in TaskState if s.is_final)
"""The states a task ends in; only these are ever expired or purged."""

BATCH = 500
"""Most ids one script call looks at (a few milliseconds of Redis time)."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)([smhdw]))+|\d+(?:\.\d+)?", re.ASCII)
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])", re.ASCII)
MAX_DURATION = 100 * 365 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``1w`` or a sum such as ``1h30m``.
    Raises ``ValueError`` with the reason for anything else (negative, empty, unknown unit)."""
    raw = text.strip().lower()
    if not raw or not _DURATION_RE.fullmatch(raw):
        raise ValueError(f"not a duration: {text[:40]!r} (use a number of seconds or e.g. 30s, "
                         "15m, 2h, 1d, 1w, 1h30m)")
    if raw[-1].isdigit():
        seconds = float(raw)
    else:
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(raw))
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"duration too long: {text[:40]!r} (at most 100 years)")
    return seconds


def final_state(value: str) -> TaskState:
    """The final state named ``value``; ``ValueError`` naming the final states otherwise."""
    names = ", ".join(s.value for s in FINAL_STATES)
    try:
        state = TaskState(value)
    except ValueError:
        raise ValueError(f"unknown state {value[:40]!r}: purge takes one of {names}") from None
    if not state.is_final:
        raise ValueError(f"{state.value} tasks are not finished and are never purged; "
                         f"purge takes one of {names}")
    return state


class Retention:
    """Removes finished tasks of one store's prefix, in batches."""

    def __init__(self, store: RedisStore, batch: int = BATCH) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.store, self.batch = store, batch
        keys = store.keys
        self._keys = [keys.counts, keys.index, *(keys.state_index(s) for s in FINAL_STATES)]
        self._args: list[object] = [keys.task(""), len(FINAL_STATES), *(s.value for s in FINAL_STATES)]
        self._remove = store.script(lua_retention.REMOVE)

    def remove_batch(self, state: TaskState, finished_before: float, skip: int = 0) -> tuple[int, int, int]:
        """One script call: tasks of ``state`` that finished at or before ``finished_before``
        (epoch s), oldest first, after ``skip`` kept ones. (removed, kept, looked at); fewer looked
        at than ``batch``: none is left."""
        removed, kept, seen = self._remove(
            self._keys, [*self._args, repr(finished_before), state.value, skip, self.batch])
        return int(removed), int(kept), int(seen)

    def sweep(self, finished_before: float, states: Iterable[TaskState] = FINAL_STATES, *,
              max_batches: int | None = None, keep_going: Callable[[], bool] = lambda: True) -> int:
        """Batches until nothing of ``states`` finished at or before ``finished_before`` is left
        (or after ``max_batches``, or when ``keep_going()`` turns false before a batch). Returns how
        many tasks were removed."""
        total = batches = 0
        for state in states:
            skip = 0
            while keep_going():
                removed, kept, seen = self.remove_batch(state, finished_before, skip)
                total += removed
                skip += kept
                batches += 1
                if max_batches is not None and batches >= max_batches:
                    return total
                if seen < self.batch:
                    break
        return total

    def expire(self, ttl: float, now: float | None = None, *, max_batches: int | None = None,
               keep_going: Callable[[], bool] = lambda: True) -> int:
        """Remove what finished more than ``ttl`` seconds ago (``ttl`` 0: keep everything)."""
        if ttl <= 0:
            return 0
        t = self.store.clock() if now is None else now
        return self.sweep(t - ttl, max_batches=max_batches, keep_going=keep_going)

    def purge(self, older_than: float, states: Iterable[TaskState] | None = None,
              now: float | None = None) -> int:
        """Remove tasks in ``states`` (default: every final state) that finished more than
        ``older_than`` seconds ago. Returns how many. ``ValueError`` for a state that is not final."""
        if not math.isfinite(older_than) or older_than < 0:
            raise ValueError(f"older_than must be 0 or more seconds, got {older_than!r}")
        chosen = FINAL_STATES if states is None else tuple(states)
        for state in chosen:
            final_state(state.value)
        return self.sweep((self.store.clock() if now is None else now) - older_than, chosen)
