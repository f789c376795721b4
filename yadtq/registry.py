"""Task functions registered by name, and the parser that turns ``ADD 2 3`` into a valid task.

Only functions registered here can run on a worker: a name that comes from a message is looked up in
the registry, never imported or evaluated. Register your own with the ``task`` decorator::

    from yadtq import task

    @task(max_attempts=5, time_limit=30)
    def resize(path: str, width: int) -> str: ...

and start workers with ``yadtq-worker --tasks mypkg.tasks``.
"""

from __future__ import annotations

import inspect
import math
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from yadtq.errors import InvalidTask
from yadtq.keys import DEFAULT_PRIORITY, DEFAULT_QUEUE, check_priority, check_queue
from yadtq.wire import MAX_ARGS, MAX_INT_DIGITS, MAX_STRING_CHARS, NAME_RE, check_scalar

TaskFunction = Callable[..., Any]

PARAM_KINDS = ("number", "int", "float", "str", "bool", "any")


@dataclass(frozen=True)
class Param:
    """One positional parameter of a task and the kind of value it takes."""

    name: str
    kind: str = "any"


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its function and its policies."""

    name: str
    fn: TaskFunction | None
    params: tuple[Param, ...]
    max_attempts: int | None = None
    time_limit: float | None = None
    description: str = ""
    varargs: bool = False
    is_async: bool = False
    """An ``async def`` function: workers run it on their event loop."""
    queue: str = DEFAULT_QUEUE
    """The queue its tasks go to unless ``submit(queue=...)`` says otherwise."""
    isolation: str = "thread"
    """``thread`` (a runner thread of the worker) or ``process`` (a child process of the worker:
    off its GIL, and killed at the time limit whatever it runs)."""
    priority: str = DEFAULT_PRIORITY
    """The level its tasks go at unless ``submit(priority=...)`` says otherwise."""

    def to_public(self) -> dict[str, Any]:
        """What workers publish to Redis so the dashboard can offer and check the task."""
        return {"name": self.name, "params": [[p.name, p.kind] for p in self.params],
                "varargs": self.varargs, "description": self.description[:200],
                "queue": self.queue, "priority": self.priority}

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> TaskSpec:
        if not isinstance(data.get("name"), str) or not NAME_RE.fullmatch(data["name"]):
            raise ValueError(f"invalid task name {str(data.get('name'))[:70]!r}")
        params = tuple(Param(str(n), str(k) if k in PARAM_KINDS else "any")
                       for n, k in data.get("params", []))
        return cls(str(data["name"]), None, params, description=str(data.get("description", "")),
                   varargs=bool(data.get("varargs", False)),
                   queue=check_queue(data.get("queue", DEFAULT_QUEUE)),
                   priority=check_priority(data.get("priority", DEFAULT_PRIORITY)))

    @property
    def usage(self) -> str:
        parts = [self.name, *(p.name.upper() for p in self.params)]
        if self.varargs:
            parts.append("...")
        return " ".join(parts)


class Registry:
    """Task name -> ``TaskSpec``. Lookups ignore case when the match is unique."""

    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def register(self, fn: TaskFunction, name: str | None = None, *, max_attempts: int | None = None,
                 time_limit: float | None = None, queue: str = DEFAULT_QUEUE,
                 isolation: str = "thread", priority: str = DEFAULT_PRIORITY) -> TaskSpec:
        task_name = name or fn.__name__
        if not NAME_RE.fullmatch(task_name):
            raise ValueError(f"invalid task name {task_name!r}")
        check_queue(queue)
        check_priority(priority)
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        _check_isolation(fn, isolation)
        params, varargs = _params_of(fn)
        spec = TaskSpec(task_name, fn, params, max_attempts, time_limit,
                        inspect.getdoc(fn) or "", varargs, inspect.iscoroutinefunction(fn), queue,
                        isolation, priority)
        self._specs[task_name] = spec
        return spec

    def add_spec(self, spec: TaskSpec) -> None:
        """Add a spec without a function (learned from Redis: runs only on the workers that have it)."""
        self._specs.setdefault(spec.name, spec)

    def task(self, name: str | None = None, *, max_attempts: int | None = None,
             time_limit: float | None = None,
             queue: str = DEFAULT_QUEUE, isolation: str = "thread",
             priority: str = DEFAULT_PRIORITY) -> Callable[[TaskFunction], TaskFunction]:
        check_queue(queue)  # at the decorator, not at the first submit
        check_priority(priority)

        def decorator(fn: TaskFunction) -> TaskFunction:
            self.register(fn, name, max_attempts=max_attempts, time_limit=time_limit, queue=queue,
                          isolation=isolation, priority=priority)
            return fn
        return decorator

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[TaskSpec]:
        return [self._specs[n] for n in self.names()]

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def lookup(self, name: str) -> TaskSpec:
        """Exact name, else the one name equal ignoring case; ``InvalidTask`` otherwise."""
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        folded = [s for n, s in self._specs.items() if n.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        known = ", ".join(self.names()) or "none"
        raise InvalidTask(f"unknown task {name!r}; known tasks: {known}")

    def copy(self) -> Registry:
        other = Registry()
        other._specs = dict(self._specs)
        return other

    # ------------------------------------------------------------------ validation
    def validate(self, name: str, args: Iterable[Any]) -> tuple[TaskSpec, tuple[Any, ...]]:
        """Check a task name and its (already typed) arguments; return the canonical spec and args."""
        spec = self.lookup(name)
        values = tuple(args)
        _check_count(spec, len(values))
        out = []
        for i, value in enumerate(values):
            param = spec.params[i] if i < len(spec.params) else Param(f"arg{i + 1}", "any")
            try:
                check_scalar(value, f"{param.name}")
            except ValueError as exc:
                raise InvalidTask(f"{spec.name}: {exc}") from None
            out.append(_check_kind(spec, param, value))
        return spec, tuple(out)

    def parse(self, text: str) -> tuple[TaskSpec, tuple[Any, ...]]:
        """Parse a command line such as ``ADD 2 3`` or ``add 2.5 -1`` into a valid task.

        Words are split like a shell does (quotes keep spaces inside a string argument). Numbers
        are ASCII decimal (``12``, ``-3.5``, ``1e3``); NaN, infinity and other digits are refused.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidTask("empty input: type a task such as 'ADD 2 3'")
        if len(text) > 16 * 1024:
            raise InvalidTask("input is longer than 16384 characters")
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise InvalidTask(f"cannot split the input into words: {exc}") from None
        if not words:
            raise InvalidTask("empty input: type a task such as 'ADD 2 3'")
        spec = self.lookup(words[0])
        raw = words[1:]
        _check_count(spec, len(raw))
        args = []
        for i, word in enumerate(raw):
            param = spec.params[i] if i < len(spec.params) else Param(f"arg{i + 1}", "any")
            args.append(_convert_word(spec, param, word))
        return self.validate(spec.name, args)


