"""A consumer that stopped delivering: the worker's defence against a Kafka client that no longer
fetches a partition whose messages wait (kafka-python 3.0.12 did so after a pause, see
``yadtq.kafka_conn.release_parked``; the next such bug would strand tasks as silently).

While the worker is idle (nothing delivered, nothing in the runner), the consume loop asks its
consumer every ``STALL_CHECK_SECONDS`` how many messages wait after its position on each partition it
polls (assigned and not paused by the worker). A partition with messages waiting at two checks in a
row, with nothing delivered in between, is stalled: the worker logs it and joins with a new
consumer, which reads its partitions from their committed offsets (START skips what is final).
A consumer that cannot tell its lags (the confluent adapter) is not checked.
"""

from __future__ import annotations

import logging
import time

from worker.interfaces import Consumer
from yadtq.errors import YadtqError

log = logging.getLogger("yadtq.worker")


class StallCheck:
    """The consume loop calls ``busy()`` whenever it has work and ``check()`` while it is idle."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._waiting: dict[int, int] | None = None
        """Partition -> messages waiting at the last idle check (None: none since the last work)."""

    def busy(self) -> None:
        """Records came, or the runner has work: the idle stretch starts again."""
        self._last, self._waiting = time.monotonic(), None

    def check(self, consumer: Consumer, paused: set[int], every: float) -> dict[int, int]:
        """Stalled partitions -> messages waiting ({} unless one is: see the module's docstring)."""
        now = time.monotonic()
        if now - self._last < every:
            return {}
        self._last = now
        polled = consumer.assignment() - paused
        try:
            lags = consumer.lags(polled) if polled else {}
        except YadtqError as exc:  # Kafka's failures, translated where they enter (yadtq.broker)
            log.debug("stall check: reading lags failed: %s", exc)
            lags = None
        if lags is None:
            self._waiting = None
            return {}
        waiting = {p: n for p, n in lags.items() if n > 0}
        before, self._waiting = self._waiting, waiting
        return {p: n for p, n in waiting.items() if before is not None and p in before}
