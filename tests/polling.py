"""The one way tests wait: poll a condition until it holds or a deadline passes (never a fixed
sleep standing in for "long enough"). ``eventually`` answers; ``wait_until`` fails the test with
what it was waiting for; ``wait_for`` is the same inside a Textual app (``pilot.pause`` between
checks, so the app keeps running)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


def eventually(pred: Callable[[], object], timeout: float = 3.0, interval: float = 0.02) -> bool:
    """True as soon as ``pred()`` is truthy, False once ``timeout`` seconds passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> None:
    """Until ``pred()`` is truthy; ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    if not eventually(pred, timeout, interval):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def wait_async(pause: Callable[[float], Awaitable[object]], pred: Callable[[], object],
                     timeout: float, what: str, interval: float = 0.02) -> None:
    """``wait_until`` for code inside an event loop: ``pause`` yields to it between checks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await pause(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
