"""End the dashboard when its terminal goes away (an SSH connection that drops, a closed window).

The kernel tells a terminal's hang-up to the session leader only. Under ``make run`` that is
``make``, which catches SIGHUP and waits for its children, so the dashboard was never told: its
terminal answered every read with end-of-file, Textual's input thread spun on it (a core at
80-90 %), its writer thread died on the first write (``EIO``) and the app hung on a full output
queue, for ever, and the workers ``make run`` started kept running behind it.

``watch`` checks the terminal once a second from a thread of its own (the app's event loop may be
the part that hangs) and, once it is no longer a terminal, ends the process as the hang-up signal
would have: SIGHUP with its default action (exit status 129 to the shell, whose ``EXIT`` trap then
stops the workers). Nothing is lost: a task the dashboard submitted is in Redis before it is sent,
and the workers' reconciler sends one that was not.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger("yadtq.tui")


def hang_up(grace: float = 2.0) -> None:
    """End this process as a terminal's hang-up does: SIGHUP, whose default action ends it. From
    any thread (``signal.signal`` works only on the main one), so a handler or an ignored SIGHUP
    can keep it alive: then it exits with the status the signal would give the shell (129)."""
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(grace)
    os._exit(128 + signal.SIGHUP)


def watch(fd: int, interval: float = 1.0, on_hangup: Callable[[], None] = hang_up
          ) -> threading.Thread | None:
    """Call ``on_hangup`` once ``fd`` stops being a terminal (its terminal hung up). Does nothing
    (returns None) when ``fd`` is not a terminal to begin with (the browser view, tests)."""
    if not os.isatty(fd):
        return None

    def run() -> None:
        while True:
            time.sleep(interval)
            if not os.isatty(fd):
                log.warning("the terminal hung up: the dashboard ends")
                on_hangup()
                return

    thread = threading.Thread(target=run, name="yadtq-tui-hangup", daemon=True)
    thread.start()
    return thread
