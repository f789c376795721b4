"""Worker processes of the peers: started in their own process group, always stopped.

Every process started here (or adopted) is remembered; ``kill_all`` runs at exit and on SIGTERM /
SIGINT / SIGHUP, and kills whole process groups (prefork children, RQ work horses, Huey workers).
CPU: user + system of a whole process tree, reaped children included (``/proc/<pid>/stat``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import CLK_TCK

_live: dict[int, tuple[subprocess.Popen[bytes], bool]] = {}  # pid -> (process, own group?)
LOG_DIR = Path(os.environ.get("PEERS_LOG_DIR", "/tmp/yadtq-peers-logs"))


def spawn(cmd: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{log_name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _live[proc.pid] = (proc, True)
    return proc


def adopt(proc: subprocess.Popen[bytes]) -> None:
    """A process started elsewhere (bench.common.Workers): killed by pid at exit."""
    _live[proc.pid] = (proc, False)


def _signal(proc: subprocess.Popen[bytes], group: bool, sig: int) -> None:
    with contextlib.suppress(OSError):
        if group:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)


def stop(procs: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Ask politely (``sig``), wait up to ``grace`` seconds, then SIGKILL the rest (whole groups)."""
    for p in procs:
        _signal(p, False, sig)  # the leader only: it shuts its own children down
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        group = _live.get(p.pid, (p, True))[1]
        _signal(p, group, signal.SIGKILL)  # the group may outlive its leader (children)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
        _live.pop(p.pid, None)


def kill_all() -> None:
    procs = [p for p, _ in _live.values()]
    if procs:
        stop(procs, signal.SIGTERM, grace=5.0)


def _on_signal(signum: int, _frame: object) -> None:
    kill_all()
    raise SystemExit(128 + signum)  # unwinds the harness's finally blocks (Redis/Kafka cleanup)


def install_handlers() -> None:
    atexit.register(kill_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime + stime + cutime + cstime in seconds) or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / CLK_TCK


def _tree(roots: list[int]) -> dict[int, float]:
    """pid -> CPU seconds, for the roots and every live descendant."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                stats[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, float] = {}
    todo = [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out[pid] = stats[pid][1]
        todo.extend(children.get(pid, []))
    return out


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of the roots and every live descendant (reaped children are in cutime/cstime)."""
    return sum(_tree(roots).values())


@contextlib.contextmanager
def frozen(roots: list[int]) -> Iterator[None]:
    """Every process of the trees stopped (SIGSTOP) inside the block, continued (SIGCONT) after,
    even on errors: tasks can be queued while warm workers take nothing."""
    pids = list(_tree(roots))
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
