"""Recycling: a worker process that grew past its memory limit, or ran its number of tasks, stops
warm, and its supervisor starts a fresh one at once.

Task code leaks: a cache that only grows, a library that keeps every response, a C extension that
never frees. Without a limit the process grows until the kernel's OOM killer SIGKILLs it, and every
task in flight dies with it: each is delivered again and comes back a suspect, run alone, charged a
death (``worker/suspects.py``). With ``max_memory_mb`` (``YADTQ_MAX_MEMORY_MB``) the worker, once its
resident memory passes the limit after a task, stops taking messages, finishes the tasks it runs,
hands back those it had not started (they are delivered again, not charged), commits, leaves the
group and exits with ``EXIT_RECYCLE``; the supervisor starts a new process at once, without the
back-off of a crash. ``max_tasks_per_process`` does the same after that many tasks (Celery's
``--max-tasks-per-child``; the tasks in hand when it is reached are finished first, so a process
may run a few more). A process only recycles after it ran a task, so a limit below its size at start
cannot make it restart in a loop: it then recycles after every task (and says so at start).
"""

from __future__ import annotations

import os
from collections.abc import Callable

EXIT_RECYCLE = 76
"""Exit code of a worker that recycled itself: its supervisor starts a fresh one at once."""
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux ``/proc/self/statm``; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            resident = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident * _PAGE / 2**20


class Recycle:
    """Says when the worker should stop for a fresh process, and why."""

    def __init__(self, max_memory_mb: int, max_tasks: int,
                 rss: Callable[[], float | None] = rss_mb) -> None:
        self.max_memory_mb = max_memory_mb
        self.max_tasks = max_tasks
        self._rss = rss
        self._checked = 0

    def reason(self, tasks: int) -> str | None:
        """Why to recycle after ``tasks`` tasks (None: not now). The memory is read only when
        tasks ended since the last read (one small read of ``/proc``, ~10 us)."""
        if tasks <= 0:
            return None
        if self.max_tasks and tasks >= self.max_tasks:
            return f"ran {tasks} tasks (the limit is {self.max_tasks} per process)"
        if self.max_memory_mb and tasks != self._checked:
            self._checked = tasks
            mb = self._rss()
            if mb is not None and mb > self.max_memory_mb:
                return (f"is over its memory limit: {mb:.0f} MiB resident, the limit is "
                        f"{self.max_memory_mb} MiB")
        return None

    def too_low(self) -> str | None:
        """At start: why the memory limit is below this process's size (it will recycle after
        every task), or None."""
        mb = self._rss() if self.max_memory_mb else None
        if mb is None or mb <= self.max_memory_mb:
            return None
        return (f"max_memory_mb {self.max_memory_mb} is below this worker's size at start "
                f"({mb:.0f} MiB): it will be replaced after every task")