def _check_count(spec: TaskSpec, n: int) -> None:
    if n > MAX_ARGS:
        raise InvalidTask(f"{spec.name}: too many arguments ({n}; the limit is {MAX_ARGS})")
    want = len(spec.params)
    if n < want or (n > want and not spec.varargs):
        plural = "s" if want != 1 else ""
        exp = f"at least {want}" if spec.varargs else f"{want}"
        raise InvalidTask(f"{spec.name} takes {exp} argument{plural}, got {n}: usage {spec.usage}")


_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", re.ASCII)


def parse_number(word: str, what: str) -> int | float:
    """ASCII decimal integer or float; clear ``InvalidTask`` for anything else."""
    w = word.strip()
    if _INT_RE.fullmatch(w):
        digits = len(w.lstrip("+-").lstrip("0"))
        if digits > MAX_INT_DIGITS:
            raise InvalidTask(f"{what}: {len(w)}-digit number is too large "
                              f"(the limit is {MAX_INT_DIGITS} digits)")
        return int(w)
    if _FLOAT_RE.fullmatch(w):
        value = float(w)
        if not math.isfinite(value):
            raise InvalidTask(f"{what}: {word[:40]!r} is too large (not a finite number)")
        return value
    low = w.lower().lstrip("+-")
    if low in ("nan", "inf", "infinity"):
        raise InvalidTask(f"{what}: {word[:40]!r} is not allowed (NaN and infinity are refused)")
    if any(ch.isdigit() for ch in w) and not w.isascii():
        raise InvalidTask(f"{what}: {word[:40]!r} is not a number (use ASCII digits 0-9)")
    raise InvalidTask(f"{what}: {word[:40]!r} is not a number")


