"""Priorities inside one worker: which partitions to pause before each poll so that a queue's
higher levels are drained first and a lower level is never held back for long.

A worker consumes each of its queues at three levels (``yadtq.keys.PRIORITIES``), one topic
each; its consumer numbers their partitions as slots whose topic index says the level
(``Settings.worker_topics``, ``yadtq.keys.topic_rank``). The rule, per poll:

- a level *has a backlog* when the last poll that included it was full (``max_poll_records``)
  and returned messages of it (a poll that was not full took all there was), or when
  the last lag check (``CHECK_SECONDS``, one offsets request, made only while some level has a
  backlog) found messages waiting after the worker's position on one of its partitions. The
  check is what finds a higher level's new messages while a lower level keeps every poll full
  (a poll returns at most ``max_poll_records``, taken from what was fetched first);
- the levels below the highest level with a backlog are held back (paused); that level and the
  ones above it are polled. With no backlog anywhere every level is polled (an idle worker
  waits on all of them at once: no latency for any level);
- a held-back level *with a backlog* gets a poll of its own (every other level paused) once it
  has been held back ``priority_max_batches`` polls in a row or ``priority_max_wait`` seconds,
  whichever comes first: however busy the higher levels stay, it moves at least at that pace.
  Where lags cannot be read (the ``confluent`` client) a held-back level gets its turns without
  knowing, and a turn that finds nothing costs one short poll (``TURN_POLL_MS``). kafka-python
  keeps what it fetched for a partition while it is paused, so a turn returns it at once.

A poll returns what the worker can start (at most ``max_poll_records``, only while it has fewer
than ``concurrency`` tasks waiting), and the runner starts tasks in the order polled: a high task
that arrives while lower ones wait in the worker waits for those few, not for the topics'
backlog. The levels are the same for every queue of the worker (a ``high`` backlog in one queue
holds back ``normal`` in the others too: one worker, one budget). The consume loop
(``worker.worker``) asks ``hold`` before a poll and tells ``saw`` what it returned.
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.interfaces import Consumer
from yadtq.broker_types import SLOT_STRIDE
from yadtq.errors import YadtqError
from yadtq.keys import PRIORITIES, topic_rank

LEVELS = len(PRIORITIES)
PEEK_SECONDS = 0.1
"""While the runner has enough waiting, the loop polls the levels above the highest one waiting
in it this often (``worker.polling``), so a high task overtakes a worker full of normal ones, and
gives a held-back level its turn by the same rule."""
TURN_EVERY = 8
"""In the runner's queue (``worker.state.WorkQueue``), a lower level waiting is taken once per
this many units taken from above it."""
CHECK_SECONDS = 0.25
"""How often the lags are read while some level has a backlog."""
TURN_POLL_MS = 20
"""How long a held-back level's own poll waits for messages (it returns at once with some)."""


_RANKS = tuple(topic_rank(i) for i in range(LEVELS))


def level_of(slot: int) -> int:
    """The priority level of a slot: 0 high, 1 normal, 2 low (``yadtq.keys.topic_rank``)."""
    return _RANKS[slot // SLOT_STRIDE % LEVELS]


class PriorityGate:
    """The pause decisions of one consume loop (used from its thread only)."""

    def __init__(self, max_batches: int, max_wait: float) -> None:
        self.max_batches, self.max_wait = max_batches, max_wait
        self.backlog = [False] * LEVELS
        """Per level: the last poll that included it was full and returned messages of it."""
        self._held_polls = [0] * LEVELS
        self._held_since: list[float | None] = [None] * LEVELS
        self._polled: set[int] = set(range(LEVELS))
        self.turns = 0
        """Polls given to a held-back level on its own so far."""
        self.turn = False
        """The next poll is such a turn."""
        self.lags_known = False
        """The last lag check could read the lags (a turn goes only to a level known to wait)."""
        self._checked = float("-inf")

    def levels(self, now: float, present: set[int] | None = None,
               above: int | None = None) -> set[int]:
        """The levels the next poll takes (the others are held back), and the held-back time
        and count updated for it. ``above``: the worker is full, the highest level waiting in
        it is this one: only the levels above it are polled (and a held-back one's turn)."""
        present = set(range(LEVELS)) if present is None else present  # levels with partitions
        busy = [lv for lv in range(LEVELS) if self.backlog[lv] and lv in present]
        polled = set(range(busy[0] + 1)) if busy else set(range(LEVELS))
        if above is not None:
            polled = set(range(above))
        absent = set(range(LEVELS)) - present  # nothing to hold back there
        polled |= absent
        due = [lv for lv in range(LEVELS) if lv not in polled
               and (self.backlog[lv] or not self.lags_known) and (
            self._held_polls[lv] >= self.max_batches
            or now - (self._held_since[lv] or now) >= self.max_wait)]
        self.turn = bool(due)
        if due:
            polled = {due[0]} | absent  # the highest level that is due first; others next time
            self.turns += 1
        for lv in range(LEVELS):
            if lv in polled:
                self._held_polls[lv], self._held_since[lv] = 0, None
            else:
                self._held_polls[lv] += 1
                if self._held_since[lv] is None:
                    self._held_since[lv] = now
        self._polled = polled
        return polled

    def hold(self, consumer: Consumer, now: float, above: int | None = None) -> set[int]:
        """The assigned slots to pause for the next poll (``levels``, ``above`` as there), after
        a lag check when one is due."""
        ranks = {s: level_of(s) for s in consumer.assignment()}
        present = set(ranks.values())
        if len(present) > 1 and any(self.backlog) and now - self._checked >= CHECK_SECONDS:
            self._checked = now
            try:
                lags = consumer.lags(set(ranks))
            except YadtqError:
                lags = None
            self.lags_known = lags is not None
            if lags is not None:
                for lv in present:
                    self.backlog[lv] = any(lags.get(s, 0) > 0 for s, r in ranks.items() if r == lv)
        polled = self.levels(now, present)
        return {s for s, lv in ranks.items() if lv not in polled}

    def saw(self, slots: Iterable[int], full: bool = True) -> None:
        """What the poll after ``hold`` returned (the slots of its records); ``full``: it returned
        as many as it asked for. One that was not full took everything fetched for the levels it
        polled, so none of them has a backlog behind it: a trickle of messages holds nothing back
        (pausing and resuming partitions at every poll cost the confluent client a new fetch each
        time: append -> poll p50 15 ms at 200/s, 59 ms at 1,000/s)."""
        seen = {level_of(s) for s in slots} if full else set()
        for lv in self._polled:
            self.backlog[lv] = lv in seen
