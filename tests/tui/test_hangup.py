"""``yadtq_tui.hangup``: a terminal that hangs up ends the dashboard (the real terminal case, under
a ``make`` that swallows SIGHUP, is in ``test_tmux.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from yadtq_tui.hangup import watch


def test_a_hung_up_terminal_is_noticed() -> None:
    master, slave = os.openpty()
    hung = threading.Event()
    try:
        thread = watch(slave, interval=0.02, on_hangup=hung.set)
        assert thread is not None
        assert not hung.wait(0.2)  # a live terminal: nothing happens
        os.close(master)  # the terminal goes away
        assert hung.wait(5), "the hang-up was not noticed"
        thread.join(2)
        assert not thread.is_alive()
    finally:
        os.close(slave)


def test_no_terminal_no_watch() -> None:
    r, w = os.pipe()
    try:
        assert watch(r, on_hangup=lambda: None) is None  # the browser view, a pipe, tests
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(("handler", "status"), [("SIG_DFL", -signal.SIGHUP),
                                                   ("SIG_IGN", 128 + signal.SIGHUP)])
def test_hang_up_ends_the_process_as_the_signal_would(handler: str, status: int) -> None:
    """From a thread that is not the main one (where the watch calls it), whatever SIGHUP's
    handler: killed by the signal, or exit status 129 when something ignores it."""
    code = (f"import signal, threading, time; signal.signal(signal.SIGHUP, signal.{handler}); "
            "from yadtq_tui.hangup import hang_up; "
            "threading.Thread(target=hang_up, args=(0.2,)).start(); time.sleep(5); "
            "print('still here')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (status, "")
