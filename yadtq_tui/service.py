"""``ClientService``: a ``yadtq.Client`` as the dashboard's ``DashboardService``. No Textual import.

Every call goes straight to the client, which is thread-safe (it creates its Kafka producer under
its own lock). The one thing the client does not offer is ``describe``, made here from the
client's settings.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from yadtq.client import Client
from yadtq.models import Health, Task, TaskState, View
from yadtq.registry import TaskSpec
from yadtq.settings import Settings, redact_url


def describe_settings(settings: Settings) -> str:
    """``<key prefix> on <Redis URL>``, the password masked."""
    url = redact_url(settings.redis_url)
    return f"{settings.key_prefix} on {url}" if url else settings.key_prefix


class ClientService:
    """Adapts ``client`` to ``yadtq_tui.data.DashboardService``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        """The wrapped client (closed by whoever made it, not by the dashboard)."""

    def describe(self) -> str:
        """Where the client's data lives (``yadtq on redis://host:6379/0``, no password)."""
        return describe_settings(self.client.settings)

    def parse(self, text: str) -> tuple[str, tuple[Any, ...]]:
        """``Client.parse``."""
        return self.client.parse(text)

    def submit(self, name: str, args: Iterable[Any] = ()) -> str:
        """``Client.submit``, waiting for Kafka's acknowledgement."""
        return self.client.submit(name, args)

    def get(self, task_id: str) -> Task:
        """``Client.get``."""
        return self.client.get(task_id)

    def view(self, state: TaskState | None = None, limit: int = 50, seconds: int = 60) -> View:
        """``Client.view``."""
        return self.client.view(state, limit, seconds)

    def retry(self, task_id: str) -> str:
        """``Client.retry``."""
        return self.client.retry(task_id)

    def reset(self) -> int:
        """``Client.reset``."""
        return self.client.reset()

    def health(self) -> Health:
        """``Client.health``."""
        return self.client.health()

    def task_specs(self) -> builtins.list[TaskSpec]:
        """``Client.task_specs``."""
        return self.client.task_specs()
