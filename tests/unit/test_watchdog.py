"""The watchdog's scan: how often the consume loop reads every running task, and what a scan
acts on (a task over its limit, a cancel seen) and leaves alone (one within its limit)."""

from __future__ import annotations

import time
from typing import Any

from worker import watchdog as watchdog_module
from worker.execute import TaskCancelled, TimeLimitExceeded
from worker.state import RunnerStatus, Running
from worker.watchdog import Watchdog


class _Runner:
    def __init__(self) -> None:
        self.status = RunnerStatus()


def _running(key: int, deadline: float, stops: list[Any], cancel_seen: float | None = None) -> Running:
    return Running(f"t{key}", "T", 1, None, None, key,  # type: ignore[arg-type]
                   lambda kind: stops.append((key, kind)), deadline, 1.0, cancel_seen=cancel_seen)


class _CountingDict(dict):  # type: ignore[type-arg]
    reads = 0

    def values(self) -> Any:
        _CountingDict.reads += 1
        return super().values()


def test_a_loop_turning_fast_scans_the_running_tasks_once_per_scan_interval() -> None:
    runner = _Runner()
    stops: list[Any] = []
    runner.status.running = _CountingDict(
        {k: _running(k, time.monotonic() + 60, stops) for k in range(1000)})
    dog = Watchdog(runner, grace=5.0)  # type: ignore[arg-type]
    _CountingDict.reads = 0
    turns = 0
    end = time.monotonic() + 0.2
    while time.monotonic() < end:  # the consume loop: a turn every 1 ms at most
        turns += 1
        if dog.due():
            assert dog.check() is None
        time.sleep(0.001)
    assert turns > 50
    # 0.2 s at one scan per SCAN_SECONDS (0.05): ~4, never one per turn
    assert 1 <= _CountingDict.reads <= 0.2 / watchdog_module.SCAN_SECONDS + 2
    assert stops == []  # all within their limits: none interrupted


def test_a_scan_interrupts_only_the_tasks_over_their_limit_or_cancelled() -> None:
    runner = _Runner()
    stops: list[Any] = []
    now = time.monotonic()
    runner.status.running = {
        1: _running(1, now + 60, stops),
        2: _running(2, now - 0.1, stops),  # over its limit, within the grace period
        3: _running(3, now + 60, stops, cancel_seen=now),  # a cancel seen
    }
    dog = Watchdog(runner, grace=5.0)  # type: ignore[arg-type]
    assert dog.due()
    assert dog.check() is None
    assert sorted(stops) == [(2, TimeLimitExceeded), (3, TaskCancelled)]
    assert not dog.due()  # just scanned


def test_a_task_past_its_grace_period_is_named_for_escalation() -> None:
    runner = _Runner()
    stops: list[Any] = []
    stuck = _running(7, time.monotonic() - 10, stops)
    runner.status.running = {7: stuck}
    assert Watchdog(runner, grace=5.0).check() is stuck  # type: ignore[arg-type]
