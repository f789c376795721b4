"""YADTQ core: task model, wire format, settings, registry, Kafka and Redis adapters, client.

The core never imports Textual; the dashboard (``yadtq_tui``) and the worker (``worker``) build on it.
"""

from yadtq import builtins as _builtins  # noqa: F401  (registers ADD, SUB, MUL, DIV, SLEEP)
from yadtq.client import Client
from yadtq.models import Task, TaskState, WorkerInfo, WorkerStatus
from yadtq.registry import Registry, default_registry, task
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
    "task",
]
__version__ = "0.1.0"
