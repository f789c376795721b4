"""The adapter every system implements, and the recorders the harness reads (Redis or a file)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from bench.common import ROOT
from bench.peers import procs, record

REDIS = os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379")
RECORD_DB = int(os.environ.get("PEERS_RECORD_DB", "9"))
BIN = Path(sys.executable).parent

Item = tuple[int, int, str]  # a, b, key


class Peer:
    """One system: 2 worker processes, submit, read results, clean up what it created."""

    name = "?"
    db = 0                 # Redis database of its broker / result backend
    identity = 0           # 0: a worker is a distinct pid; 1: a distinct ppid (fork per job)
    config = ""            # how it is configured, for the report
    io_config = ""         # how it is configured in the I/O phase (``--io``), for the report
    packages: tuple[str, ...] = ()

    def __init__(self, run: str, io: bool = False) -> None:
        self.run = run
        self.io = io  # the I/O phase: the sleeping task (``record.sleep_add``), ``io_config`` workers
        if io:
            self.config = self.io_config
        self.ns = f"pb:{run}:{self.name}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.r = redis.Redis.from_url(f"{REDIS}/{self.db}")
        self.record_file: str | None = None
        """Set: the tasks record their completions in this file (``bench.peers.record``)."""

    def recorder(self) -> Recorder | FileRecorder:
        return FileRecorder(self.record_file) if self.record_file else Recorder(self.ns)

    # ------------------------------------------------------------------ workers
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(PEERS_RUN=self.run, PEERS_NS=self.ns, PEERS_REDIS=REDIS,
                   PEERS_RECORD_DB=str(RECORD_DB), PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
        env.pop("PEERS_RECORD_FILE", None)
        if self.record_file:
            env["PEERS_RECORD_FILE"] = self.record_file
        return env

    def use_record_file(self) -> None:
        """The tasks record to a file of their own (``bench.peers.record``), not to Redis."""
        self.record_file = record.file_for(self.ns)

    def commands(self) -> list[list[str]]:
        raise NotImplementedError

    def start(self) -> None:
        self.procs = [procs.spawn(cmd, self.env(), f"{self.run}-{self.name}-{i}")
                      for i, cmd in enumerate(self.commands())]

    def before_ready(self, timeout: float) -> None:
        """Hook: wait for something system-specific before the first task (YADTQ: partitions)."""

    def stop(self) -> None:
        procs.stop(self.procs)
        self.procs = []

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    # ------------------------------------------------------------------ tasks
    def prepare(self) -> None:
        """Create queues / topics before the first run."""

    def submit(self, item: Item) -> Any:
        raise NotImplementedError

    def submit_bulk(self, items: list[Item]) -> list[Any]:
        """The system's bulk enqueue if it has one (default: one call per task)."""
        return [self.submit(it) for it in items]

    bulk_api = "none (one call per task)"

    def flush(self) -> None:
        """After a submit loop: wait for submits the system confirms later (YADTQ wait=False)."""

    def results(self, handles: list[Any]) -> list[Any]:
        """The result each system stored for each task (None if missing)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Delete what this system created (its key prefix only)."""

    def delete_matching(self, *patterns: str) -> int:
        n = 0
        for pat in patterns:
            for key in self.r.scan_iter(match=pat, count=1000):
                n += self.r.unlink(key)
        return n

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version
        return {p: version(p) for p in self.packages}


class _Completions:
    """What both recorders answer the same way."""

    def completed(self, phase: str) -> int:
        raise NotImplementedError

    def wait(self, phase: str, n: int, timeout: float, alive: Any = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.completed(phase) >= n:
                return True
            if alive is not None and not alive():
                return False
            time.sleep(0.01)
        return self.completed(phase) >= n


class Recorder(_Completions):
    """Reads what the tasks recorded in Redis (see ``bench.peers.record``)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        url = os.environ.get("PEERS_REDIS", REDIS)  # as the tasks' (bench.peers.record.client)
        self.r = redis.Redis.from_url(f"{url}/{RECORD_DB}", decode_responses=True)

    def completed(self, phase: str) -> int:
        return int(self.r.hget(self.ns + ":pc", phase) or 0)

    def workers_seen(self, phase: str, identity: int) -> int:
        return len({m.split(":")[identity] for m in self.r.smembers(f"{self.ns}:who:{phase}")})

    def _hmget(self, name: str, keys: list[str]) -> Iterator[str | None]:
        for i in range(0, len(keys), 2000):
            yield from self.r.hmget(name, keys[i:i + 2000])

    def counts(self, keys: list[str]) -> list[int]:
        return [int(v or 0) for v in self._hmget(self.ns + ":cnt", keys)]

    def done(self, keys: list[str]) -> list[float | None]:
        return [float(v) if v else None for v in self._hmget(self.ns + ":done", keys)]

    def cleanup(self) -> None:
        for key in self.r.scan_iter(match=self.ns + ":*", count=1000):
            self.r.unlink(key)


class FileRecorder(_Completions):
    """``Recorder``'s questions, answered from the lines the tasks appended to ``path``: read as
    they come (from where the last read ended; a line not yet whole waits for the next read)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._forget()

    def _forget(self) -> None:
        self._at = 0
        self._tail = b""
        self._cnt: dict[str, int] = {}
        self._done: dict[str, float] = {}
        self._pc: dict[str, int] = {}
        self._who: dict[str, set[str]] = {}

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._at)
                data = f.read()
        except FileNotFoundError:
            return
        self._at += len(data)
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            key, when, phase, who = line.decode().split("\t")
            self._cnt[key] = self._cnt.get(key, 0) + 1
            self._done[key] = float(when)
            self._pc[phase] = self._pc.get(phase, 0) + 1
            self._who.setdefault(phase, set()).add(who)

    def completed(self, phase: str) -> int:
        self._read()
        return self._pc.get(phase, 0)

    def workers_seen(self, phase: str, identity: int) -> int:
        self._read()
        return len({m.split(":")[identity] for m in self._who.get(phase, ())})

    def counts(self, keys: list[str]) -> list[int]:
        self._read()
        return [self._cnt.get(k, 0) for k in keys]

    def done(self, keys: list[str]) -> list[float | None]:
        self._read()
        return [self._done.get(k) for k in keys]

    def cleanup(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._forget()
