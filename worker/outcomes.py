"""Writing outcomes: a runner thread hands its outcomes over and takes its next task.

``OutcomeWriter.write`` posts the outcomes to one ``Coalescer`` (overlapping writes share a round
trip) and returns; once they are in Redis their messages are finished (``then``), and only then
can the consume loop commit past them. The thread does not wait: with 10 ms I/O tasks the wait
for the write had been as long as the task itself (``bench_concurrency.py --phase io``). Until
then the writes count in ``RunnerStatus.writing``, so a draining worker waits for them.

The worker's error policy applies on whichever thread saw the error (``write_now``): an outage is
waited out until the worker stops (the messages are then redelivered, not finished), an outcome
Redis refuses for good is written again as a plain failure, and if that is refused too its
message is dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from worker.coalesce import Coalescer
from worker.execute import valid_text
from worker.metrics import Metrics
from worker.outbox import Outbox
from worker.state import RedisCalls, RunnerStatus
from yadtq.broker_types import Record
from yadtq.errors import StoreError
from yadtq.models import Outcome, TaskState
from yadtq.store import RedisStore

log = logging.getLogger("yadtq.worker")


class OutcomeWriter:
    """Writes outcomes for the runner's threads; owns the coalescer of the writes."""

    def __init__(self, store: RedisStore, worker_id: str, redis: RedisCalls, status: RunnerStatus,
                 metrics: Metrics, outbox: Outbox) -> None:
        self.store, self.worker_id, self.redis = store, worker_id, redis
        self.status, self.metrics, self.outbox = status, metrics, outbox
        self.finishes: Coalescer[Outcome, bool] = Coalescer(
            lambda o: store.finish(worker_id, o), "ends")

    def close(self) -> None:
        self.finishes.close()

    def write(self, outcomes: list[tuple[Record, Outcome]], then: Callable[[], object],
              failed: Callable[[Exception], object], here: bool = True) -> None:
        """Write the outcomes, then ``then()`` (their messages are finished). The caller does not
        wait when another write is under way; nothing is finished if the worker stops first. A
        failure nobody foresaw (a bug: neither an outage nor a refusal) goes to ``failed``, on
        whichever thread saw it, so the messages are never left unfinished and forgotten.
        ``here=False``: never on the caller's thread (the event loop's must not wait for Redis)."""
        if not outcomes:
            then()
            return
        with self.status.lock:
            self.status.writing += 1

        def written(answers: list[bool] | None, error: BaseException | None) -> None:
            try:
                if answers is not None:
                    self._fenced(outcomes, answers)
                    then()
                elif self.write_now(outcomes):  # the write failed: the slow way, here
                    then()
            except Exception as exc:  # noqa: BLE001 - handed to the runner, which queues them again
                failed(exc)
            finally:
                with self.status.lock:
                    self.status.writing -= 1

        try:
            self.finishes.post([o for _, o in outcomes], written, here=here)
        except BaseException:
            with self.status.lock:
                self.status.writing -= 1
            raise

    def write_now(self, outcomes: list[tuple[Record, Outcome]]) -> bool:
        """Write straight to the store with the worker's error policy; False if the worker stopped
        meanwhile (nothing written, the messages are redelivered)."""
        try:
            written = self.redis.call(
                lambda: self.store.finish(self.worker_id, [o for _, o in outcomes]), "write results"
            )
        except StoreError as exc:
            if len(outcomes) > 1:
                return all(self.write_now([one]) for one in outcomes)
            return self._refused(outcomes[0], str(exc))
        if written is None:
            return False
        self._fenced(outcomes, written)
        return True

    def _refused(self, item: tuple[Record, Outcome], reason: str) -> bool:
        rec, outcome = item
        if outcome.state is TaskState.FAILED and outcome.result is None and outcome.note == "not stored":
            self.outbox.dead_letter(rec, f"Redis refused the outcome of task {outcome.task_id}: {reason}")
            return True
        plain = Outcome(
            outcome.task_id,
            outcome.attempt,
            TaskState.FAILED,
            note="not stored",
            error=f"the outcome could not be stored ({valid_text(reason)[:500]})",
        )
        return self.write_now([(rec, plain)])

    def _fenced(self, outcomes: list[tuple[Record, Outcome]], written: list[bool]) -> None:
        for (_, outcome), ok in zip(outcomes, written, strict=True):
            if not ok:
                with self.status.lock:
                    self.status.fenced += 1
                self.metrics.fenced.inc()
                log.warning(
                    "task %s attempt %d: outcome discarded, a newer attempt owns the task",
                    outcome.task_id,
                    outcome.attempt,
                )
