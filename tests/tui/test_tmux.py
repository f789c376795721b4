"""The dashboard in a real terminal (tmux) against the real Kafka, Redis and two real workers.

Types ``ADD 2 3`` with send-keys, waits for the row to show ``completed`` and ``5``, opens the detail
view and the reset dialog (cancel, then confirm), types a delayed ``ADD 4 4 in 5s`` and sees it
``scheduled`` then ``completed``, and quits with ``q``. Each wait is bounded; the tmux
server (on its own socket, so it gets this test's environment) is killed in a ``finally``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from yadtq import Client, Settings

pytestmark = [pytest.mark.tui, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 120, 40


class Tmux:
    """One tmux server on a private socket running one session."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"yadtq-tui-test-{uuid.uuid4().hex[:8]}"
        self.session = "dash"
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, text=True,
                              capture_output=True, check=check, timeout=20)

    def start(self, command: str) -> None:
        self.run("-f", "/dev/null", "new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT),
                 "-s", self.session, command)
        self.run("set-option", "-t", self.session, "remain-on-exit", "on")

    def send(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)
        if "Escape" in keys:
            time.sleep(0.4)  # else ESC + the next key reads as Alt+key

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session).stdout

    def dead(self) -> bool:
        out = self.run("display-message", "-p", "-t", self.session, "#{pane_dead}", check=False)
        return out.stdout.strip() == "1"

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; screen:\n{text}")

    def kill(self) -> None:
        self.run("kill-server", check=False)


def footer(screen: str) -> str:
    """The last line with text: the footer, which lists the keys of the focused part."""
    lines = [line for line in screen.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture
def tmux_bin() -> str:
    path = shutil.which("tmux")
    if path is None:
        pytest.fail("tmux is not installed (apt-get install tmux)")
    return path


def test_dashboard_in_a_real_terminal(tmux_bin: str, real_settings: Settings,
                                      real_client: Client, workers: object) -> None:
    workers.start(2)  # type: ignore[attr-defined]
    workers.wait_alive(2)  # type: ignore[attr-defined]
    env = workers.env()  # type: ignore[attr-defined]
    env["TERM"] = "xterm-256color"
    env.pop("TMUX", None)
    log = ROOT / ".local" / "tui-test.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    term = Tmux(env)
    command = f"cd {ROOT} && exec {sys.executable} -m yadtq_tui --log-file {log}"
    try:
        term.start(command)
        term.wait(lambda s: "Redis ● up" in s and "Kafka ● up" in s and "2 alive" in s,
                  "both services up and two workers alive", timeout=90)

        # submit through the form (it has the keyboard at start)
        term.send("ADD 2 3", literal=True)
        term.send("Enter")
        row = re.compile(r"^\s*([0-9a-f]{8})\s+ADD\s+2 3\s+✔ completed\s+5\s", re.MULTILINE)
        # the first task on a freshly started broker waits for the group's first assignment
        screen = term.wait(lambda s: row.search(s) is not None, "ADD 2 3 to complete with 5",
                           timeout=90)
        match = row.search(screen)
        assert match is not None
        short_id = match.group(1)
        assert "Submitted ADD 2 3 as task" in screen
        [task] = real_client.list()
        assert task.short_id == short_id and task.result == 5

        # detail view of the highlighted (newest) task
        term.send("Escape")
        term.send("v")
        screen = term.wait(lambda s: "History (3 entries)" in s, "the detail view")
        assert task.id in screen and "✔ completed" in screen and "▶ in-progress" in screen
        assert f"Task {short_id} · ADD" in screen
        term.send("Escape")
        term.wait(lambda s: "History (" not in s, "the detail view to close")

        # reset: the dialog first; Enter presses the default button, Cancel
        term.send("r")
        screen = term.wait(lambda s: "Reset YADTQ?" in s, "the reset dialog")
        assert "Delete all tasks" in screen and "all 1 task" in screen
        term.send("Enter")
        term.wait(lambda s: "Reset YADTQ?" not in s, "the dialog to close")
        assert real_client.total() == 1
        # now confirm
        term.send("r")
        term.wait(lambda s: "Reset YADTQ?" in s, "the reset dialog again")
        term.send("Right")
        term.send("Enter")
        term.wait(lambda s: "No tasks yet" in s, "the emptied table")
        assert real_client.total() == 0

        # a delayed task: scheduled (with its due time) first, then completed once due. Each key
        # waits for what the one before it did (the footer names the focused part's keys): a key
        # sent while the dialog was still closing went nowhere, and the typed text then ran as
        # table keys
        term.wait(lambda s: "Submit" in footer(s) and "esc" not in footer(s),
                  "the table's keys in the footer")
        term.send("s")
        term.wait(lambda s: "esc Table" in footer(s), "the form's keys in the footer")
        term.send("ADD 4 4 in 5s", literal=True)
        term.wait(lambda s: "ADD 4 4 in 5s" in s, "the typed task in the form")
        term.send("Enter")
        scheduled = re.compile(r"^\s*[0-9a-f]{8}\s+ADD\s+4 4\s+◷ scheduled\s+due in \ds",
                               re.MULTILINE)
        screen = term.wait(lambda s: scheduled.search(s) is not None, "ADD 4 4 to show scheduled")
        assert "Submitted ADD 4 4 in 5s as task" in screen and "scheduled 1" in screen
        done = re.compile(r"^\s*[0-9a-f]{8}\s+ADD\s+4 4\s+✔ completed\s+8\s", re.MULTILINE)
        term.wait(lambda s: done.search(s) is not None, "ADD 4 4 to complete with 8 when due")
        [delayed] = real_client.list()
        assert delayed.due_at is not None and delayed.history[2].at >= delayed.due_at
        term.send("Escape")

        term.send("q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not term.dead():
            time.sleep(0.1)
        assert term.dead(), "q did not exit the dashboard"
    finally:
        term.kill()


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_the_dashboard_ends_when_its_terminal_goes_away(tmux_bin: str, real_settings: Settings,
                                                         workers: object, tmp_path: Path) -> None:
    """An SSH connection that drops under ``make run``: the kernel tells the hang-up only to the
    session leader, ``make``, which catches SIGHUP and waits for its children. Before, the
    dashboard never learned of it: it span at 80-90 % of a core on its terminal's end-of-file and
    hung on its output, for ever. It must end within a few seconds."""
    env = workers.env()  # type: ignore[attr-defined]
    env["TERM"] = "xterm-256color"
    env.pop("TMUX", None)
    env.pop("MAKEFLAGS", None)
    pid_file = tmp_path / "tui.pid"
    # the same shape as `make run`: make leads the session and runs the dashboard from a recipe
    (tmp_path / "Makefile").write_text(
        f"run:\n\t@echo $$$$ > {pid_file}; exec {sys.executable} -m yadtq_tui --log-file "
        f"{tmp_path / 'tui.log'}\n")
    term = Tmux(env)
    try:
        term.start(f"cd {ROOT} && exec make -s -f {tmp_path / 'Makefile'} run")
        term.wait(lambda s: "Redis ●" in s, "the dashboard", timeout=60)
        pid = int(pid_file.read_text())
        term.kill()  # the terminal goes away
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.2)
        assert not _running(pid), "the dashboard still runs 15 s after its terminal went away"
    finally:
        term.kill()
        subprocess.run(["pkill", "-9", "-f", "-e", "--", f"--log-file {tmp_path / 'tui.log'}"],
                       check=False)
