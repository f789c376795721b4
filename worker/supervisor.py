"""The supervisor: ``yadtq-worker`` runs the real worker as a child process and replaces it when
it ends abnormally (a task that would not stop, a crash, ``kill -9``), so a worker host keeps its
worker without systemd or Docker restart policies. Light on purpose: it imports neither Kafka nor
Redis.

Signals: the first SIGTERM/SIGINT is passed on (the child stops warm) and nothing is restarted
afterwards; a second is passed on too (the child exits at once). If the supervisor itself is
killed, the child is killed with it (Linux: ``PR_SET_PDEATHSIG``; elsewhere the child notices its
parent is gone within a second).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from worker.recycle import EXIT_RECYCLE

log = logging.getLogger("yadtq.supervisor")

CHILD_ENV = "YADTQ_WORKER_CHILD"
"""Set in the child's environment: the parent's pid."""
NO_RESTART_CODES = (0, 2, 130, 143)
"""A clean stop, a usage/settings error, a stop by signal: not restarted."""
BACKOFF_START, BACKOFF_MAX, STABLE_SECONDS = 1.0, 30.0, 60.0


def supervise(argv: Sequence[str]) -> int:
    """Run ``python -m worker.main ARGV`` as a child until it stops cleanly; its exit code."""
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None
    signals = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM if signals == 1 else signal.SIGKILL if signals > 2
                              else signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    delay = BACKOFF_START
    restarts = 0
    while True:
        env = {**os.environ, CHILD_ENV: str(os.getpid())}
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "worker.main", *argv], env=env,
                                 preexec_fn=_die_with_parent)  # no threads yet here
        code = _wait(child)
        if stopping.is_set() or code in NO_RESTART_CODES:
            return 0 if code in (0, 130, 143) and stopping.is_set() else code
        if code == EXIT_RECYCLE:  # stopped warm for a fresh process (memory, tasks): not a crash
            log.info("worker process %d recycled; starting a new one", child.pid)
            continue
        if time.monotonic() - started > STABLE_SECONDS:
            delay = BACKOFF_START
        restarts += 1
        log.warning("worker process %d ended with code %d; starting a new one in %.0f s (restart %d)",
                    child.pid, code, delay, restarts)
        if stopping.wait(delay):
            return 0
        delay = min(BACKOFF_MAX, delay * 2)


def _wait(child: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the supervisor dies."""
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(name, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def watch_parent() -> None:
    """In the child: exit when the supervisor is gone (where ``PR_SET_PDEATHSIG`` is missing)."""
    parent = os.environ.get(CHILD_ENV, "")
    if not parent.isdigit():
        return

    def loop() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != int(parent):
                os._exit(1)

    threading.Thread(target=loop, name="yadtq-parent-watch", daemon=True).start()
