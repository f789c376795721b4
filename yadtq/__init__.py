"""YADTQ core: task model, wire format, settings, registry, Kafka and Redis adapters, client.

The core never imports Textual; the dashboard (``yadtq_tui``) and the worker (``worker``) build on it.
"""

from importlib.metadata import PackageNotFoundError, version

from yadtq import builtins as _builtins  # noqa: F401  (registers ADD, SUB, MUL, DIV, SLEEP)
from yadtq.client import Client
from yadtq.models import Task, TaskState, WorkerInfo, WorkerStatus
from yadtq.registry import Registry, default_registry, task
from yadtq.schedules import default_schedules, periodic
from yadtq.settings import Settings

__all__ = [
    "Client",
    "Registry",
    "Settings",
    "Task",
    "TaskState",
    "WorkerInfo",
    "WorkerStatus",
    "default_registry",
    "default_schedules",
    "periodic",
    "task",
]

try:
    __version__ = version("yadtq")  # the one version source: pyproject.toml, via the installed metadata
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
