"""Outcome writes (``worker/outcomes.py``): the runner's thread does not wait for a write behind
another, the messages count as being written until their outcomes are in, and a failure nobody
foresaw on the writer's thread reaches the runner instead of leaving the messages unfinished."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from tests.polling import eventually
from worker.metrics import Metrics
from worker.outcomes import OutcomeWriter
from worker.state import RedisCalls, RunnerStatus
from yadtq.broker_types import Record
from yadtq.models import Outcome, TaskState


class SlowStore:
    """``finish`` holds the write of task "slow" until ``release``; "bug" raises what no policy
    knows (a bug), every time."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written: list[str] = []

    def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> list[bool]:
        ids = [o.task_id for o in outcomes]
        if "slow" in ids:
            self.release.wait(5)
        if "bug" in ids:
            raise RuntimeError("a bug nobody foresaw")
        self.written += ids
        return [True] * len(ids)


def item(task_id: str, offset: int) -> tuple[Record, Outcome]:
    return Record(0, offset, b"{}"), Outcome(task_id, 1, TaskState.COMPLETED, result=1)


def writer(store: SlowStore) -> tuple[OutcomeWriter, RunnerStatus]:
    status = RunnerStatus()
    return OutcomeWriter(store, "w1", RedisCalls(threading.Event()), status, Metrics(),  # type: ignore[arg-type]
                         outbox=None), status  # type: ignore[arg-type]


def test_a_write_behind_another_does_not_hold_its_thread() -> None:
    store = SlowStore()
    w, status = writer(store)
    done: list[str] = []
    slow = threading.Thread(target=w.write, args=([item("slow", 0)], lambda: done.append("slow"),
                                                   lambda exc: done.append(f"failed {exc}")))
    slow.start()
    assert eventually(lambda: status.writing == 1, 5)
    before = time.monotonic()
    w.write([item("a", 1), item("b", 2)], lambda: done.append("ab"), lambda exc: done.append("x"))
    assert time.monotonic() - before < 1.0  # handed over, not waited for
    assert status.writing == 2 and done == [] and store.written == []
    store.release.set()
    # the writes go in order; their callbacks run on two threads (the slow one's after it let the
    # next write go), in either order: under load "ab" came first and the test failed once
    assert eventually(lambda: sorted(done) == ["ab", "slow"], 5)
    assert store.written == ["slow", "a", "b"] and status.writing == 0
    slow.join(5)
    w.close()


def test_a_bug_on_the_writers_thread_reaches_the_runner() -> None:
    store = SlowStore()
    w, status = writer(store)
    failed: list[Any] = []
    done: list[str] = []
    slow = threading.Thread(target=w.write, args=([item("slow", 0)], lambda: done.append("slow"),
                                                   failed.append))
    slow.start()
    assert eventually(lambda: status.writing == 1, 5)
    w.write([item("bug", 1)], lambda: done.append("bug"), failed.append)  # queued: the writer's
    store.release.set()
    assert eventually(lambda: len(failed) == 1, 5)
    assert isinstance(failed[0], RuntimeError) and done == ["slow"]  # never called finished
    assert eventually(lambda: status.writing == 0, 5)  # nothing counts as being written any more
    slow.join(5)
    w.close()
