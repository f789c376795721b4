"""The built-in tasks: ADD, SUB, MUL (as in the original YADTQ), DIV and SLEEP."""

from __future__ import annotations

import time

from yadtq.errors import PermanentTaskError
from yadtq.registry import Registry, default_registry

Number = int | float

MAX_SLEEP_SECONDS = 3600.0


def register_builtins(registry: Registry) -> None:
    """Add the built-in tasks to ``registry``."""

    @registry.task("ADD", max_attempts=1)
    def add(a: int | float, b: int | float) -> Number:
        """a + b"""
        return a + b

    @registry.task("SUB", max_attempts=1)
    def sub(a: int | float, b: int | float) -> Number:
        """a - b"""
        return a - b

    @registry.task("MUL", max_attempts=1)
    def mul(a: int | float, b: int | float) -> Number:
        """a * b"""
        return a * b

    @registry.task("DIV", max_attempts=1)
    def div(a: int | float, b: int | float) -> Number:
        """a / b; dividing by zero fails the task (it is not retried)."""
        if b == 0:
            raise PermanentTaskError("division by zero")
        return a / b

    @registry.task("SLEEP", max_attempts=1, time_limit=MAX_SLEEP_SECONDS + 60)
    def sleep(seconds: int | float) -> Number:
        """Sleep for the given seconds (0-3600) and return them: a long task for demos and tests."""
        if not 0 <= seconds <= MAX_SLEEP_SECONDS:
            raise PermanentTaskError(f"seconds must be between 0 and {MAX_SLEEP_SECONDS:g}")
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))  # short steps, so a time limit can interrupt it
        return seconds


register_builtins(default_registry)
