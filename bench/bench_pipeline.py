"""End-to-end pipeline benchmark on the local stack (`make bench`).

For 1 and 2 worker processes:
- burst (bulk): N ADD tasks submitted with ``submit_many`` (batches of 500) while workers run;
  throughput = N / (first submit -> last completed).
- burst (single): the same with one ``submit`` call per task (one process).
- light load: tasks offered at a fixed rate (100/s); latency = submit -> completed, p50/p99.
- CPU: seconds of the workers, the submitting process, Kafka and Redis, per 1,000 tasks.
Every run checks that exactly N tasks completed with the right result (none lost, none doubled).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Workers,
    drop_prefix,
    fresh_settings,
    machine,
    percentile,
    proc_cpu,
    self_cpu,
    service_pids,
    wait_for,
    write_result,
)
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.models import TaskState


def check_and_latencies(client: Client, expected: dict[str, int]) -> tuple[list[float], float]:
    """Verify every task; return submit->completed latencies (s) and the last completion time."""
    store = client.store
    pipe = store.r.pipeline(transaction=False)
    ids = list(expected)
    for task_id in ids:
        pipe.hmget(store.keys.task(task_id), "state", "result", "created_at", "finished_at",
                   "attempt")
    rows = pipe.execute()
    lat, last, bad = [], 0.0, 0
    for task_id, (state, result, created, finished, attempt) in zip(ids, rows, strict=True):
        if state != "completed" or int(result) != expected[task_id] or attempt != "1":
            bad += 1
            continue
        lat.append(float(finished) - float(created))
        last = max(last, float(finished))
    if bad:
        raise RuntimeError(f"{bad} of {len(ids)} tasks not completed exactly once with the right result")
    return lat, last


def wait_done(client: Client, n: int, timeout: float) -> None:
    if not wait_for(lambda: client.counts()[TaskState.COMPLETED] >= n, timeout):
        raise RuntimeError(f"only {client.counts()} after {timeout}s")


def burst(client: Client, workers: Workers, n: int, bulk: bool, wait: bool = True) -> dict[str, Any]:
    client.reset()
    pids = service_pids()
    cpu0 = {"workers": workers.cpu_seconds(), "submitter": self_cpu(),
            **{k: proc_cpu(p) for k, p in pids.items()}}
    expected: dict[str, int] = {}
    t0 = time.time()
    if bulk:
        for start in range(0, n, 500):
            items = [("ADD", [i, 1]) for i in range(start, min(n, start + 500))]
            for task_id, (_, (a, b)) in zip(client.submit_many(items), items, strict=True):
                expected[task_id] = a + b
    else:
        for i in range(n):
            expected[client.submit("ADD", [i, 1], wait=wait)] = i + 1
        client.flush()
    t_submitted = time.time()
    wait_done(client, n, timeout=120)
    lat, last = check_and_latencies(client, expected)
    cpu1 = {"workers": workers.cpu_seconds(), "submitter": self_cpu(),
            **{k: proc_cpu(p) for k, p in pids.items()}}
    cpu = {k: round((cpu1[k] - cpu0[k]) / n * 1000, 3) for k in cpu0}
    elapsed = last - t0
    return {"tasks": n, "seconds": round(elapsed, 3), "tasks_per_s": round(n / elapsed),
            "submit_per_s": round(n / (t_submitted - t0)),
            "p50_ms": round(percentile(lat, 50) * 1000, 2), "p99_ms": round(percentile(lat, 99) * 1000, 2),
            "cpu_s_per_1000": cpu, "cpu_s_per_1000_total": round(sum(cpu.values()), 3)}


def drain(settings: Any, client: Client, n_workers: int, n: int) -> dict[str, Any]:
    """N tasks queued with no worker running; then workers start. Rate from the first task's
    start to the last completion (worker start-up and group join excluded)."""
    client.reset()
    expected: dict[str, int] = {}
    for start in range(0, n, 500):
        items = [("ADD", [i, 3]) for i in range(start, min(n, start + 500))]
        for task_id, (_, (a, b)) in zip(client.submit_many(items), items, strict=True):
            expected[task_id] = a + b
    workers = Workers(settings, n_workers)
    try:
        wait_done(client, n, timeout=120)
        check_and_latencies(client, expected)
        store = client.store
        pipe = store.r.pipeline(transaction=False)
        for task_id in expected:
            pipe.hmget(store.keys.task(task_id), "started_at", "finished_at")
        rows = pipe.execute()
        first = min(float(a) for a, _ in rows)
        last = max(float(b) for _, b in rows)
        return {"tasks": n, "seconds": round(last - first, 3), "tasks_per_s": round(n / (last - first))}
    finally:
        workers.stop()


def steady(client: Client, rate: float, seconds: float, wait: bool = True) -> dict[str, Any]:
    client.reset()
    n = int(rate * seconds)
    expected: dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(n):
        target = t0 + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        expected[client.submit("ADD", [i, 2], wait=wait)] = i + 2
    client.flush()
    wait_done(client, n, timeout=60)
    lat, _ = check_and_latencies(client, expected)
    achieved = n / (time.perf_counter() - t0)
    return {"offered_per_s": rate, "achieved_per_s": round(achieved, 1), "tasks": n, "wait": wait,
            "p50_ms": round(percentile(lat, 50) * 1000, 2), "p99_ms": round(percentile(lat, 99) * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2)}


def run(n: int, light_seconds: float, worker_counts: list[int],
        replication: int | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "tasks": n, "configs": {}}
    for w in worker_counts:
        settings = fresh_settings(f"w{w}")
        if replication is not None:
            settings = settings.with_(replication_factor=replication)
        ensure_topics(settings)
        client = Client(settings)
        workers = None
        try:
            cfg = {"drain": drain(settings, client, w, n)}
            workers = Workers(settings, w)
            workers.wait_ready(client)
            burst(client, workers, min(n, 1000), bulk=True)  # warm-up
            cfg.update({"bulk": burst(client, workers, n, bulk=True),
                        "single": burst(client, workers, n, bulk=False),
                        "single_nowait": burst(client, workers, n, bulk=False, wait=False),
                        "light_100": steady(client, 100, light_seconds),
                        "steady_200": steady(client, 200, light_seconds),
                        # one thread cannot offer 1,000/s waiting for each ack: unconfirmed submits
                        "steady_1000": steady(client, 1000, light_seconds, wait=False)})
            results["configs"][f"{w}_workers"] = cfg
            print_config(w, cfg)
        finally:
            if workers is not None:
                workers.stop()
            drop_prefix(client)
    return results


def print_config(w: int, cfg: dict[str, Any]) -> None:
    b = cfg["bulk"]
    print(f"\n{w} worker(s), {b['tasks']} ADD tasks")
    print(f"  {'phase':<34}{'tasks/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU s/1k':>10}")
    d = cfg["drain"]
    print(f"  {'drain (already queued)':<34}{d['tasks_per_s']:>9}")
    for key, label in (("bulk", "burst, submit_many"), ("single", "burst, submit (wait for ack)"),
                       ("single_nowait", "burst, submit(wait=False)")):
        r = cfg[key]
        print(f"  {label:<34}{r['tasks_per_s']:>9}{r['p50_ms']:>9}{r['p99_ms']:>9}"
              f"{r['cpu_s_per_1000_total']:>10}")
    for key, label in (("light_100", "steady 100/s offered"), ("steady_200", "steady 200/s offered"),
                       ("steady_1000", "steady 1000/s (wait=False)")):
        r = cfg[key]
        print(f"  {label:<34}{r['achieved_per_s']:>9}{r['p50_ms']:>9}{r['p99_ms']:>9}")
    print(f"  CPU per 1,000 tasks (submit_many burst): {b['cpu_s_per_1000']}")


def ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Throughput of run ``a`` over run ``b`` for each configuration and phase (``tasks_per_s`` or
    ``achieved_per_s``), and the p50 latency ratio of the steady phases."""
    out: dict[str, float] = {}
    for cfg, phases in a.items():
        for phase, r in phases.items():
            other = b.get(cfg, {}).get(phase, {})
            for key in ("tasks_per_s", "achieved_per_s", "p50_ms"):
                if r.get(key) and other.get(key):
                    out[f"{cfg}.{phase}.{key}"] = round(r[key] / other[key], 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--light-seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 5 s of light load")
    parser.add_argument("--replication", default=None, metavar="RF[,RF]",
                        help="run once per replication factor of the topics (e.g. 3,1 on the "
                             "cluster of `make cluster`, with YADTQ_KAFKA_BOOTSTRAP pointing at it); "
                             "writes pipeline-replication.json with the ratios")
    args = parser.parse_args()
    n, light = (2000, 5.0) if args.quick else (args.tasks, args.light_seconds)
    counts = [int(x) for x in args.workers.split(",")]
    if args.replication:
        factors = [int(x) for x in args.replication.split(",")]
        results = {"machine": machine(), "tasks": n, "bootstrap": Settings.from_env().kafka_bootstrap,
                   "runs": {}}
        for rf in factors:
            print(f"\n=== replication factor {rf}")
            results["runs"][str(rf)] = run(n, light, counts, replication=rf)["configs"]
        if len(factors) == 2:
            results["ratios"] = ratios(results["runs"][str(factors[0])],
                                       results["runs"][str(factors[1])])
            print(f"\nreplication {factors[0]} / {factors[1]}:", results["ratios"])
        path = write_result("pipeline-replication", results)
    else:
        path = write_result("pipeline", run(n, light, counts))
    print(f"\nwritten to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
