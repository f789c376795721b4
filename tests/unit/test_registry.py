"""The task registry, the ``ADD 2 3`` parser, argument validation and the built-in tasks."""

import time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.execute import run_task
from yadtq import wire
from yadtq.builtins import MAX_SLEEP_SECONDS, register_builtins
from yadtq.errors import InvalidTask, PermanentTaskError
from yadtq.registry import Param, Registry, TaskSpec

# No ``from __future__ import annotations`` here: the decorated functions below keep real type
# objects as annotations; ``test_string_annotations_are_understood`` covers the string form.


@pytest.fixture
def reg() -> Registry:
    r = Registry()
    register_builtins(r)
    return r


def typed_registry() -> Registry:
    r = Registry()
    register_builtins(r)

    @r.task("RESIZE", max_attempts=5, time_limit=30)
    def resize(path: str, width: int, scale: float, ratio: int | float, keep: bool) -> str:
        """Resize an image."""
        return path

    @r.task("TOTAL")
    def total(*nums):  # type: ignore[no-untyped-def]
        return sum(nums)

    @r.task("JOIN")
    def join(sep: str, *parts):  # type: ignore[no-untyped-def]
        return sep.join(parts)

    return r


def err(fn: Any, *args: Any) -> str:
    with pytest.raises(InvalidTask) as info:
        fn(*args)
    return str(info.value)


def reprs(args: tuple[Any, ...]) -> list[str]:
    return [repr(a) for a in args]


# ---------------------------------------------------------------- parse: accepted
@pytest.mark.parametrize("text, name, args", [
    ("ADD 2 3", "ADD", (2, 3)),
    ("add 2 3", "ADD", (2, 3)),
    ("  Add   2     3  ", "ADD", (2, 3)),
    ("\tSUB\t10\t4", "SUB", (10, 4)),
    ("MUL 2.5 -1", "MUL", (2.5, -1)),
    ("DIV -7 +2", "DIV", (-7, 2)),
    ("ADD 1e3 .5", "ADD", (1000.0, 0.5)),
    ("ADD 1E-2 -0", "ADD", (0.01, 0)),
    ("ADD '3' \"4\"", "ADD", (3, 4)),
    ("ADD 0005 1" + "0" * 99, "ADD", (5, 10**99)),
])
def test_parse_accepts(reg: Registry, text: str, name: str, args: tuple[Any, ...]) -> None:
    spec, got = reg.parse(text)
    assert spec.name == name
    assert reprs(got) == reprs(args)


def test_parse_keeps_the_types_of_numbers(reg: Registry) -> None:
    _, args = reg.parse("ADD 2 2.0")
    assert type(args[0]) is int and type(args[1]) is float


# ---------------------------------------------------------------- parse: refused
@pytest.mark.parametrize("text, why", [
    ("", "empty input"),
    ("   \t ", "empty input"),
    ("''", "unknown task ''"),
    ("POW 2 3", "unknown task 'POW'; known tasks: ADD, DIV, MUL, SLEEP, SUB"),
    ("os.system 'ls'", "unknown task 'os.system'"),
    ("ADD 2", "ADD takes 2 arguments, got 1: usage ADD A B"),
    ("ADD 1 2 3", "ADD takes 2 arguments, got 3"),
    ("ADD two 3", "ADD: a: 'two' is not a number"),
    ("ADD 2 ٣", "ADD: b: '٣' is not a number (use ASCII digits 0-9)"),
    ("ADD 2 ３", "use ASCII digits 0-9"),
    ("ADD nan 1", "NaN and infinity are refused"),
    ("ADD 1 -inf", "NaN and infinity are refused"),
    ("ADD Infinity 1", "NaN and infinity are refused"),
    ("ADD 1e999 1", "is too large (not a finite number)"),
    ("ADD 1" + "0" * 100 + " 1", "101-digit number is too large (the limit is 100 digits)"),
    ("ADD 0x10 1", "'0x10' is not a number"),
    ("ADD 1_000 1", "'1_000' is not a number"),
    ("ADD '2 3", "cannot split the input into words: No closing quotation"),
    ("ADD 2 3\\", "cannot split the input into words"),
    ("SLEEP " + " ".join(["1"] * 40), "SLEEP: too many arguments (40; the limit is 32)"),
])
def test_parse_refuses_with_a_clear_reason(reg: Registry, text: str, why: str) -> None:
    assert why in err(reg.parse, text)


def test_parse_refuses_overlong_input(reg: Registry) -> None:
    assert err(reg.parse, "ADD 1 " + " " * 20000 + "2") == "input is longer than 16384 characters"


def test_lookup_ignores_case_only_when_unambiguous() -> None:
    r = Registry()
    r.register(lambda: 1, "job")
    r.register(lambda: 2, "JOB")
    assert r.lookup("job").name == "job" and r.lookup("JOB").name == "JOB"
    assert "unknown task 'Job'" in err(r.lookup, "Job")


