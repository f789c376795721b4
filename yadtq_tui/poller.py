"""``Poller``: one read repeated in thread workers of a screen, never stacked.

Every loop of the dashboard (the task table's refresh, the health check, the detail view's
refresh) is a ``Poller``. It runs one read at a time (an exclusive worker group) and starts the
next one ``interval`` seconds after the previous worker ended, so a slow Redis or Kafka never
stacks requests. While another screen is on top, the read that falls due waits until the screen
is shown again (``resume``). The read posts its result as a typed message to the screen; widgets
are only touched on the UI thread, by the screen's handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

Read = Callable[[], Message]
"""A blocking read (run in a thread) that returns the message to post."""


class Poller:
    """Runs ``prepare()`` on the UI thread, then the read it returns in a thread worker of
    ``screen`` (worker group ``group``), again and again."""

    def __init__(self, screen: Screen[Any], prepare: Callable[[], Read], *, interval: float,
                 group: str, description: str) -> None:
        self.screen = screen
        self.prepare = prepare
        """Called on the UI thread before each read: takes what the read needs (e.g. the filter)."""
        self.interval = interval
        """Seconds from the end of one read to the start of the next."""
        self.group = group
        """The worker group; also tells this poller's workers apart in ``finished``."""
        self.description = description
        """Names the read in error notifications."""
        self._timer: Timer | None = None
        self._due = False

    def now(self) -> None:
        """Read at once (cancelling a read in flight), or as soon as the screen is shown again."""
        self._stop_timer()
        if self.screen.app.screen is not self.screen:
            self._due = True
            return
        self._due = False
        self.screen.run_worker(partial(self._run, self.prepare()), thread=True, exclusive=True,
                               group=self.group, exit_on_error=False,
                               description=self.description)

    def resume(self) -> None:
        """The screen is shown again: run the read that fell due meanwhile."""
        if self._due:
            self.now()

    def finished(self, event: Worker.StateChanged) -> bool:
        """Schedule the next read when this poller's worker ended (done or failed).

        Call it from the screen's ``on_worker_state_changed``; True when the worker was this
        poller's. Cancelled workers are ignored: the read that replaced them schedules the next.
        """
        if event.worker.group != self.group:
            return False
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._stop_timer()
            self._timer = self.screen.set_timer(self.interval, self.now, name=self.group)
        return True

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _run(self, read: Read) -> None:
        message = read()
        if not get_current_worker().is_cancelled:
            self.screen.post_message(message)
