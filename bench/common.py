"""Shared pieces of the benchmarks: worker processes, CPU accounting, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yadtq import Client, Settings
from yadtq.broker_types import SLOT_STRIDE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("YADTQ_BENCH_RESULTS") or ROOT / "bench" / "results")
"""Where results are written (``YADTQ_BENCH_RESULTS``: elsewhere, as the smoke tests do)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def fresh_settings(tag: str, partitions: int = 12) -> Settings:
    suffix = f"{tag}-{uuid.uuid4().hex[:8]}"
    return Settings.from_env().with_(key_prefix=f"yadtq:bench-{suffix}", topic=f"yadtq.bench-{suffix}",
                                     dead_letter_topic=f"yadtq.bench-{suffix}.dlq",
                                     group=f"yadtq-bench-{suffix}", partitions=partitions)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.to_env()}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Workers:
    """Real worker processes for one benchmark configuration; stopped on exit, even on Ctrl+C."""

    def __init__(self, settings: Settings, n: int, log_level: str = "WARNING",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.settings = settings
        logs = os.environ.get("YADTQ_BENCH_WORKER_LOGS")  # a directory: keep the workers' logs
        self.procs = [subprocess.Popen(
            # --no-supervisor: the pid measured for CPU is the worker itself, not its supervisor
            [sys.executable, "-m", "worker.main", "--no-supervisor", "--log-level", log_level,
             *extra_args],
            env=settings_env(settings), stdout=subprocess.DEVNULL,
            stderr=open(Path(logs) / f"worker-{time.time():.0f}-{i}.log", "ab") if logs
            else subprocess.DEVNULL)
            for i in range(n)]

    def wait_ready(self, client: Client, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        n = len(self.procs)
        while time.monotonic() < deadline:
            alive = [w for w in client.workers() if w.status.value == "alive"]
            mine = [[p for p in w.partitions if p < SLOT_STRIDE] for w in alive]  # level normal
            owned = sorted(p for ps in mine for p in ps)
            if len(alive) == n and all(mine) and owned == list(range(self.settings.partitions)):
                return
            time.sleep(0.1)
        raise RuntimeError("workers did not become ready")

    def cpu_seconds(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def proc_cpu(pid: int) -> float:
    """user + system CPU seconds of a process (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def service_pids() -> dict[str, int]:
    """The local Kafka and Redis started by scripts/services.sh (for whole-pipeline CPU)."""
    state = Path(os.environ.get("YADTQ_STATE_DIR", ROOT / ".local" / "services"))
    out = {}
    for name, pattern in (("kafka", "kafka-*/kafka.pid"), ("redis", "redis-*/redis.pid")):
        for f in state.glob(pattern):
            try:
                pid = int(f.read_text().strip())
                os.kill(pid, 0)
                out[name] = pid
            except (OSError, ValueError):
                continue
    return out


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                   time.gmtime()),
            "calibration": calibrate()}


_ECHO = ("import os\nwhile True:\n    b = os.read(0, 1)\n    if not b: break\n"
         "    os.write(1, b)\n")


def calibrate(round_trips: int = 300) -> dict[str, Any]:
    """How fast this machine is right now, so runs of other days can be compared: a fixed
    pure-Python loop (seconds, best of 3), and a round trip to another process over pipes, back
    to back and after 5 ms idle (p50 / p99 microseconds). On a virtual machine a core that went
    idle can take long to wake: every hop of a task at a low rate pays that, which no code of
    ours changes."""
    loops = []
    for _ in range(3):
        t0, total = time.perf_counter(), 0
        for i in range(2_000_000):
            total += i
        loops.append(time.perf_counter() - t0)
    child = subprocess.Popen([sys.executable, "-c", _ECHO], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    out: dict[str, Any] = {"python_loop_2m_s": round(min(loops), 3)}
    try:
        for label, gap in (("rtt_back_to_back_us", 0.0), ("rtt_after_5ms_idle_us", 0.005)):
            times = []
            for _ in range(round_trips):
                if gap:
                    time.sleep(gap)
                t0 = time.perf_counter()
                os.write(child.stdin.fileno(), b"x")
                os.read(child.stdout.fileno(), 1)
                times.append((time.perf_counter() - t0) * 1e6)
            times.sort()
            out[label] = [round(times[len(times) // 2]), round(times[int(len(times) * 0.99)])]
    finally:
        child.stdin.close()
        child.wait(5)
    return out


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def drop_prefix(client: Client) -> None:
    """Delete the benchmark's tasks and every key under its settings' prefix, then close."""
    try:
        client.reset()
        for key in client.store.r.scan_iter(match=client.settings.key_prefix + ":*"):
            client.store.r.unlink(key)
    finally:
        client.close()


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False
