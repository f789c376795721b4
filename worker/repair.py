"""The reconciler: repairs tasks that nothing will ever deliver again.

A task can be left ``queued`` with no message behind it (its client died between writing the
record and Kafka's acknowledgement, a ``retry()`` died before its send, Redis lost its last second
of writes) or ``in-progress`` with nobody running it (its worker died after the group had moved
past its message, or Redis lost the outcome). Every worker runs this loop; one at a time leads
(a Redis lock with a TTL), every ``repair_interval`` seconds.

The rule needs no guess about how long a queue may be backed up. Each round records the tasks
topic's end offsets. A non-final task last changed at ``U`` is repaired when the group's committed
offset on its partition has reached the end offset of a round taken after ``U`` plus the producer's
delivery timeout: every message sent to that partition before then (its own included, if it was
ever sent) has been consumed, and a consumed message always has its final state written first.
Only tasks unchanged for ``repair_after`` seconds are looked at, and an in-progress task that a live
worker reports running is left alone. Repairing is re-sending the task (an in-progress one is moved
back to ``queued`` first, with a compare-and-set on its attempt), and it is always safe: a delivered
task that is already final is skipped, and outcomes are a compare-and-set on the attempt.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from worker.interfaces import Offsets, OffsetsFactory
from worker.outbox import Outbox
from yadtq.due import DueSet
from yadtq.errors import YadtqError
from yadtq.keys import queue_topic
from yadtq.models import Task, TaskState, WorkerStatus
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.repair")

LOCK = "repair"
SEND_MARGIN_SECONDS = 12.0
"""A message is acknowledged or given up by its producer within this long after its record was
written (the producer's delivery timeout is 10 s)."""
MAX_SNAPSHOTS = 512
ROUND_LIMIT = 2000
"""Most candidates of each state one round looks at (oldest first)."""


@dataclass(frozen=True)
class Snapshot:
    at: float
    ends: dict[str, dict[int, int]]
    """Per topic (the tasks topic and the named queues' of that round's candidates)."""


@dataclass(frozen=True)
class Round:
    """What one round did."""

    resent_queued: int = 0
    requeued_in_progress: int = 0
    restored_scheduled: int = 0
    """Scheduled tasks put back into the due set (they were in neither it nor the dispatching set)."""


class Reconciler:
    """The repair loop of one worker (it acts only while it holds the lock)."""

    def __init__(self, settings: Settings, store: RedisStore, offsets_factory: OffsetsFactory,
                 outbox: Outbox, worker_id: str, stopping: threading.Event,
                 on_repaired: Callable[[int, int], None] = lambda queued, in_progress: None) -> None:
        self.settings, self.store, self.outbox = settings, store, outbox
        self.on_repaired = on_repaired
        """Called with (re-sent queued, re-queued in-progress) after a round that repaired some."""
        self.worker_id, self.stopping = worker_id, stopping
        self._offsets_factory = offsets_factory
        self.due = DueSet(store)
        self._offsets: Offsets | None = None
        self._snapshots: deque[Snapshot] = deque(maxlen=MAX_SNAPSHOTS)
        self.thread = threading.Thread(target=self._loop, name="yadtq-repair", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _loop(self) -> None:
        interval = self.settings.repair_interval
        if self.stopping.wait(random.uniform(0.2, 1.0) * interval):  # spreads workers
            return
        while True:
            try:
                done = self.run_once()
                if done is not None and (done.resent_queued or done.requeued_in_progress):
                    self.on_repaired(done.resent_queued, done.requeued_in_progress)
                    log.warning("reconciler repaired %d tasks: %d queued re-sent, %d in-progress "
                                "re-queued", done.resent_queued + done.requeued_in_progress,
                                done.resent_queued, done.requeued_in_progress)
            except YadtqError as exc:
                log.warning("repair round failed: %s", exc)
                self._drop_offsets()
            except Exception:  # the repair loop must outlive any one bad round
                log.exception("repair round failed")
                self._drop_offsets()
            if self.stopping.wait(interval):
                break
        try:
            self.store.release_lock(LOCK, self.worker_id)
        except YadtqError:
            pass
        self._drop_offsets()

    def _drop_offsets(self) -> None:
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None

    # ------------------------------------------------------------------ one round
    def run_once(self, now: float | None = None) -> Round | None:
        """One round if this worker leads (None otherwise)."""
        ttl = max(3 * self.settings.repair_interval, 10.0)
        if not self.store.acquire_lock(LOCK, self.worker_id, ttl):
            self._snapshots.clear()  # another leader: our snapshots would be stale when we lead
            return None
        restored = self.due.restore()
        if restored:
            log.warning("reconciler put %d scheduled tasks back into the due set (in neither the due "
                        "nor the dispatching set): %s", len(restored), ", ".join(restored[:5]))
        if self._offsets is None:
            self._offsets = self._offsets_factory(self.settings)
        offsets = self._offsets
        t = time.time() if now is None else now
        older = t - self.settings.repair_after
        candidates = [*self.store.stale(TaskState.QUEUED, older, limit=ROUND_LIMIT),
                      *self.store.stale(TaskState.IN_PROGRESS, older, limit=ROUND_LIMIT)]
        base = self.settings.topic
        ends, committed, partitions = self._read(offsets, {base} | {
            queue_topic(base, c.queue, c.priority) for c in candidates if not c.problem})
        self._snapshots.append(Snapshot(t, ends))
        late_after = self.settings.heartbeat_interval * 2
        busy = {w.current_task for w in self.store.workers(late_after=late_after)
                if w.status is not WorkerStatus.DEAD and w.current_task}
        chosen: list[Task] = []
        waiting: dict[tuple[str, int], int] = {}
        dispatching = self.due.dispatching([t.id for t in candidates if t.state is TaskState.QUEUED])
        for task in candidates:
            if task.problem or task.state.is_final or task.id in dispatching:
                continue
            if task.state is TaskState.IN_PROGRESS and task.id in busy:
                continue
            topic = queue_topic(base, task.queue, task.priority)
            if topic not in partitions:
                continue  # its topic's offsets could not be read this round
            partition = offsets.partition_of(task.id, partitions[topic])
            if not self._consumed_past(task, topic, partition, committed[topic]):
                waiting[topic, partition] = waiting.get((topic, partition), 0) + 1
            elif self._mark(task):
                chosen.append(task)
        if waiting:
            log.debug("round: %d candidates still behind their partition's committed offset %s "
                      "(committed %s, snapshot ends %s)", sum(waiting.values()), waiting, committed,
                      self._snapshots[0].ends if self._snapshots else None)
        errors = self.outbox.resend([Envelope(t.id, t.name, t.args, t.created_at, t.queue,
                                              t.priority) for t in chosen])
        resent = requeued = 0
        for task, err in zip(chosen, errors, strict=True):
            if err is not None:
                log.warning("could not re-send task %s (tried again in a later round): %s", task.id, err)
                continue
            log.info("task %s (%s) %s", task.id, task.name, "re-sent" if task.state is TaskState.QUEUED
                     else "re-queued and re-sent")
            if task.state is TaskState.QUEUED:
                resent += 1
            else:
                requeued += 1
        self.store.record_repairs(self.worker_id, resent, requeued)
        return Round(resent, requeued, len(restored))

    def _read(self, offsets: Offsets, topics: set[str]) -> tuple[
            dict[str, dict[int, int]], dict[str, dict[int, int]], dict[str, int]]:
        """Per topic: end offsets, committed offsets and partition count. A named queue's topic
        that cannot be read (not created yet) is left out: its tasks wait for a later round."""
        ends: dict[str, dict[int, int]] = {}
        committed: dict[str, dict[int, int]] = {}
        partitions: dict[str, int] = {}
        for topic in sorted(topics):
            try:
                count = offsets.partitions(topic)
                ends[topic] = offsets.end_offsets(count, topic)
                committed[topic] = offsets.committed(topic)
                partitions[topic] = count
            except YadtqError as exc:
                if topic == self.settings.topic:
                    raise
                log.info("offsets of %s not readable this round: %s", topic, exc)
        return ends, committed, partitions

    def _consumed_past(self, task: Task, topic: str, partition: int,
                       committed: dict[int, int]) -> bool:
        """True when the group committed past every message that could carry this task (a
        snapshot after its last change plus the send margin that covered its topic)."""
        after = task.updated_at + SEND_MARGIN_SECONDS
        snap = next((s for s in self._snapshots if s.at >= after and topic in s.ends), None)
        return (snap is not None
                and committed.get(partition, 0) >= snap.ends[topic].get(partition, 0))

    def _mark(self, task: Task) -> bool:
        """Note the repair in the task's history (compare-and-set on its state and attempt): an
        in-progress task goes back to queued. False if it changed meanwhile."""
        if task.state is TaskState.IN_PROGRESS:
            note = (f"re-queued by the reconciler: nobody runs it (worker {task.worker or '?'}) and its "
                    "partition was consumed past it")
            moved = self.store.transition(task.id, TaskState.IN_PROGRESS, TaskState.QUEUED, note,
                                          attempt=task.attempt)
        else:
            note = "re-sent by the reconciler: its partition was consumed past it (no message behind it)"
            moved = self.store.transition(task.id, TaskState.QUEUED, TaskState.QUEUED, note,
                                          attempt=task.attempt)
        return moved == 1
