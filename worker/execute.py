"""Running one task function: its result or its error, always as safe JSON and text.

``run_task`` never raises because of what a task does: any exception (``SystemExit``,
``KeyboardInterrupt`` and other ``BaseException`` included), an exception whose ``str`` raises, a
result that is not JSON or nested too deep, an error text that is not valid Unicode: each is one
failed attempt with a readable error. Only the worker's own interrupts (``TimeLimitExceeded``,
``TaskCancelled``) pass through.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from yadtq.errors import InvalidTask, PermanentTaskError
from yadtq.models import TaskState
from yadtq.registry import TaskSpec
from yadtq.text import safe_text
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.worker")


class Interrupt(BaseException):
    """Raised inside a task's thread by the worker (``interrupt_thread``) to stop the task.

    A ``BaseException`` (as in dramatiq), so a task's own ``except Exception`` cannot swallow it."""


class TimeLimitExceeded(Interrupt):
    """The task ran past its time limit."""


class TaskCancelled(Interrupt):
    """A cancel was requested for the running task (``Client.cancel``)."""


@dataclass(frozen=True)
class Result:
    """What one attempt produced."""

    ok: bool
    value: Any = None
    error: str | None = None
    retryable: bool = False
    seconds: float = 0.0
    cancelled: bool = False
    """The worker interrupted the attempt because a cancel was requested."""


MAX_RESULT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 2000
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def run_task(spec: TaskSpec, args: tuple[Any, ...]) -> Result:
    """Call the task function; never raises (except an ``Interrupt`` from the watchdog)."""
    t0 = time.perf_counter()
    if spec.fn is None:
        return Result(False, error=f"task {spec.name} is not registered on this worker")
    try:
        value = spec.fn(*args)
    except Interrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any error of user code is a failed attempt
        return error_result(exc, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    return check_result(value, seconds)


def error_result(exc: BaseException, seconds: float) -> Result:
    """The failed attempt for an exception raised by a task. Errors retrying cannot fix (bad
    arguments, ``PermanentTaskError``) and a task that tried to end the process or the thread
    (``SystemExit``, ``KeyboardInterrupt``: that ends only this attempt) are not retried."""
    final = (PermanentTaskError, InvalidTask, TypeError, SystemExit, KeyboardInterrupt, GeneratorExit)
    return Result(False, error=describe_error(exc), retryable=not isinstance(exc, final),
                  seconds=seconds)


def check_result(value: Any, seconds: float = 0.0) -> Result:
    """``value`` as a successful result if it is small, finite JSON; otherwise a failed attempt."""
    try:
        encoded = _ENCODER.encode(value)
    except RecursionError:
        return Result(False, error="result is not JSON-serialisable: nested too deep", seconds=seconds)
    except (TypeError, ValueError) as exc:
        if isinstance(value, float) and not math.isfinite(value):
            return Result(False, error=f"result is not a finite number: {value}", seconds=seconds)
        return Result(False, error=f"result is not JSON-serialisable: {valid_text(exc)}",
                      seconds=seconds)
    except Exception as exc:  # noqa: BLE001 - a __float__/__iter__ that raises inside the encoder
        return Result(False, error=f"result is not JSON-serialisable: {describe_error(exc)}",
                      seconds=seconds)
    if len(encoded) > MAX_RESULT_BYTES:
        return Result(False, error=f"result is {len(encoded)} bytes; the limit is {MAX_RESULT_BYTES}",
                      seconds=seconds)
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        return Result(False, error="result is not valid Unicode text (lone surrogate)", seconds=seconds)
    return Result(True, value=value, seconds=seconds)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` (just the message for ``PermanentTaskError``), as valid text, never raising."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except BaseException as inner:  # noqa: BLE001 - an exception whose __str__ raises
        message = f"<the error's text could not be read: {type(inner).__name__}>"
    if isinstance(exc, SystemExit):
        message = f"the task called sys.exit({message})" if message else "the task called sys.exit()"
    text = message if isinstance(exc, PermanentTaskError) else (f"{name}: {message}" if message else name)
    return valid_text(text)[:MAX_ERROR_CHARS]


def valid_text(value: object) -> str:
    """``str(value)`` as storable Unicode, its text otherwise kept (a lone surrogate becomes
    ``\\udXXX``; ``yadtq.text.safe_text`` is for showing text); never raises."""
    try:
        text = value if isinstance(value, str) else str(value)
    except BaseException:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}>"
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def interrupt_thread(thread: threading.Thread, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` inside ``thread`` at its next bytecode (how dramatiq enforces time limits).

    A thread blocked inside C code (a long ``time.sleep``, a socket read) sees it only when that
    call returns; the worker escalates when a task has not stopped a grace period later.
    """
    ident = thread.ident
    if ident is None:
        return False
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
    if done > 1:  # affected more than one thread: undo
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
        return False
    return bool(done == 1)


def log_result(env: Envelope, attempt: int, result: Result, log_args: bool) -> None:
    """Log an attempt's end: a failure or a cancel at INFO, a success at DEBUG only."""
    if result.ok and not result.cancelled and not log.isEnabledFor(logging.DEBUG):
        return  # the common case: nothing is logged, so nothing is formatted
    args = f" args={safe_text(repr(env.args), 300)}" if log_args else ""
    fields = {"task_id": env.id, "task": env.name, "attempt": attempt,
              "seconds": round(result.seconds, 6)}
    if result.cancelled:
        log.info("task %s %s attempt %d cancelled while running, after %.3f s", env.id,
                 env.name, attempt, result.seconds,
                 extra={**fields, "state": TaskState.CANCELLED.value})
    elif result.ok:
        log.debug("task %s %s attempt %d completed in %.3f s%s", env.id, env.name, attempt,
                  result.seconds, args, extra={**fields, "state": TaskState.COMPLETED.value})
    else:
        error = safe_text(result.error or "", 300)
        log.info("task %s %s attempt %d failed: %s%s", env.id, env.name, attempt, error, args,
                 extra={**fields, "state": TaskState.FAILED.value, "error": error})
