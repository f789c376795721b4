"""Running one task function: time limit, error classification, JSON-safe results."""

from __future__ import annotations

import ctypes
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from yadtq.errors import InvalidTask, PermanentTaskError
from yadtq.registry import TaskSpec


class TimeLimitExceeded(BaseException):
    """Raised inside a task's thread when it runs past its time limit.

    A ``BaseException`` (as in dramatiq), so a task's own ``except Exception`` cannot swallow it."""


@dataclass(frozen=True)
class Result:
    """What one attempt produced."""

    ok: bool
    value: Any = None
    error: str | None = None
    retryable: bool = False
    seconds: float = 0.0


MAX_RESULT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 2000


def run_task(spec: TaskSpec, args: tuple[Any, ...]) -> Result:
    """Call the task function; never raises (except ``TimeLimitExceeded`` from the watchdog)."""
    t0 = time.perf_counter()
    if spec.fn is None:
        return Result(False, error=f"task {spec.name} is not registered on this worker")
    try:
        value = spec.fn(*args)
    except TimeLimitExceeded:
        raise
    except (PermanentTaskError, InvalidTask, TypeError) as exc:
        return Result(False, error=_error(exc), retryable=False, seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - any error of user code is a failed attempt
        return Result(False, error=_error(exc), retryable=True, seconds=time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        if isinstance(value, float) and not math.isfinite(value):
            return Result(False, error=f"result is not a finite number: {value}", seconds=seconds)
        return Result(False, error=f"result is not JSON-serialisable: {exc}", seconds=seconds)
    if len(encoded) > MAX_RESULT_BYTES:
        return Result(False, error=f"result is {len(encoded)} bytes; the limit is {MAX_RESULT_BYTES}",
                      seconds=seconds)
    return Result(True, value=value, seconds=seconds)


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PermanentTaskError) else str(exc)
    return text[:MAX_ERROR_CHARS]


def interrupt_thread(thread: threading.Thread, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` inside ``thread`` at its next bytecode (how dramatiq enforces time limits).

    A thread blocked inside C code (a long ``time.sleep``, a socket read) sees it only when that
    call returns; task functions that wait should wait in short steps.
    """
    ident = thread.ident
    if ident is None:
        return False
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
    if done > 1:  # affected more than one thread: undo
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
        return False
    return bool(done == 1)
