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

So ``START`` does not start a task that is still in-progress unless the caller says it runs it
alone (``-6``, the record untouched: this start is not charged). The runner then queues it again
as a chunk of its own and runs it holding ``lock``: one such task at a time in the worker, its
``async def`` ones until the coroutine ends. If it kills the worker now, it was the only one of
them running: the tasks that are charged are the ones started beside it for the first time, and
when they come again they are suspects too, so they never run beside it again.
"""

from __future__ import annotations

import threading

from worker.state import Item


class Suspects:
    """The messages whose ``START`` answered -6, until a runner thread takes them (alone)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Held while a suspect is started and runs: one at a time."""
        self._keys: set[tuple[int, int]] = set()
        self._mutex = threading.Lock()

    def add(self, item: Item) -> None:
        with self._mutex:
            self._keys.add((item[1].partition, item[1].offset))

    def take(self, item: Item) -> bool:
        """True (once) if ``item`` is a suspect: its chunk must run alone."""
        key = (item[1].partition, item[1].offset)
        with self._mutex:
            if key in self._keys:
                self._keys.discard(key)
                return True
            return False
