"""The worker's one Kafka producer, made on first use: dead letters (runner) and re-sent tasks
(reconciler). Thread-safe; a failure to reach Kafka is logged, never raised into the caller's loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from worker.interfaces import Producer, ProducerFactory
from yadtq.broker_types import Record
from yadtq.errors import YadtqError
from yadtq.settings import Settings
from yadtq.text import safe_text
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.worker")


class Outbox:
    """Sends what the worker itself produces."""

    def __init__(self, settings: Settings, factory: ProducerFactory, worker_id: str,
                 on_dead_letter: Callable[[], None] = lambda: None) -> None:
        self._settings, self._factory, self._worker_id = settings, factory, worker_id
        self._on_dead_letter = on_dead_letter
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def _get(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = self._factory(self._settings)
            return self._producer

    def warm(self) -> None:
        """Make the producer now (it connects and waits for the topics), not on the first send:
        the scheduler's first due tasks would otherwise wait for it."""
        try:
            self._get()
        except (YadtqError, OSError) as exc:
            log.warning("could not connect the producer yet (tried again on the first send): %s",
                        exc)

    def dead_letter(self, record: Record, reason: str) -> None:
        """Put ``record`` on the dead-letter topic with ``reason``; never blocks the partition on it."""
        log.warning("dead-lettering message %s/%d: %s", record.partition, record.offset,
                    safe_text(reason, 300))
        try:
            self._get().dead_letter(record, reason, self._worker_id)
            self._on_dead_letter()
        except (YadtqError, OSError) as exc:
            log.error("could not write to the dead-letter topic: %s", exc)

    def resend(self, envelopes: Sequence[Envelope]) -> list[Exception | None]:
        """Send tasks again (confirmed); per task the error or None."""
        try:
            return self._get().send(envelopes)
        except (YadtqError, OSError) as exc:
            return [exc] * len(envelopes)

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close()
            except (YadtqError, OSError) as exc:
                log.warning("closing the producer: %s", exc)
