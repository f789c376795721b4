"""Processes for ``@task(isolation="process")`` tasks: CPU-bound work off the worker's GIL.

A runner thread that gets such a task borrows a child process (``worker.procchild``, started on
first use, kept for the next tasks, at most ``size`` of them), sends it the task as one JSON line
and waits for the answer in short steps, so the watchdog's interrupt (time limit, cancel) reaches
the waiting thread at once: the child is then killed (whatever it was doing, even a C loop) and a
new one is started for the next task. A child that dies (``os._exit``, a crash, the OOM killer) is
a failed attempt with its exit status, retried like any error. Only JSON: requests and answers are
JSON, arguments and results are already JSON values.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

from worker.execute import Result
from yadtq.registry import Registry, TaskSpec

log = logging.getLogger("yadtq.worker.procpool")

_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
STEP = 0.05
"""How often a waiting thread wakes (in C, a ``select``), so an interrupt lands within this."""


def process_modules(registry: Registry) -> list[str]:
    """The modules that define the registry's process tasks (what a child imports)."""
    return sorted({spec.fn.__module__ for spec in registry.specs()
                   if spec.isolation == "process" and spec.fn is not None})


class Child:
    """One ``worker.procchild`` process and its pipes."""

    def __init__(self, modules: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.procchild", *modules], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1,
            start_new_session=True)  # a Ctrl+C meant for the worker is not the task's to see

    def ask(self, spec: TaskSpec, args: tuple[Any, ...]) -> Result:
        """Run one task; the caller kills this child if anything interrupts the wait."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        started = time.perf_counter()
        try:
            self.proc.stdin.write(_ENCODER.encode({"name": spec.name, "args": list(args)}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return self._ended(started)
        while not select.select([self.proc.stdout], [], [], STEP)[0]:
            pass
        line = self.proc.stdout.readline()
        if not line:
            return self._ended(started)
        try:
            answer = json.loads(line)
            return Result(bool(answer["ok"]), answer.get("value"), answer.get("error"),
                          bool(answer.get("retryable")), float(answer.get("seconds") or 0.0))
        except (ValueError, KeyError, TypeError) as exc:
            return Result(False, error=f"unreadable answer from the task's process: {exc}",
                          seconds=time.perf_counter() - started)

    def _ended(self, started: float) -> Result:
        code = self.proc.wait()
        self.alive = False
        return Result(False, error=f"the task's process ended (exit status {code})",
                      retryable=True, seconds=time.perf_counter() - started)

    alive = True

    def kill(self) -> None:
        self.alive = False
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not end the task process %d: %s", self.proc.pid, exc)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


class ProcPool:
    """Up to ``size`` children, started on demand; one task at a time each."""

    def __init__(self, registry: Registry, size: int) -> None:
        self.modules = process_modules(registry)
        self.size = max(1, size)
        self._idle: list[Child] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    def run(self, spec: TaskSpec, args: tuple[Any, ...]) -> Result:
        """Run ``spec`` in a child. An interrupt raised in this thread meanwhile kills the child
        and propagates (the runner turns it into the time-limit or cancel outcome)."""
        child = self._borrow()
        try:
            result = child.ask(spec, args)
        except BaseException:
            child.kill()
            self._give_back(child)
            raise
        self._give_back(child)
        return result

    def _borrow(self) -> Child:
        with self._cond:
            while not self._idle and self._count >= self.size and not self._closed:
                self._cond.wait(STEP)  # short waits: an interrupt lands between them
            if self._closed:
                raise RuntimeError("the worker is stopping")
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return Child(self.modules)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _give_back(self, child: Child) -> None:
        with self._cond:
            if child.alive and child.proc.poll() is None and not self._closed:
                self._idle.append(child)
            else:
                if child.alive:
                    child.kill()
                self._count -= 1
            self._cond.notify()

    def close(self) -> None:
        """End the idle children (busy ones end when their task returns or the worker exits)."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for child in idle:
            if child.proc.stdin is not None:
                try:
                    child.proc.stdin.close()  # end of input: the child exits
                except OSError:
                    pass
            try:
                child.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.kill()


def default_size(concurrency: int) -> int:
    """One process per core, never more than the runner threads that could use them."""
    return max(1, min(concurrency, os.cpu_count() or 1))
