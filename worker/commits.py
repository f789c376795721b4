"""The consume loop's offsets: what is finished, when it may be committed, and committing it.

A finished offset waits ``commit_after`` seconds (until Redis has the outcome on disk), is then
committed asynchronously (synchronously at shutdown or when the process is being replaced), and the
committed offsets are sent again now and then, as an asynchronous commit can fail unseen. Only the
consume loop's thread calls the consumer; rebalance callbacks only ``forget`` (under the lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from worker.interfaces import Consumer
from yadtq.errors import ServiceUnavailable, YadtqError

log = logging.getLogger("yadtq.worker")


class Committer:
    """Offsets staged, ready and committed, for one consumer-group member."""

    def __init__(self, commit_after: float, urgent: Callable[[], bool]) -> None:
        self.commit_after = commit_after
        self._urgent = urgent
        """True when stopping or being replaced: commit synchronously, retry less."""
        self._lock = threading.Lock()
        self._committed: dict[int, int] = {}
        self._staged: dict[int, int] = {}
        """partition -> newest finished offset handed to ``_ready`` (or committed)."""
        self._ready: deque[tuple[float, dict[int, int]]] = deque()
        """Finished offsets waiting ``commit_after`` seconds."""

    def stage(self, consumer: Consumer, committable: dict[int, int]) -> None:
        """Queue the newly committable offsets (of partitions still ours) for committing."""
        try:
            owned = consumer.assignment()
        except YadtqError:
            return
        with self._lock:
            fresh = {p: o for p, o in committable.items()
                     if p in owned and self._staged.get(p) != o}
            if fresh:
                self._staged.update(fresh)
                self._ready.append((time.monotonic(), fresh))

    def commit_aged(self, consumer: Consumer, wait: bool = False) -> None:
        """Commit the staged offsets that are ``commit_after`` seconds old (all of them with
        ``wait``, after sleeping until they are)."""
        with self._lock:
            pause = self._ready[-1][0] + self.commit_after - time.monotonic() \
                if wait and self._ready else 0.0
        if pause > 0:
            time.sleep(pause)
        cutoff = time.monotonic() - self.commit_after
        offsets: dict[int, int] = {}
        with self._lock:
            while self._ready and self._ready[0][0] <= cutoff:
                offsets.update(self._ready.popleft()[1])
        self.commit(consumer, offsets)

    def recommit(self, consumer: Consumer) -> None:
        """Send the committed offsets of the partitions still ours again (idempotent)."""
        try:
            offsets = self.committed(consumer.assignment())
        except YadtqError:
            return
        if offsets:
            try:
                consumer.commit(offsets, wait=False)
            except YadtqError as exc:
                log.debug("re-commit not sent: %s", exc)

    def committed(self, partitions: set[int] | frozenset[int]) -> dict[int, int]:
        with self._lock:
            return {p: o for p, o in self._committed.items() if p in partitions}

    def commit(self, consumer: Consumer, offsets: dict[int, int]) -> None:
        """Commit after the outcomes are in Redis. While running, asynchronously: a lost commit only
        means a redelivery, which Redis shows as already done and skips. When urgent (and if sending
        fails), synchronously with retries."""
        if not offsets:
            return
        with self._lock:
            self._committed.update(offsets)
        if not self._urgent():
            try:
                consumer.commit(offsets, wait=False)
                return
            except YadtqError as exc:
                log.warning("asynchronous commit not sent, committing synchronously: %s", exc)
        for attempt in range(1, 6):
            try:
                consumer.commit(offsets)
                return
            except ServiceUnavailable as exc:
                if self._urgent() and attempt >= 2:
                    break
                log.warning("commit failed (attempt %d): %s", attempt, exc)
                time.sleep(min(2.0, 0.2 * attempt))
            except YadtqError as exc:  # partitions moved: the next owner skips what is final
                log.warning("commit refused (tasks will be redelivered and skipped): %s", exc)
                return
        log.warning("giving up committing %s; those tasks will be redelivered and skipped", offsets)

    def forget(self, partitions: set[int] | None = None) -> None:
        """Drop what is known of ``partitions`` (all with None): they moved to another member."""
        with self._lock:
            if partitions is None:
                self._committed.clear()
                self._staged.clear()
                self._ready.clear()
                return
            for p in partitions:
                self._committed.pop(p, None)
                self._staged.pop(p, None)
            self._ready = deque((t, kept) for t, offsets in self._ready
                                if (kept := {p: o for p, o in offsets.items() if p not in partitions}))
