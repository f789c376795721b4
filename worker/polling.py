"""What the consume loop polls, and when: the worker's side of Kafka's fetches.

The ``Poller`` decides, before every poll, which of the worker's partitions are paused:

- while the runner has fewer tasks waiting than it has threads, it polls for work. Partitions
  with too many uncommitted offsets (a long task holds them back, ``worker.inflight``) stay
  paused until they drain, and so do lower priority levels while a higher one has a backlog
  (``worker.priority``);
- while the runner is full, it polls the levels above the highest one waiting in the runner
  every ``PEEK_SECONDS`` (so a ``high`` task overtakes a worker full of ``normal`` ones), and
  otherwise polls with every partition paused every ``POLL_WHILE_FULL_SECONDS``, to stay in the
  group however long the tasks take. What that keep-alive poll returns is kept and handed over
  first once the runner wants work.

It runs on the consume loop's thread (the Kafka consumer is not thread-safe); the rebalance
callbacks (``revoked``, ``assigned``) run on Kafka's thread and touch only the kept records
(under a lock) and the sets they replace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from worker.inflight import InFlight
from worker.interfaces import Consumer
from worker.priority import PEEK_SECONDS, TURN_POLL_MS, PriorityGate
from worker.state import WorkQueue
from yadtq.broker_types import Record
from yadtq.errors import YadtqError
from yadtq.settings import Settings

log = logging.getLogger("yadtq.worker")

POLL_WHILE_FULL_SECONDS = 0.5
"""While the runner has enough waiting, the loop still polls (paused) this often: group membership."""
IDLE_POLL_MS = 200
"""How long a poll waits for messages when the runner has nothing to do."""


class Poller:
    """The consume loop's polls: pauses, the priority gate, the records kept while full."""

    def __init__(self, settings: Settings, work: WorkQueue, inflight: InFlight,
                 idle: Callable[[], bool], stopping: threading.Event) -> None:
        self.settings, self.work, self.inflight = settings, work, inflight
        self._idle, self._stopping = idle, stopping
        self.gate = PriorityGate(settings.priority_max_batches, settings.priority_max_wait)
        self._pending: list[Record] = []
        """Records polled while the runner had enough waiting: handed over next."""
        self._paused: set[int] = set()
        self._last_peek = 0.0
        self.last_poll = 0.0
        self._lock = threading.Lock()
        """Guards ``_pending``: rebalance callbacks run on Kafka's thread."""

    def take(self, consumer: Consumer) -> list[Record]:
        """Records for the runner (see the module's docstring); [] when there are none (yet)."""
        try:
            if self.work.queued < self.settings.concurrency:
                with self._lock:
                    stashed, self._pending = self._pending, []
                if stashed:
                    return stashed
                now = time.monotonic()
                held = self.gate.hold(consumer, now)  # lower priority levels wait
                wait = IDLE_POLL_MS if self._idle() and not self.gate.turn else TURN_POLL_MS
                return self._poll(consumer, self.inflight.crowded() | held, wait)
            now, top = time.monotonic(), self.work.top_level()
            if top is not None and now - self._last_peek >= PEEK_SECONDS:  # above what waits
                self._last_peek = now  # (and a held-back level's turn)
                paused = self.gate.hold(consumer, now, above=top) | self.inflight.crowded()
                if consumer.assignment() - paused:
                    # a consumer that keeps what it fetched for a paused partition returns it at
                    # the next peek: poll(0) only sends the fetch. One that drops it waits for it.
                    wait = 0 if consumer.keeps_paused_fetches else TURN_POLL_MS
                    return self._poll(consumer, paused, wait)
            if now - self.last_poll < POLL_WHILE_FULL_SECONDS:
                time.sleep(0.01)
                return []
            extra = self.keep_alive(consumer)
            if extra:
                with self._lock:
                    self._pending.extend(extra)
        except YadtqError as exc:
            log.warning("poll failed: %s", exc)
            self._stopping.wait(0.5)
        return []

    def _poll(self, consumer: Consumer, paused: set[int], wait_ms: int) -> list[Record]:
        """One poll with exactly ``paused`` paused; the gate sees what it returned."""
        self.last_poll = time.monotonic()
        self.pause(consumer, paused)
        most = self.settings.max_poll_records
        records = consumer.poll(timeout_ms=wait_ms, max_records=most)
        self.gate.saw((r.partition for r in records), full=len(records) >= most)
        return records

    def keep_alive(self, consumer: Consumer) -> list[Record]:
        """A poll with every partition paused (group membership); what it returns was fetched
        before the pause."""
        try:
            self.pause(consumer, consumer.assignment())
            return consumer.poll(timeout_ms=0)
        finally:
            self.last_poll = time.monotonic()

    @property
    def paused(self) -> set[int]:
        """The partitions this poller has paused."""
        return set(self._paused)

    def pause(self, consumer: Consumer, partitions: set[int]) -> None:
        """Have exactly ``partitions`` paused (of those assigned)."""
        assigned = consumer.assignment()
        target = partitions & assigned
        if target - self._paused:
            consumer.pause(target - self._paused)
        if (self._paused & assigned) - target:
            consumer.resume((self._paused & assigned) - target)
        self._paused = target

    # ------------------------------------------------------------------ rebalances
    def revoked(self, partitions: set[int]) -> None:
        self._paused = self._paused - partitions
        with self._lock:
            self._pending = [r for r in self._pending if r.partition not in partitions]

    def assigned(self, partitions: set[int]) -> None:
        self._paused = self._paused - partitions  # a new assignment starts unpaused

    def reset(self) -> None:
        """A new consumer: nothing paused, nothing kept."""
        self._paused = set()
        with self._lock:
            self._pending = []

