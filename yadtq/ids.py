"""Task ids as people type them: the whole id, or (``expand``) a unique prefix of at least
``MIN_PREFIX`` hex digits, such as the 8-character short id the dashboard and ``yadtq tasks``
show. The Python API looks ids up exactly; the CLI and the dashboard expand what people type."""

from __future__ import annotations

from collections.abc import Callable

from yadtq.errors import InvalidTask, TaskNotFound

ID_CHARS = 32
MIN_PREFIX = 4
"""Fewer hex digits than this are refused rather than searched for (4 digits: 65,536 values)."""
HEX = frozenset("0123456789abcdef")
"""The characters of a task id (``uuid4().hex``)."""
ID_HELP = (f"the task id ({ID_CHARS} hex digits), or its start if no other id shares it (at least "
           f"{MIN_PREFIX} digits: the 8-character short id of the dashboard and of `yadtq tasks`)")


def check(text: str) -> str:
    """``text`` as a task id to look up (``TaskNotFound`` if it cannot be one)."""
    task_id = text.strip().lower()
    if not task_id or len(task_id) > 64 or not task_id.isalnum():
        raise TaskNotFound(f"{task_id[:70]!r} is not a task id ({ID_CHARS} hex characters)")
    return task_id


def expand(find: Callable[[str, int], list[str]], text: str) -> str:
    """The id ``text`` stands for: itself when it has ``ID_CHARS`` characters or more (or is not
    hex: looked up as typed, and not found), else the one id that starts with it, found by
    ``find(prefix, most)``. ``InvalidTask`` for a prefix too short or one that several ids share
    (nothing is guessed), ``TaskNotFound`` when no id starts with it."""
    task_id = check(text)
    if len(task_id) >= ID_CHARS or not set(task_id) <= HEX:
        return task_id
    if len(task_id) < MIN_PREFIX:
        raise InvalidTask(f"{task_id!r} is too short to find a task by: give at least {MIN_PREFIX} "
                          f"of its {ID_CHARS} hex digits")
    found = find(task_id, 2)
    if not found:
        raise TaskNotFound(f"no task with an id starting with {task_id}")
    if len(found) > 1:
        raise InvalidTask(f"{task_id} is the start of more than one task id ({found[0]}, "
                          f"{found[1]}): give more of its digits")
    return found[0]