def _convert_word(spec: TaskSpec, param: Param, word: str) -> Any:
    what = f"{spec.name}: {param.name}"
    if param.kind in ("number", "int", "float"):
        return parse_number(word, what)
    if param.kind == "bool":
        low = word.lower()
        if low in ("true", "yes", "1"):
            return True
        if low in ("false", "no", "0"):
            return False
        raise InvalidTask(f"{what}: {word[:40]!r} is not true/false")
    if param.kind == "str":
        if len(word) > MAX_STRING_CHARS:
            raise InvalidTask(f"{what}: longer than {MAX_STRING_CHARS} characters")
        return word
    # "any": a number when it looks like one, a string otherwise
    try:
        return parse_number(word, what)
    except InvalidTask:
        if len(word) > MAX_STRING_CHARS:
            raise InvalidTask(f"{what}: longer than {MAX_STRING_CHARS} characters") from None
        return word


def _check_kind(spec: TaskSpec, param: Param, value: Any) -> Any:
    what = f"{spec.name}: {param.name}"
    is_num = type(value) in (int, float)
    if param.kind == "number" and not is_num:
        raise InvalidTask(f"{what} must be a number, got {type(value).__name__}")
    if param.kind == "int":
        if type(value) is float and value.is_integer():
            value = int(value)
            try:
                check_scalar(value, param.name)
            except ValueError as exc:
                raise InvalidTask(f"{spec.name}: {exc}") from None
            return value
        if type(value) is not int:
            raise InvalidTask(f"{what} must be an integer, got {_show(value)}")
    if param.kind == "float" and not is_num:
        raise InvalidTask(f"{what} must be a number, got {type(value).__name__}")
    if param.kind == "str" and type(value) is not str:
        raise InvalidTask(f"{what} must be a string, got {type(value).__name__}")
    if param.kind == "bool" and type(value) is not bool:
        raise InvalidTask(f"{what} must be true or false, got {type(value).__name__}")
    return value


def _show(value: Any) -> str:
    return repr(value)[:40]


_KINDS = {int: "int", float: "float", str: "str", bool: "bool",
          "int": "int", "float": "float", "str": "str", "bool": "bool"}


def _check_isolation(fn: TaskFunction, isolation: str) -> None:
    if isolation not in ("thread", "process"):
        raise ValueError(f"isolation must be 'thread' or 'process', not {str(isolation)[:40]!r}")
    if isolation == "process" and inspect.iscoroutinefunction(fn):
        raise ValueError("an async def task runs on the worker's event loop; "
                         "isolation='process' is for plain functions")
    if isolation == "process" and getattr(fn, "__module__", "__main__") == "__main__":
        raise ValueError("a process task must be defined in an importable module (its process "
                         "imports it), not in the script being run")


def _params_of(fn: TaskFunction) -> tuple[tuple[Param, ...], bool]:
    params: list[Param] = []
    varargs = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            varargs = True
            continue
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        ann = p.annotation
        kind = "any"
        if ann in (int | float, "int | float", "float | int"):
            kind = "number"
        elif ann in _KINDS:
            kind = _KINDS[ann]
        params.append(Param(p.name, kind))
    return tuple(params), varargs


default_registry = Registry()
"""The registry the ``task`` decorator and the built-in tasks use."""


def task(name: str | None = None, *, max_attempts: int | None = None,
         time_limit: float | None = None, queue: str = DEFAULT_QUEUE,
         isolation: str = "thread",
         priority: str = DEFAULT_PRIORITY) -> Callable[[TaskFunction], TaskFunction]:
    """Register a function on the default registry under ``name`` (its own name by default);
    ``queue`` names the queue its tasks go to (``yadtq-worker --queues`` picks queues);
    ``isolation="process"`` runs it in a child process of the worker (CPU-bound work);
    ``priority`` is the level its tasks go at (``high``, ``normal``, ``low``) unless a submit
    names another."""
    return default_registry.task(name, max_attempts=max_attempts, time_limit=time_limit,
                                 queue=queue, isolation=isolation, priority=priority)