# ---------------------------------------------------------------- registration
def test_decorator_reads_the_parameter_kinds() -> None:
    r = typed_registry()
    spec = r.lookup("RESIZE")
    assert spec.params == (Param("path", "str"), Param("width", "int"), Param("scale", "float"),
                           Param("ratio", "number"), Param("keep", "bool"))
    assert (spec.max_attempts, spec.time_limit, spec.description) == (5, 30, "Resize an image.")
    assert spec.usage == "RESIZE PATH WIDTH SCALE RATIO KEEP"
    assert spec.fn is not None and spec.fn("a", 1, 1.0, 1, True) == "a"


def test_typed_parameters_convert_words() -> None:
    r = typed_registry()
    _, args = r.parse("resize 12 640.0 2 1.5 yes")
    assert reprs(args) == reprs(("12", 640, 2, 1.5, True))
    assert "width must be an integer, got 640.5" in err(r.parse, "RESIZE a 640.5 1 1 no")
    assert "keep: 'maybe' is not true/false" in err(r.parse, "RESIZE a 1 1 1 maybe")
    assert "width: 'big' is not a number" in err(r.parse, "RESIZE a big 1 1 no")
    assert "scale: 'nan' is not allowed" in err(r.parse, "RESIZE a 1 nan 1 no")


def test_string_annotations_are_understood() -> None:
    def fn(a, b, c, d, e):  # type: ignore[no-untyped-def]
        return a
    fn.__annotations__ = {"a": "int", "b": "int | float", "c": "float | int", "d": "str", "e": "bool"}
    spec = Registry().register(fn, "STR_ANN")
    assert [p.kind for p in spec.params] == ["int", "number", "number", "str", "bool"]


def test_varargs() -> None:
    r = typed_registry()
    spec, args = r.parse("TOTAL 1 2.5 x")
    assert spec.varargs and spec.params == () and spec.usage == "TOTAL ..."
    assert reprs(args) == reprs((1, 2.5, "x"))
    assert r.parse("TOTAL")[1] == ()
    assert r.parse("JOIN - a b c")[1] == ("-", "a", "b", "c")
    assert "JOIN takes at least 1 argument, got 0" in err(r.parse, "JOIN")
    assert "too many arguments (33" in err(r.validate, "TOTAL", [1] * 33)


def test_keyword_only_parameters_are_not_task_arguments() -> None:
    def fn(a: int, *, verbose: bool = False) -> int:
        return a
    assert Registry().register(fn, "KW").params == (Param("a", "int"),)


@pytest.mark.parametrize("name", ["bad name", "", "1x", "__import__('os')", "x" * 65])
def test_register_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid task name"):
        Registry().register(lambda: None, name)


def test_register_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        Registry().register(lambda: None, "X", max_attempts=0)


def test_public_spec_round_trip_and_unknown_kinds() -> None:
    spec = typed_registry().lookup("RESIZE")
    back = TaskSpec.from_public(spec.to_public())
    assert (back.name, back.params, back.varargs, back.fn) == ("RESIZE", spec.params, False, None)
    odd = TaskSpec.from_public({"name": "ODD", "params": [["x", "os.system"]]})
    assert odd.params == (Param("x", "any"),)


def test_add_spec_never_replaces_a_local_function(reg: Registry) -> None:
    reg.add_spec(TaskSpec("ADD", None, ()))
    assert reg.lookup("ADD").fn is not None
    copy = reg.copy()
    copy.add_spec(TaskSpec("NEW", None, ()))
    assert "NEW" in copy.names() and "NEW" not in reg.names()


# ---------------------------------------------------------------- validate
def test_validate_typed_args(reg: Registry) -> None:
    spec, args = reg.validate("add", [2, 3.5])
    assert spec.name == "ADD" and args == (2, 3.5)
    assert "ADD: a must be a number, got str" in err(reg.validate, "ADD", ["2", 3])
    assert "must be a number, got bool" in err(reg.validate, "ADD", [True, 3])
    assert "must be a number, got NoneType" in err(reg.validate, "ADD", [None, 3])
    assert "ADD: a must be a number, a string" in err(reg.validate, "ADD", [{"x": 1}, 3])
    assert "ADD: b is not a finite number" in err(reg.validate, "ADD", [1, float("nan")])
    assert "ADD: a has more than 100 digits" in err(reg.validate, "ADD", [10**100, 1])
    assert "ADD takes 2 arguments, got 0" in err(reg.validate, "ADD", [])
    r = typed_registry()
    assert r.validate("RESIZE", ["p", 3.0, 1, 2, False])[1] == ("p", 3, 1, 2, False)
    assert "path must be a string, got int" in err(r.validate, "RESIZE", [1, 3, 1, 2, False])
    assert "keep must be true or false, got int" in err(r.validate, "RESIZE", ["p", 3, 1, 2, 1])


