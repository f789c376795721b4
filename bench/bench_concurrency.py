"""Concurrency benchmark on the local stack (issue 12): tasks in flight per worker.

Every drain runs 2 worker processes with ``--concurrency C``; the rate is N over the first task's
start to the last completion. The I/O phases start the workers, wait until they own every
partition (a rebalance inside the window stalled a worker for 2-3 s and halved some runs), then
submit N tasks in batches of 500; the CPU phase queues its tasks first (the client could not
submit them as fast as they run) and then starts the workers. Every task is checked: completed,
run once (handed-back starts not counted), with its result.

- cpu: ``ADD`` (the drain of ``make bench``): what concurrency costs CPU-bound work.
- io: ``IO_SLEEP 0.01`` (a blocking 10 ms wait on a thread) and ``IO_ASLEEP 0.01`` (``async def``).
- mixed: 10,000 ``ADD`` with one ``IO_SLEEP 5`` per partition's worth of them interleaved (a long task
  every n / partitions): how long the short ones take, with and without concurrency (``--mixed``).

    python bench/bench_concurrency.py                    # the default grid
    python bench/bench_concurrency.py --phase io --concurrency 1 8 32 --n 5000
    python bench/bench_concurrency.py --mixed --concurrency 1 8 --n 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.tasks_io  # noqa: F401 - registers IO_SLEEP, IO_ASLEEP for the client's validation
from bench.common import (
    Workers,
    drop_prefix,
    fresh_settings,
    machine,
    proc_cpu,
    service_pids,
    wait_for,
    write_result,
)
from yadtq import Client
from yadtq.broker import ensure_topics
from yadtq.models import TaskState

PHASES = {"cpu": ("ADD", lambda i: [i, 3], lambda i: i + 3),
          "io": ("IO_SLEEP", lambda i: [0.01], lambda i: 0.01),
          "aio": ("IO_ASLEEP", lambda i: [0.01], lambda i: 0.01)}


def runs(history: str) -> int:
    """How many times a task ran: its in-progress entries less those handed back unstarted (a
    chunk marked in-progress whose partition moved before these tasks ran: the next owner runs
    them as the next attempt, so the attempt number alone over-counts)."""
    entries = json.loads(history)
    return (sum(1 for e in entries if e[0] == "in-progress")
            - sum(1 for e in entries if e[0] == "queued" and str(e[4]).startswith("handed back")))


def drain(phase: str, n: int, workers: int, concurrency: int) -> dict[str, Any]:
    name, args, result = PHASES[phase]
    settings = fresh_settings(f"c{phase}{concurrency}")
    ensure_topics(settings)
    client = Client(settings)
    try:
        ids: list[str] = []

        def submit() -> None:
            for start in range(0, n, 500):
                ids.extend(client.submit_many([(name, args(i))
                                               for i in range(start, min(n, start + 500))]))

        if phase == "cpu":
            submit()  # queued first: faster than the client could submit them
        procs = Workers(settings, workers, extra_args=("--tasks", "bench.tasks_io",
                                                       "--concurrency", str(concurrency)))
        pids = [p.pid for p in procs.procs] + list(service_pids().values())
        try:
            if phase != "cpu":
                procs.wait_ready(client)  # warm: the group formed, no rebalance in the window
            cpu0 = [proc_cpu(pid) for pid in pids]
            if phase != "cpu":
                submit()
            if not wait_for(lambda: client.counts()[TaskState.COMPLETED] >= n, 300):
                raise RuntimeError(f"only {client.counts()} after 300 s")
            cpu = [proc_cpu(pid) - c0 for pid, c0 in zip(pids, cpu0, strict=True)]
        finally:
            procs.stop()
        store = client.store
        pipe = store.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(store.keys.task(task_id), "state", "result", "history", "started_at",
                       "finished_at")
        rows = pipe.execute()
        bad = [t for i, (t, (state, value, history, _, _)) in enumerate(zip(ids, rows, strict=True))
               if state != "completed" or runs(history) != 1 or float(value) != result(i)]
        if bad:
            for t in bad[:4]:
                print(t, store.r.hgetall(store.keys.task(t)), flush=True)
            raise RuntimeError(f"{len(bad)} of {n} tasks not completed, run once, with their result")
        first = min(float(r[3]) for r in rows)
        last = max(float(r[4]) for r in rows)
        return {"phase": phase, "task": name, "tasks": n, "workers": workers,
                "concurrency": concurrency, "seconds": round(last - first, 3),
                "tasks_per_s": round(n / (last - first)),
                # CPU seconds per 1,000 tasks from the workers' start (cpu) or readiness (io, aio)
                # to the last completion (workers; Kafka and Redis when started by make services)
                "worker_cpu_s_per_1k": round(sum(cpu[:workers]) * 1000 / n, 3),
                "services_cpu_s_per_1k": round(sum(cpu[workers:]) * 1000 / n, 3)}
    finally:
        drop_prefix(client)


def mixed(n: int, workers: int, concurrency: int, long_s: float = 5.0) -> dict[str, Any]:
    """``n`` short ``ADD`` tasks with a ``long_s`` sleep after every ``n / partitions`` of them."""
    settings = fresh_settings(f"cmix{concurrency}")
    ensure_topics(settings)
    client = Client(settings)
    every = max(1, n // settings.partitions)
    try:
        jobs: list[tuple[str, list[Any]]] = []
        for i in range(n):
            if i % every == every // 2:
                jobs.append(("IO_SLEEP", [long_s]))
            jobs.append(("ADD", [i, 3]))
        ids: list[str] = []
        for start in range(0, len(jobs), 500):
            ids += client.submit_many(jobs[start:start + 500])
        procs = Workers(settings, workers, extra_args=("--tasks", "bench.tasks_io",
                                                       "--concurrency", str(concurrency)))
        try:
            if not wait_for(lambda: client.counts()[TaskState.COMPLETED] >= len(jobs), 600):
                raise RuntimeError(f"only {client.counts()} after 600 s")
        finally:
            procs.stop()
        pipe = client.store.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(client.store.keys.task(task_id), "state", "history", "started_at",
                       "finished_at")
        rows = pipe.execute()
        if any(state != "completed" or runs(history) != 1 for state, history, _, _ in rows):
            raise RuntimeError("a task did not complete, run once")
        first = min(float(r[2]) for r in rows)
        short = sorted(float(r[3]) - first for (name, _), r in zip(jobs, rows) if name == "ADD")
        return {"phase": "mixed", "short_tasks": len(short), "long_tasks": len(jobs) - len(short),
                "long_s": long_s, "workers": workers, "concurrency": concurrency,
                "short_done_p50_s": round(short[len(short) // 2], 3),
                "short_done_p99_s": round(short[int(len(short) * 0.99)], 3),
                "short_all_done_s": round(short[-1], 3)}
    finally:
        drop_prefix(client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", nargs="+", default=["cpu", "io", "aio"], choices=sorted(PHASES))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 8, 16, 32])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", default="concurrency", help="result name under bench/results")
    parser.add_argument("--mixed", action="store_true", help="the mixed phase only")
    args = parser.parse_args()
    runs = []
    if args.mixed:
        for _ in range(args.repeat):
            for c in args.concurrency:
                runs.append(mixed(args.n, args.workers, c))
                print(runs[-1], flush=True)
        write_result(args.out, {"machine": machine(), "runs": runs})
        return
    for _ in range(args.repeat):
        for phase in args.phase:
            for c in args.concurrency:
                r = drain(phase, args.n, args.workers, c)
                runs.append(r)
                print(f"{phase:<4} {r['task']:<10} C={c:<4} {r['tasks_per_s']:>7} tasks/s "
                      f"({r['tasks']} in {r['seconds']} s, {args.workers} workers; CPU s per 1k: "
                      f"workers {r['worker_cpu_s_per_1k']}, Kafka + Redis "
                      f"{r['services_cpu_s_per_1k']})", flush=True)
                time.sleep(1)
    write_result(args.out, {"machine": machine(), "runs": runs})


if __name__ == "__main__":
    main()
