"""The heartbeat: a thread that writes the worker's health to Redis with a TTL (gone = dead)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from worker.state import RunnerStatus
from yadtq.errors import ServiceUnavailable
from yadtq.models import Beat
from yadtq.settings import Settings
from yadtq.store import RedisStore

log = logging.getLogger("yadtq.worker")


@dataclass(frozen=True)
class Identity:
    """Who a worker is."""

    id: str
    host: str
    pid: int
    started_at: float


class Heartbeat:
    """Writes a beat every ``heartbeat_interval``: what runs, counts, partitions, and whether the
    runner is stalled (``stalled``: a reason, from the watchdog)."""

    def __init__(self, store: RedisStore, settings: Settings, identity: Identity, status: RunnerStatus,
                 stalled: Callable[[], str], partitions: Callable[[], tuple[int, ...]],
                 stopping: threading.Event) -> None:
        self.store, self.settings, self.identity, self.status = store, settings, identity, status
        self._stalled, self._partitions, self._stopping = stalled, partitions, stopping
        self.thread = threading.Thread(target=self._loop, name="yadtq-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def beat(self) -> Beat:
        with self.status.lock:
            running = self.status.oldest()
            done, failed, progress_at = self.status.done, self.status.failed, self.status.progress_at
        me = self.identity
        return Beat(me.id, me.host, me.pid, me.started_at, running.task_id if running else None,
                    done, failed, self._partitions(), stalled=self._stalled(), progress_at=progress_at)

    def _loop(self) -> None:
        while True:
            try:
                self.store.heartbeat(self.beat(), self.settings.heartbeat_ttl)
            except ServiceUnavailable as exc:
                log.debug("heartbeat failed: %s", exc)
            except Exception:  # a heartbeat thread that dies makes a live worker "dead"
                log.exception("heartbeat failed")
            if self._stopping.wait(self.settings.heartbeat_interval):
                return
