"""What this machine allows, measured without YADTQ's pipeline (issues 12 and 15): the floor that
any task queue's task pays here, so a target can be checked against the machine before the code.

- ``machine.calibration`` (``bench.common.calibrate``): a fixed Python loop; a pipe round trip to
  another process, back to back and after 5 ms idle.
- A Redis ``PING`` from redis-py, and the script every system's benchmark task runs to record its
  completion (``bench/peers/record.py``, one call per task, identical for every system): the
  caller's CPU per call (``time.thread_time``), the Redis server's CPU per call (from ``/proc``,
  when it was started by ``make services``), and the wall time, back to back and with 5 ms idle
  before each call (a task at 200/s arrives every 5 ms).
- The arithmetic: tasks per second on this machine's cores if a task cost nothing but that record
  (``cores / (caller CPU + server CPU)``): a ceiling no queue's I/O phase can pass here.

    .venv/bin/python bench/bench_floor.py            # results: bench/results/floor.json
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, percentile, proc_cpu, service_pids, write_result
from bench.peers import record
from yadtq import Settings


def measure(call: Callable[[], object], n: int, gap: float, server: int | None) -> dict[str, Any]:
    """``n`` calls of ``call``: caller CPU and server CPU per call (µs), wall p50 / p99 (µs)."""
    call()  # connect, load the script
    walls: list[float] = []
    s0 = proc_cpu(server) if server else 0.0
    busy = 0.0
    for _ in range(n):
        if gap:
            time.sleep(gap)
        c0, t0 = time.thread_time(), time.perf_counter()
        call()
        walls.append((time.perf_counter() - t0) * 1e6)
        busy += time.thread_time() - c0
    walls.sort()
    out: dict[str, Any] = {"calls": n, "caller_cpu_us": round(busy / n * 1e6, 1),
                           "wall_us_p50_p99": [round(percentile(walls, 50)),
                                               round(percentile(walls, 99))]}
    if server and not gap:  # idle gaps would charge the server's own timers to the calls
        out["server_cpu_us"] = round((proc_cpu(server) - s0) / n * 1e6, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="calls per measurement")
    ap.add_argument("--out", default="floor")
    ns = ap.parse_args()
    os.environ.setdefault("PEERS_NS", f"bench-floor-{os.getpid()}")
    # the Redis of the settings (make services, or the test services), without its database
    os.environ.setdefault("PEERS_REDIS", re.sub(r"/\d*$", "", Settings.from_env().redis_url))
    server = service_pids().get("redis")
    conn = record.client()
    keys = 0

    def rec() -> None:
        nonlocal keys
        keys += 1
        record.record(f"floor:{keys}")

    results: dict[str, Any] = {}
    try:
        for label, call in (("redis_ping", conn.ping), ("record_script", rec)):
            for gap_label, gap in (("back_to_back", 0.0), ("after_5ms_idle", 0.005)):
                n = ns.n if not gap else max(1, ns.n // 5)
                results[f"{label}.{gap_label}"] = r = measure(call, n, gap, server)
                print(f"{label:14} {gap_label:14} caller CPU {r['caller_cpu_us']:7.1f} µs"
                      + (f"  server CPU {r['server_cpu_us']:6.1f} µs" if "server_cpu_us" in r else "")
                      + f"  wall p50/p99 {r['wall_us_p50_p99'][0]}/{r['wall_us_p50_p99'][1]} µs",
                      flush=True)
    finally:
        ns_key = os.environ["PEERS_NS"]
        conn.delete(f"{ns_key}:cnt", f"{ns_key}:done", f"{ns_key}:pc", f"{ns_key}:who:floor")
    cores = os.cpu_count() or 1
    back = results["record_script.back_to_back"]
    per_task_us = back["caller_cpu_us"] + back.get("server_cpu_us", 0.0)
    ceiling = round(cores / (per_task_us / 1e6)) if per_task_us else None
    print(f"a task that did nothing but its record: {per_task_us:.0f} µs of CPU -> at most "
          f"{ceiling} tasks/s on {cores} cores, before any queue's own work", flush=True)
    path = write_result(ns.out, {"benchmark": "machine floor (issues 12 and 15)", "machine": machine(),
                                 "results": results, "record_cpu_us_per_task": round(per_task_us, 1),
                                 "record_only_ceiling_tasks_per_s": ceiling, "cores": cores})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