def test_int_parameter_keeps_the_digit_limit() -> None:
    r = typed_registry()
    with pytest.raises(InvalidTask, match="100 digits"):
        r.parse("RESIZE a 1e300 1 1 no")


# ---------------------------------------------------------------- property
WORDS = ["ADD", "add", "SUB", "DIV", "SLEEP", "TOTAL", "JOIN", "RESIZE", "resize", "nan", "-inf",
         "1e3", "1e999", "٣", "'", '"', "\\", "yes", "0", "-0.0", ".5", "x" * 5000]
word = (st.sampled_from(WORDS) | st.integers().map(str)
        | st.floats(allow_nan=False).map(repr) | st.text(max_size=12))


def _check_parse(r: Registry, text: str) -> None:
    try:
        spec, args = r.parse(text)
    except InvalidTask:
        return
    assert r.validate(spec.name, args) == (spec, args)
    wire.encode(wire.Envelope("0" * 32, spec.name, args, 1.0))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60) | st.lists(word, max_size=7).map(" ".join))
def test_parse_either_refuses_or_gives_encodable_args(text: str) -> None:
    r = Registry()
    register_builtins(r)
    r.register(lambda *a: None, "TOTAL")
    _check_parse(r, text)


@settings(max_examples=200, deadline=None)
@example("RESIZE p 1e300 1 1 no")
@given(st.lists(word, max_size=7).map(" ".join))
def test_parse_either_refuses_or_gives_encodable_args_for_typed_tasks(text: str) -> None:
    _check_parse(typed_registry(), text)


# ---------------------------------------------------------------- built-in tasks
@pytest.mark.parametrize("name, args, result", [
    ("ADD", (2, 3), 5), ("ADD", (0.5, -1), -0.5), ("SUB", (2, 3), -1), ("MUL", (4, 2.5), 10.0),
    ("MUL", (10**50, 10**50), 10**100), ("DIV", (7, 2), 3.5), ("DIV", (-9, 3), -3.0),
])
def test_builtins_compute(reg: Registry, name: str, args: tuple[Any, ...], result: Any) -> None:
    fn = reg.lookup(name).fn
    assert fn is not None
    value = fn(*args)
    assert value == result and type(value) is type(result)


@pytest.mark.parametrize("b", [0, 0.0, -0.0])
def test_div_by_zero_is_permanent(reg: Registry, b: float) -> None:
    spec = reg.lookup("DIV")
    with pytest.raises(PermanentTaskError, match="division by zero"):
        spec.fn(1, b)  # type: ignore[misc]
    result = run_task(spec, (1, b))
    assert (result.ok, result.retryable, result.error) == (False, False, "division by zero")


def test_builtins_are_not_retried(reg: Registry) -> None:
    assert {s.name: s.max_attempts for s in reg.specs()} == \
        {"ADD": 1, "SUB": 1, "MUL": 1, "DIV": 1, "SLEEP": 1}


@pytest.mark.parametrize("seconds", [-1, -0.001, MAX_SLEEP_SECONDS + 0.5, 1e9])
def test_sleep_refuses_out_of_bounds(reg: Registry, seconds: float) -> None:
    with pytest.raises(PermanentTaskError, match="seconds must be between 0 and 3600"):
        reg.lookup("SLEEP").fn(seconds)  # type: ignore[misc]


def test_sleep_sleeps_and_returns_the_seconds(reg: Registry) -> None:
    fn = reg.lookup("SLEEP").fn
    assert fn is not None
    assert fn(0) == 0
    t0 = time.monotonic()
    assert fn(0.12) == 0.12
    assert 0.12 <= time.monotonic() - t0 < 1.0
    assert reg.lookup("SLEEP").time_limit == MAX_SLEEP_SECONDS + 60


# ---------------------------------------------------------------- executing a task function
@pytest.mark.parametrize("fn, error, retryable", [
    (lambda: object(), "result is not JSON-serialisable", False),
    (lambda: float("inf"), "result is not a finite number: inf", False),
    (lambda: "x" * 70000, "result is 70002 bytes; the limit is 65536", False),
    (lambda: 1 / 0, "ZeroDivisionError: division by zero", True),
    (lambda: int("x"), "ValueError: invalid literal", True),
    (lambda: len(), "TypeError", False),
])
def test_run_task_classifies_results(fn: Any, error: str, retryable: bool) -> None:
    result = run_task(TaskSpec("T", fn, ()), ())
    assert not result.ok and result.error is not None and result.error.startswith(error)
    assert result.retryable is retryable


def test_run_task_without_a_function() -> None:
    result = run_task(TaskSpec("GONE", None, ()), ())
    assert (result.ok, result.error) == (False, "task GONE is not registered on this worker")
