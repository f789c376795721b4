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
- The I/O phase's task with no queue at all (``--io-tasks``, 0 = skip): 2 processes (as the 2
  workers), each an asyncio loop running the body of YADTQ's ``PBASLEEP`` (``await
  asyncio.sleep(0.01)``, then the record) for its share of the tasks, up to ``--io-inflight`` at
  once; then the same with 64 threads per process running ``record.sleep_add`` (the sync systems'
  task, ``PBSLEEP``). The tasks come from a list in memory: no broker, no state, no
  acknowledgement. The record is the peers' I/O phase's (``--io-record``: a line appended to a file
  by default, or the Redis call). Its tasks/s is what any queue's I/O drain would reach here if the
  queue cost nothing; ``cores / (its CPU + Redis's CPU per task)`` is what it would reach if, besides, every
  core were busy with it alone.

    .venv/bin/python bench/bench_floor.py            # results: bench/results/floor.json
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def _io_share(start: int, n: int, inflight: int, kind: str) -> tuple[float, float]:
    """A child: ``n`` I/O tasks, ``inflight`` at once, on one event loop (``kind`` "async") or
    on as many threads ("threads": ``record.sleep_add``, the sync systems' task) -> (wall, CPU s)."""
    async def one(i: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            await asyncio.sleep(record.IO_SLEEP)
            record.add(i, 1, f"io:{i}")

    async def run() -> None:
        gate = asyncio.Semaphore(inflight)
        await asyncio.gather(*(one(i, gate) for i in range(start, start + n)))

    c0, t0 = time.process_time(), time.perf_counter()
    if kind == "async":
        asyncio.run(run())
    else:
        with ThreadPoolExecutor(inflight) as pool:
            list(pool.map(lambda i: record.sleep_add(i, 1, f"io:{i}"), range(start, start + n)))
    return time.perf_counter() - t0, time.process_time() - c0


def io_task_only(tasks: int, inflight: int, procs: int, server: int | None,
                 kind: str) -> dict[str, Any]:
    """``tasks`` I/O tasks split over ``procs`` processes with no queue: tasks/s and CPU per task."""
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter each, as a worker is
    share = tasks // procs
    s0 = proc_cpu(server) if server else 0.0
    t0 = time.perf_counter()
    with ctx.Pool(procs) as pool:
        out = pool.starmap(_io_share, [(k * share, share, inflight, kind)
                                               for k in range(procs)])
    wall = time.perf_counter() - t0  # includes the children's start: a little under the truth
    done = share * procs
    result: dict[str, Any] = {
        "kind": kind, "tasks": done, "processes": procs, "inflight_per_process": inflight,
        "tasks_per_s": round(done / max(w for w, _ in out)),
        "tasks_per_s_incl_start": round(done / wall),
        "process_cpu_us_per_task": round(sum(c for _, c in out) / done * 1e6, 1)}
    if server:
        result["server_cpu_us_per_task"] = round((proc_cpu(server) - s0) / done * 1e6, 1)
    # were every core busy with nothing but these tasks and their Redis calls
    cpu_us = result["process_cpu_us_per_task"] + result.get("server_cpu_us_per_task", 0.0)
    result["cpu_bound_ceiling_tasks_per_s"] = round((os.cpu_count() or 1) / (cpu_us / 1e6))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="calls per measurement")
    ap.add_argument("--out", default="floor")
    ap.add_argument("--io-tasks", type=int, default=40000,
                    help="I/O tasks run with no queue (0: skip that measurement)")
    ap.add_argument("--io-record", choices=("file", "redis"), default="file",
                    help="the I/O task's record: a line appended to a file (the peers' I/O phase's "
                         "default) or its Redis call")
    ap.add_argument("--io-inflight", type=int, default=1000,
                    help="async tasks in flight per process (the threaded variant runs 64 threads)")
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
        if ns.io_record == "file":  # the spawned children inherit it (bench/peers/record.py)
            os.environ["PEERS_RECORD_FILE"] = record.file_for(os.environ["PEERS_NS"])
        for kind, inflight in (("async", ns.io_inflight), ("threads", 64)) if ns.io_tasks else ():
            results[f"io_task_only.{kind}"] = r = io_task_only(ns.io_tasks, inflight, 2, server, kind)
            r["record"] = ns.io_record
            print(f"the I/O task with no queue ({kind}, {inflight} in flight, record: {ns.io_record}), "
                  "2 processes: "
                  f"{r['tasks_per_s']} tasks/s, {r['process_cpu_us_per_task']} µs CPU per task in them"
                  + (f" + {r['server_cpu_us_per_task']} µs in Redis" if server else "")
                  + f"; all cores on them alone: {r['cpu_bound_ceiling_tasks_per_s']}/s", flush=True)
    finally:
        if os.environ.get("PEERS_RECORD_FILE"):
            Path(os.environ.pop("PEERS_RECORD_FILE")).unlink(missing_ok=True)
        ns_key = os.environ["PEERS_NS"]
        conn.delete(f"{ns_key}:cnt", f"{ns_key}:done", f"{ns_key}:pc", f"{ns_key}:who:floor",
                    f"{ns_key}:who:io")
    cores = os.cpu_count() or 1
    back = results["record_script.back_to_back"]
    per_task_us = back["caller_cpu_us"] + back.get("server_cpu_us", 0.0)
    ceiling = round(cores / (per_task_us / 1e6)) if per_task_us else None
    print(f"a task that did nothing but the Redis record: {per_task_us:.0f} µs of CPU -> at most "
          f"{ceiling} tasks/s on {cores} cores, before any queue's own work", flush=True)
    path = write_result(ns.out, {"benchmark": "machine floor (issues 12 and 15)", "machine": machine(),
                                 "results": results, "record_cpu_us_per_task": round(per_task_us, 1),
                                 "record_only_ceiling_tasks_per_s": ceiling, "cores": cores})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
