"""Tasks that were started before and never finished run alone, one at a time per worker.

A task still ``in-progress`` when its message comes again was started by a worker that died, was
stopped or lost the partition before the outcome was written. It may be what killed that worker.
The allowed starts of a task (``max_attempts`` plus ``runner.EXTRA_STARTS``) exist to fail such a
task instead of letting it kill worker after worker; but every task started *with* it was charged a
start each time too. Two ways: consecutive fast tasks share one START (a chunk, run one after the
other: those after the killer were started and never ran), and the runner threads run tasks side
by side. Measured before this module (``tests/integration/test_self_healing.py``): one task that
SIGKILLs its worker among 60 fast ones of its name on one partition, and 51 of the good ones ended
``failed`` ("started 4 times and never finished") beside it.

So ``START`` does not start a task that is still in-progress from a start at least
``yadtq.lua.SUSPECT_AGE`` (2 s) old, by a worker that is gone (no heartbeat of the process that
made the start), unless the caller says it runs it alone (``-6``, the record untouched: this start
is not charged). A start by a worker that still runs is a partition handed over in a rebalance and
is taken over at once, whatever its age (no death counted); so is a younger one: a restarted worker
comes back later than that. The runner then queues it again as a chunk of its own and runs it
in its ``turn``: one such task at a time in the worker, each for its first ``ALONE_SECONDS`` (its
``async def`` ones too). If it kills the worker in that time, it was the only one of them running:
the tasks charged are the ones started beside it for the first time, and when they come again they
are suspects too, so they never run beside it again. A task that kills its worker mostly does so at
once (a crash on its input, memory blown); one still running after ``ALONE_SECONDS`` is let be, so a
long task that comes again after a crash does not hold the others back for its whole run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from worker.inflight import Track
from worker.state import Item

ALONE_SECONDS = 2.0
"""How long a suspect runs before the next one may start beside it (the same value as
``SUSPECT_AGE``, another setting: how old a start must be to make its task a suspect)."""


class Suspects:
    """The messages whose ``START`` answered -6, until a runner thread takes them (alone)."""

    def __init__(self, alone_seconds: float = ALONE_SECONDS) -> None:
        self.alone_seconds = alone_seconds
        # (slot, offset) -> the partition's track: an entry whose partition moved is dropped at
        # the next add, so the map holds only suspects of partitions this worker still has
        self._keys: dict[tuple[int, int], Track] = {}
        self._cv = threading.Condition()
        self._holder: object | None = None
        self._since = 0.0

    def add(self, item: Item) -> None:
        with self._cv:
            self._keys = {key: track for key, track in self._keys.items() if track.live}
            self._keys[(item[1].partition, item[1].offset)] = item[0]

    def take(self, item: Item) -> bool:
        """True (once) if ``item`` is a suspect: its chunk must run in a ``turn``."""
        key = (item[1].partition, item[1].offset)
        with self._cv:
            return self._keys.pop(key, None) is not None

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait until no other suspect has run for less than ``alone_seconds``, then hold the
        turn until the block ends (or, for the next one, until ``alone_seconds`` passed)."""
        me = object()
        with self._cv:
            while self._holder is not None:
                left = self._since + self.alone_seconds - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            self._holder, self._since = me, time.monotonic()
        try:
            yield
        finally:
            with self._cv:
                if self._holder is me:
                    self._holder = None
                    self._cv.notify()
