"""The dashboard's polled reads (``Poller``): each blocks (in a thread worker) and returns the
message to post to the screen. No widget is touched here."""

from __future__ import annotations

from yadtq.models import TaskState
from yadtq_tui.data import Context, RefreshFailed, refresh
from yadtq_tui.messages import HealthChecked, PollFailed, SnapshotReady


def read_snapshot(context: Context, state_filter: TaskState | None, with_specs: bool,
             queue: str | None = None) -> SnapshotReady | PollFailed:
    """One refresh, as the message to post (blocking: runs in the refresh worker)."""
    result = refresh(context.service, state_filter, context.page_size, with_specs=with_specs,
                     queue=queue)
    if isinstance(result, RefreshFailed):
        return PollFailed(result.error, result.specs)
    return SnapshotReady(result)


def read_health(context: Context) -> HealthChecked:
    """One health check, as the message to post (blocking: runs in the health worker)."""
    return HealthChecked(context.service.health())
