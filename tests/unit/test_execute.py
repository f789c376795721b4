"""``run_task``: whatever a task does, one failed attempt with a readable error (never a dead thread)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from worker.execute import TimeLimitExceeded, describe_error, run_task
from yadtq.registry import TaskSpec


def spec(fn: Callable[..., Any]) -> TaskSpec:
    return TaskSpec("T", fn, ())


class BadStr(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for you")


def deep(n: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(n):
        out = [out]
    return out


def raise_(exc: BaseException) -> Callable[[], None]:
    def fn() -> None:
        raise exc
    return fn


@pytest.mark.parametrize(("fn", "expected", "retryable"), [
    (lambda: sys.exit(3), "SystemExit: the task called sys.exit(3)", False),
    (lambda: sys.exit(), "SystemExit: the task called sys.exit()", False),
    (raise_(KeyboardInterrupt()), "KeyboardInterrupt", False),
    (raise_(GeneratorExit()), "GeneratorExit", False),
    (raise_(BadStr()), "BadStr: <the error's text could not be read: ValueError>", True),
    (raise_(RuntimeError("bad \ud800 text")), "RuntimeError: bad \\ud800 text", True),
    (lambda: deep(100_000), "result is not JSON-serialisable: nested too deep", False),
    (lambda: "lone \udfff", "result is not valid Unicode text (lone surrogate)", False),
    (lambda: float("nan"), "result is not a finite number: nan", False),
    (lambda: object(), "result is not JSON-serialisable: Object of type object is not JSON serializable",
     False),
])
def test_every_misbehaviour_is_one_failed_attempt(fn: Callable[[], Any], expected: str,
                                                  retryable: bool) -> None:
    result = run_task(spec(fn), ())
    assert (result.ok, result.error, result.retryable) == (False, expected, retryable)
    assert result.error is not None
    result.error.encode("utf-8")  # storable text


def test_the_worker_s_own_time_limit_passes_through() -> None:
    with pytest.raises(TimeLimitExceeded):
        run_task(spec(raise_(TimeLimitExceeded())), ())


def test_a_long_error_is_cut() -> None:
    assert len(describe_error(RuntimeError("x" * 10_000))) == 2000


def test_a_good_result_is_kept() -> None:
    result = run_task(spec(lambda a, b: [a, b, {"k": None}]), (1, "2"))
    assert (result.ok, result.value) == (True, [1, "2", {"k": None}])
