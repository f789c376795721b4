"""The scheduler: sends ``scheduled`` tasks (delays, ETAs, retries after a backoff) to Kafka when due.

Every worker runs this loop on a thread of its own (and ``yadtq-worker --scheduler`` runs only
this); one of them leads at a time. The lead is the scheduler lock (``yadtq.due.LOCK``), taken,
renewed and checked inside the claim script itself, with a TTL of ``scheduler_lock_ttl``: a
leader that cannot renew claims nothing, and a standby takes over within about that TTL after the
leader dies. Each tick the leader claims up to ``CLAIM_LIMIT`` due tasks (``DueSet.claim``: in due
order, leased in the dispatching set), sends them with a confirmed send, and removes the
acknowledged ones from the dispatching set. What was not acknowledged stays leased and is claimed
again when the lease (``scheduler_lease``) expires: at least once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from worker.outbox import Outbox
from yadtq.due import Claim, DueSet
from yadtq.errors import YadtqError
from yadtq.settings import Settings
from yadtq.text import safe_text

log = logging.getLogger("yadtq.scheduler")

CLAIM_LIMIT = 500
"""Most tasks one tick claims and sends (a full claim is followed at once by the next)."""
TICK_SECONDS = 0.05
"""The leader's longest sleep between two claims: a due task waits at most this plus a send."""
STANDBY_SECONDS = 0.25
"""How often a scheduler that does not lead tries to take the lock."""


@dataclass
class SchedulerStats:
    """What this scheduler did (while it led)."""

    sent: int = 0
    dropped: int = 0
    malformed: int = 0
    send_failures: int = 0
    leading: bool = False


class Scheduler:
    """The scheduling loop of one process; it acts only while it holds the scheduler lock."""

    def __init__(self, settings: Settings, due: DueSet, outbox: Outbox, owner: str,
                 stopping: threading.Event) -> None:
        self.settings, self.due, self.outbox = settings, due, outbox
        self.owner, self.stopping = owner, stopping
        self.stats = SchedulerStats()
        self.thread = threading.Thread(target=self.run, name="yadtq-scheduler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        """Tick until ``stopping`` is set, then give the lock up."""
        self.outbox.warm()
        while not self.stopping.is_set():
            try:
                claim = self.tick()
            except YadtqError as exc:
                log.warning("scheduler tick failed: %s", exc)
                self.stats.leading = False
                self.stopping.wait(STANDBY_SECONDS)
                continue
            self.stopping.wait(self._pause(claim))
        try:
            self.due.release(self.owner)
        except YadtqError:
            pass

    def _pause(self, claim: Claim | None) -> float:
        if claim is None:
            return STANDBY_SECONDS
        if len(claim.tasks) >= CLAIM_LIMIT:
            return 0.0
        if claim.next_due is not None:
            return max(0.0, min(TICK_SECONDS, claim.next_due - claim.now))
        return TICK_SECONDS

    def tick(self) -> Claim | None:
        """One claim and send if this process leads (None otherwise)."""
        claim = self.due.claim(self.owner, self.settings.scheduler_lock_ttl, CLAIM_LIMIT,
                               self.settings.scheduler_lease)
        if claim is None:
            if self.stats.leading:
                log.info("scheduler %s no longer leads", self.owner)
            self.stats.leading = False
            return None
        if not self.stats.leading:
            log.info("scheduler %s leads", self.owner)
            self.stats.leading = True
        self.stats.dropped += claim.dropped
        for task_id, why in claim.malformed:
            self.stats.malformed += 1
            log.warning("due task %s not sent: its record is malformed (%s); removed from the due "
                        "set", safe_text(task_id, 80), safe_text(why, 200))
        if claim.tasks:
            envelopes = [d.envelope for d in claim.tasks]
            sent_at = time.monotonic()
            errors = self.outbox.resend(envelopes)
            log.debug("claimed %d due tasks, sent in %.3f s", len(envelopes),
                      time.monotonic() - sent_at)
            acked = [e.id for e, err in zip(envelopes, errors, strict=True) if err is None]
            failed = len(envelopes) - len(acked)
            self.stats.sent += len(acked)
            if failed:
                self.stats.send_failures += failed
                first = next(err for err in errors if err is not None)
                log.warning("%d due tasks not acknowledged by Kafka (sent again after their lease "
                            "of %g s): %s", failed, self.settings.scheduler_lease, first)
            self.due.dispatched(acked)
        return claim
