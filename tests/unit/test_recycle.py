"""When a worker process stops for a fresh one (``worker/recycle.py``); the real-stack runs are in
``tests/integration/test_recycle.py``."""

from __future__ import annotations

from worker.recycle import Recycle, rss_mb


def test_memory_over_the_limit_after_a_task_recycles() -> None:
    sizes = iter([90.0, 150.0, 170.0])
    r = Recycle(max_memory_mb=160, max_tasks=0, rss=lambda: next(sizes))
    assert r.reason(tasks=0) is None  # nothing ran yet: never (no restart loop)
    assert r.reason(tasks=1) is None  # 90
    assert r.reason(tasks=1) is None  # no task ended since: not read again
    assert r.reason(tasks=2) is None  # 150
    assert r.reason(tasks=3) == "is over its memory limit: 170 MiB resident, the limit is 160 MiB"


def test_a_number_of_tasks_recycles() -> None:
    r = Recycle(max_memory_mb=0, max_tasks=5, rss=lambda: 10_000.0)
    assert r.reason(tasks=4) is None  # no memory limit: its size does not matter
    assert r.reason(tasks=5) == "ran 5 tasks (the limit is 5 per process)"


def test_no_limits_never_recycle_and_never_read_memory() -> None:
    def boom() -> float:
        raise AssertionError("read")
    r = Recycle(max_memory_mb=0, max_tasks=0, rss=boom)
    assert r.reason(tasks=10**6) is None and r.too_low() is None


def test_a_limit_below_the_size_at_start_is_reported() -> None:
    assert Recycle(50, 0, rss=lambda: 80.0).too_low() == (
        "max_memory_mb 50 is below this worker's size at start (80 MiB): it will be replaced "
        "after every task")
    assert Recycle(100, 0, rss=lambda: 80.0).too_low() is None
    assert Recycle(100, 0, rss=lambda: None).reason(1) is None  # no /proc: no memory limit


def test_rss_is_this_process_s_resident_memory() -> None:
    before = rss_mb()
    assert before is not None and 5 < before < 4096
    block = b"\x01" * (64 << 20)
    after = rss_mb()
    assert after is not None and after - before > 50, (before, after)
    del block
