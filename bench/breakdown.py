"""Where each task's CPU goes: Kafka client, Redis client, task, framework, Kafka broker, Redis server.

    make bench-profile          # installs py-spy, starts the local services, runs this
    .venv/bin/python bench/breakdown.py [--tasks 20000]

Two profiled processes on the local stack (``make services``), running at the same time: a
submitter child bulk-submits N ADD tasks (``Client.submit_many``, 500 per call) while one worker
(``python -m worker.main --max-tasks N``, warm, every partition) runs them. Each is sampled by
``py-spy record --pid`` (no code change). A sample is attributed to the
innermost frame of its stack that belongs to kafka-python ("Kafka client"), redis-py ("Redis
client") or the task's function ("task"); anything else (yadtq, worker, json, threading) is
"framework". The shares are scaled to the process's CPU time from ``/proc`` (py-spy samples
running threads, which includes a thread waiting for the GIL, so its counts alone overstate).
The Kafka broker's and Redis server's CPU during each phase come from ``/proc`` too.
Writes ``bench/results/breakdown.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    fresh_settings,
    machine,
    proc_cpu,
    service_pids,
    settings_env,
    write_result,
)

CATEGORIES = (("kafka/", "Kafka client"), ("redis/", "Redis client"), ("hiredis", "Redis client"),
              ("yadtq/builtins.py", "task"))
ORDER = ("Kafka client", "Redis client", "task", "framework")
RATE = 250  # py-spy samples per second


def category(stack: list[str]) -> str:
    for frame in reversed(stack):  # innermost first
        for marker, name in CATEGORIES:
            if marker in frame:
                return name
    return "framework"


def attribute(raw: Path) -> Counter[str]:
    """py-spy's raw (collapsed) output -> samples per category."""
    out: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            out[category(stack.split(";"))] += int(n)
    return out


def spy(pid: int, raw: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` attached to ``pid`` until it exits."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise SystemExit("py-spy is not installed: run `make bench-profile` (or pip install py-spy)")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format",
                             "raw", "--output", str(raw), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def watch(procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> dict[str, float]:
    """CPU seconds of each process from now until it exits (``/proc`` is gone after)."""
    start = {name: proc_cpu(p.pid) for name, p in procs.items()}
    last = dict(start)
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs.values()):
        if time.monotonic() > deadline:
            for p in procs.values():
                p.kill()
            raise SystemExit(f"not finished after {timeout:g} s")
        for name, p in procs.items():
            if p.poll() is None:
                last[name] = max(last[name], proc_cpu(p.pid))
        time.sleep(0.05)
    return {name: last[name] - start[name] for name in procs}


def per_task(run: dict[str, Any], n: int) -> dict[str, float]:
    """Microseconds of CPU per task, by category, scaled to the process's measured CPU."""
    total = sum(run["samples"].values()) or 1
    out = {name: round(run["cpu"] * run["samples"].get(name, 0) / total / n * 1e6, 1)
           for name in ORDER}
    out["process total"] = round(run["cpu"] / n * 1e6, 1)
    return out


def child_submit(n: int) -> None:
    """The profiled submitter (a child): waits for "go", then bulk-submits ``n`` ADD tasks."""
    from yadtq import Client, Settings
    client = Client(Settings.from_env())
    client.submit_many([("ADD", (0, 0))])  # producer connected before profiling starts
    sys.stdin.readline()
    for i in range(0, n, 500):
        client.submit_many([("ADD", (j, 1)) for j in range(i, min(n, i + 500))])
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--child-submit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_submit:
        child_submit(args.child_submit)
        return 0
    from yadtq import Client
    from yadtq.broker import ensure_topics

    n = args.tasks
    settings = fresh_settings("breakdown")
    ensure_topics(settings)
    env = settings_env(settings)
    client = Client(settings)
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    raws = {"submitter": tmp / "yadtq-breakdown-submit.txt", "worker": tmp / "yadtq-breakdown-worker.txt"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # one worker, assigned every partition, then the submitter (its warm-up task included)
        procs["worker"] = subprocess.Popen([sys.executable, "-m", "worker.main", "--no-supervisor",
                                            "--max-tasks", str(n + 1), "--log-level", "WARNING"],
                                           env=env, cwd=ROOT)
        deadline = time.monotonic() + 60
        while not any(len(w.partitions) == settings.partitions for w in client.workers()):
            if time.monotonic() > deadline or procs["worker"].poll() is not None:
                raise SystemExit("the worker did not get its partitions")
            time.sleep(0.1)
        procs["submitter"] = subprocess.Popen(
            [sys.executable, "-m", "bench.breakdown", "--child-submit", str(n)], env=env, cwd=ROOT,
            stdin=subprocess.PIPE)
        time.sleep(2.0)  # imported, connected, warm-up task sent
        spies = [spy(p.pid, raws[name]) for name, p in procs.items()]
        time.sleep(1.0)  # attached
        services = service_pids()
        before = {name: proc_cpu(pid) for name, pid in services.items()}
        t0 = time.time()
        stdin = procs["submitter"].stdin
        assert stdin is not None
        stdin.write(b"go\n")
        stdin.flush()
        cpu = watch(procs, timeout=300)
        seconds = time.time() - t0
        after = {name: proc_cpu(pid) for name, pid in services.items()}
        for s in spies:
            s.wait(timeout=30)
        counts = {s.value: c for s, c in client.counts().items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        client.reset()
        client.close()
    if counts.get("completed") != n + 1:
        print(f"unexpected counts: {counts}", file=sys.stderr)
    service_cpu = {k: after[k] - before[k] for k in before}
    runs = {name: {"cpu": cpu[name], "samples": attribute(raws[name])} for name in procs}
    phases = {"submitter (submit_many, 500 per call)": per_task(runs["submitter"], n),
              "worker (1 process, consuming concurrently)": per_task(runs["worker"], n),
              "Kafka broker": {"process total": round(service_cpu.get("kafka", 0) / n * 1e6, 1)},
              "Redis server": {"process total": round(service_cpu.get("redis", 0) / n * 1e6, 1)}}
    cols = [*ORDER, "process total"]
    lines = ["| process | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{p[c]:.1f}" if c in p else "" for c in cols) + " |"
              for name, p in phases.items()]
    everything = sum(p["process total"] for p in phases.values())
    lines.append(f"| **all** | | | | | **{everything:.1f}** |")
    table = ("**CPU microseconds per task** (py-spy shares scaled to /proc CPU; "
             f"{n:,} ADD tasks)\n\n" + "\n".join(lines))
    print(table)
    path = write_result("breakdown", {
        "benchmark": "per-task CPU breakdown", "machine": machine(), "tasks": n,
        "phases": phases, "counts_after_drain": counts, "table": table,
        "wall_seconds": round(seconds, 2),
        "samples": {name: dict(run["samples"]) for name, run in runs.items()}})
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
