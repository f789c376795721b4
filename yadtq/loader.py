"""Importing the operator's task modules: one loader for ``yadtq`` and ``yadtq-worker``.

Module names come from the command line (``--tasks mypkg.tasks``, repeatable, each may be
comma-separated) or, when none is given, from ``YADTQ_TASKS``. Never from a message: a task name
read from Kafka is only looked up in the registry.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping

TASKS_VARIABLE = "YADTQ_TASKS"


class TaskModuleNotFound(ImportError):
    """A task module named by ``--tasks`` or ``YADTQ_TASKS`` cannot be imported."""


def module_names(names: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The modules to import: ``names`` split on commas, or ``YADTQ_TASKS`` when ``names`` is empty."""
    given = [n for n in names if n.strip()]
    if not given:
        given = [(os.environ if environ is None else environ).get(TASKS_VARIABLE, "")]
    return [m for n in given for m in (part.strip() for part in n.split(",")) if m]


def load_task_modules(names: Iterable[str] = (), *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Import the task modules (see ``module_names``) so their ``@task`` functions register.

    The current directory goes first on ``sys.path`` (unless it is there already), so
    ``--tasks mypkg.tasks`` finds ``./mypkg`` however the program was started. Returns the
    imported names; raises
    ``TaskModuleNotFound`` naming the module when it, or a module it imports, cannot be found.
    Other errors raised while a module runs propagate unchanged.
    """
    modules = module_names(names, environ)
    if not modules:
        return []
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing = exc.name or module
            if module == missing or module.startswith(missing + "."):
                raise TaskModuleNotFound(
                    f"task module {module!r} not found (no module named {missing!r} under "
                    f"{cwd} or on PYTHONPATH)", name=missing) from None
            raise TaskModuleNotFound(f"task module {module!r} imports {missing!r}, which is not "
                                     "installed", name=missing) from None
    return modules
