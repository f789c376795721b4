"""The retention sweeper: removes finished tasks ``result_ttl`` seconds after they finished.

Every worker runs this loop; one at a time leads (the ``retention`` lock, token-checked like the
reconciler's), every ``retention_interval`` seconds. A round sweeps in batches (``yadtq.retention``)
and renews the lock before each batch, stopping as soon as it lost it. Two sweepers at once would
still remove nothing twice: each batch is one atomic script that removes only what is still there.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from yadtq.errors import YadtqError
from yadtq.retention import Retention
from yadtq.settings import Settings
from yadtq.store import RedisStore

log = logging.getLogger("yadtq.retention")

LOCK = "retention"
MAX_BATCHES = 2000
"""Most batches in one round (1,000,000 tasks); the next round goes on."""


class Sweeper:
    """The retention loop of one worker (it sweeps only while it holds the lock)."""

    def __init__(self, settings: Settings, store: RedisStore, worker_id: str,
                 stopping: threading.Event) -> None:
        self.settings, self.store, self.worker_id, self.stopping = settings, store, worker_id, stopping
        self.retention = Retention(store)
        self.thread = threading.Thread(target=self._loop, name="yadtq-retention", daemon=True)

    @property
    def lock_ttl(self) -> float:
        return max(3 * self.settings.retention_interval, 10.0)

    def start(self) -> None:
        if self.settings.result_ttl > 0:
            self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _loop(self) -> None:
        interval = self.settings.retention_interval
        if self.stopping.wait(random.uniform(0.1, 1.0) * interval):  # spreads workers
            return
        while True:
            try:
                removed = self.run_once()
                if removed:
                    log.info("retention: removed %d tasks finished more than %g s ago", removed,
                             self.settings.result_ttl)
            except YadtqError as exc:
                log.warning("retention round failed: %s", exc)
            if self.stopping.wait(interval):
                break
        try:
            self.store.release_lock(LOCK, self.worker_id)
        except YadtqError:
            pass

    def run_once(self, now: float | None = None) -> int | None:
        """One round if this worker leads: tasks removed (None when another worker leads or
        retention is off)."""
        ttl = self.settings.result_ttl
        if ttl <= 0 or not self._lead():
            return None
        cutoff = (time.time() if now is None else now) - ttl
        return self.retention.sweep(cutoff, max_batches=MAX_BATCHES,
                                    keep_going=self._still_leading)

    def _lead(self) -> bool:
        return self.store.acquire_lock(LOCK, self.worker_id, self.lock_ttl)

    def _still_leading(self) -> bool:
        return not self.stopping.is_set() and self._lead()
