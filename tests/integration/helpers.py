"""Helpers for tests against the real services."""

from __future__ import annotations

import time
from collections.abc import Callable

from yadtq import Client
from yadtq.models import TaskState


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_balanced(client: Client, n_workers: int, partitions: int, timeout: float = 60.0,
                  logs: Callable[[], str] | None = None) -> None:
    """Until ``n_workers`` alive workers each own partitions and together own all of them."""
    def balanced() -> bool:
        alive = [w for w in client.workers() if w.status.value == "alive"]
        owned = [p for w in alive for p in w.partitions]
        return (len(alive) == n_workers and all(w.partitions for w in alive)
                and sorted(owned) == list(range(partitions)))
    try:
        wait_until(balanced, timeout, f"{n_workers} workers to share {partitions} partitions")
    except AssertionError as exc:
        seen = [(w.id, w.status.value, w.partitions) for w in client.workers()]
        raise AssertionError(f"{exc}; workers: {seen}\n{logs() if logs else ''}") from None


def wait_all_final(client: Client, total: int, timeout: float) -> None:
    def done() -> bool:
        c = client.counts()
        return c[TaskState.COMPLETED] + c[TaskState.FAILED] >= total
    wait_until(done, timeout, f"{total} tasks to finish (now {client.counts()})", interval=0.2)
