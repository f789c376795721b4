"""Dashboard refresh time and memory with many tasks in a real Redis.

    .venv/bin/python bench/bench_tui.py [--tasks 100000] [--refreshes 30] [--quick]
                                        [--load-seconds 20] [--no-load]

Creates ``--tasks`` tasks under a private key prefix (``yadtq:bench-<hex>``) through
``RedisStore.create`` in batches of 1000, runs the dashboard headless (``run_test``) and measures
one refresh: the reads in a thread (``fetch_snapshot``), the update of every widget on the UI thread
(``apply_snapshot``), the CPU time of the paint that follows, and the same refresh driven through
the app's own poll worker (thread hop, message, apply). Between
refreshes it adds tasks and finishes some, so every refresh has real changes to show. Reports the
median and p95 of each, and the process's resident memory, then deletes every key it created.
Targets: refresh <= 50 ms, memory <= 150 MB. Writes ``bench/results/tui.json``.

Then, unless ``--no-load``, the same dashboard under benchmark load (``bench/tui_load.py``): 2 real
workers kept saturated by a load generator process (``submit_many``, batches of 500, while fewer
than 20,000 tasks are queued) for ``--load-seconds`` (20; 8 with ``--quick``), the dashboard
refreshing through its own poll worker every 0.5 s. Reported under ``under_load``: each refresh's
reads (in the poll worker thread), ``apply_snapshot`` (UI thread), their sum, the whole refresh via
the poll worker, the UI loop's lag between refreshes, tasks completed per second, CPU per process,
load average and memory. It meets the target when both the refresh (reads + apply) and the refresh
via the poll worker have a p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS  # noqa: E402
from bench.tui_load import LOAD_DESCRIPTION, POLL_INTERVAL, LoadRun, run_under_load  # noqa: E402
from yadtq import Client, Settings  # noqa: E402
from yadtq.models import TaskState  # noqa: E402
from yadtq.store import Beat, Outcome, RedisStore  # noqa: E402
from yadtq.testing import FakeBroker  # noqa: E402
from yadtq.wire import Envelope  # noqa: E402
from yadtq_tui.app import make_app  # noqa: E402
from yadtq_tui.data import fetch_snapshot  # noqa: E402

TARGET_REFRESH_MS = 50.0
TARGET_RSS_MB = 150.0
BATCH = 1000
WORKERS = ("bench-a-101", "bench-b-202", "bench-c-303")


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, in MB."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def stats(samples: list[float]) -> dict[str, float]:
    """Median, p95 and max in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"median_ms": round(statistics.median(ms), 2), "p95_ms": round(p95, 2),
            "max_ms": round(ms[-1], 2), "n": len(ms)}


def populate(store: RedisStore, n: int) -> float:
    """``n`` tasks, the newest few hundred moved through every state; returns seconds taken."""
    started = time.perf_counter()
    now = time.time()
    ids: list[str] = []
    for first in range(0, n, BATCH):
        envs = [Envelope(uuid.uuid4().hex, "ADD", (i, i), now - (n - i) * 0.01)
                for i in range(first, min(n, first + BATCH))]
        store.create(envs)
        ids.extend(e.id for e in envs)
    newest = ids[-300:]
    for k, worker in enumerate(WORKERS):
        chunk = newest[k * 100:(k + 1) * 100]
        envs = [Envelope(t, "ADD", (1, 1), now) for t in chunk]
        store.start(worker, envs)
        outcomes = [Outcome(t, 1, TaskState.FAILED if j % 10 == 0 else TaskState.COMPLETED,
                            result=None if j % 10 == 0 else 2,
                            error="RuntimeError: boom" if j % 10 == 0 else None)
                    for j, t in enumerate(chunk[:80])]
        store.finish(worker, outcomes)
    beat(store, time.time())
    return time.perf_counter() - started


def beat(store: RedisStore, started: float) -> None:
    for k, worker in enumerate(WORKERS):
        host, _, pid = worker.rpartition("-")
        store.heartbeat(Beat(worker, host, int(pid), started, None, 80 * (k + 1), 8), 30.0)


def churn(store: RedisStore, step: int) -> None:
    """Between refreshes: 10 new tasks, 10 of them started and 5 finished."""
    now = time.time()
    envs = [Envelope(uuid.uuid4().hex, "MUL", (step, j), now) for j in range(10)]
    store.create(envs)
    store.start(WORKERS[step % len(WORKERS)], envs)
    store.finish(WORKERS[step % len(WORKERS)],
                 [Outcome(e.id, 1, TaskState.COMPLETED, result=step * j)
                  for j, e in enumerate(envs[:5])])


async def measure(client: Client, store: RedisStore, refreshes: int) -> dict[str, Any]:
    app = make_app(client, poll_interval=3600.0, health_interval=3600.0)
    fetch: list[float] = []
    apply: list[float] = []
    render: list[float] = []
    loop: list[float] = []
    filtered: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.dashboard
        while screen.polls < 1:
            await pilot.pause(0.01)
        await pilot.pause()
        for step in range(refreshes):
            churn(store, step)
            t0 = time.perf_counter()
            snap = await asyncio.to_thread(fetch_snapshot, client, None, 100,
                                           with_specs=step % 20 == 0)
            t1 = time.perf_counter()
            screen.apply_snapshot(snap)
            t2 = time.perf_counter()
            c2 = time.process_time()
            # Let the app handle what the update queued and paint it. A fixed sleep, not
            # pilot.pause(), whose idle detection spins: the CPU time is then the paint's own.
            await pilot.pause(0.1)
            t3 = t2 + (time.process_time() - c2)
            fetch.append(t1 - t0)
            apply.append(t2 - t1)
            render.append(t3 - t2)
        for step in range(refreshes):  # the same refresh through the app's own poll worker
            churn(store, refreshes + step)
            before = screen.polls
            t0 = time.perf_counter()
            screen.poll_now()
            while screen.polls == before:
                await asyncio.sleep(0.0005)
            loop.append(time.perf_counter() - t0)
            await pilot.pause()
        for step in range(refreshes):  # a filtered page (the ids come from one state's index)
            state = (TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED,
                     TaskState.FAILED)[step % 4]
            t0 = time.perf_counter()
            await asyncio.to_thread(fetch_snapshot, client, state, 100)
            filtered.append(time.perf_counter() - t0)
        rows = screen.table.row_count
    return {"fetch_thread": stats(fetch), "apply_ui_thread": stats(apply),
            "render_ui_thread": stats(render),
            "refresh_total": stats([f + a for f, a in zip(fetch, apply, strict=True)]),
            "refresh_via_app_worker": stats(loop), "filtered_fetch": stats(filtered),
            "rows_shown": rows}


def reset_peak_rss() -> None:
    """Start a new peak (VmHWM) for this process (Linux ``clear_refs``; ignored elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def load_report(run: LoadRun, settings: Settings) -> dict[str, Any]:
    """The ``under_load`` entry of the report, from one load phase."""
    rss_now, rss_peak = rss_mb()
    seconds = run.seconds
    done = {s: run.counts_after.get(s, 0) - run.counts_before.get(s, 0) for s in TaskState}
    total = stats([f + a for f, a in zip(run.fetch, run.apply, strict=True)])
    via = stats(run.via_worker)
    return {
        "load": LOAD_DESCRIPTION, "workers": 2, "partitions": settings.partitions,
        "seconds": round(seconds, 2), "poll_interval_s": POLL_INTERVAL, "refreshes": len(run.fetch),
        "fetch_thread": stats(run.fetch), "apply_ui_thread": stats(run.apply),
        "refresh_total": total, "refresh_via_app_worker": via, "ui_loop_lag": stats(run.loop_lag),
        "tasks_completed_per_s": round(done[TaskState.COMPLETED] / seconds, 1),
        "tasks_failed_per_s": round(done[TaskState.FAILED] / seconds, 1),
        "tasks_submitted_per_s": round(sum(done.values()) / seconds, 1),
        "queued": {"min": min(run.backlog), "max": max(run.backlog),
                   "at_end": run.counts_after.get(TaskState.QUEUED, 0)},
        "cpu_cores": {k: round(v / seconds, 2) for k, v in run.cpu_seconds.items()},
        "load_average_1m": {"start": round(run.load_average[0], 2),
                            "end": round(run.load_average[1], 2)},
        "rss_mb": round(rss_now, 1), "rss_peak_mb": round(rss_peak, 1),
        "target_refresh_ms": TARGET_REFRESH_MS,
        "meets_target": max(total["p95_ms"], via["p95_ms"]) <= TARGET_REFRESH_MS,
    }


def print_load(rep: dict[str, Any]) -> None:
    print(f"under load for {rep['seconds']:.0f}s: 2 workers completed "
          f"{rep['tasks_completed_per_s']:,.0f} tasks/s (queued {rep['queued']['min']:,}-"
          f"{rep['queued']['max']:,}; CPU cores: " + ", ".join(
              f"{k} {v:.2f}" for k, v in rep["cpu_cores"].items()) + ")")
    for key, label in (("fetch_thread", "fetch (poll worker thread)"),
                       ("apply_ui_thread", "apply (UI thread, widgets)"),
                       ("refresh_total", "refresh = fetch + apply"),
                       ("refresh_via_app_worker", "refresh via the app's poll worker"),
                       ("ui_loop_lag", "UI loop lag between refreshes")):
        s = rep[key]
        print(f"{label:<34}{s['median_ms']:>11.2f}{s['p95_ms']:>10.2f}{s['max_ms']:>10.2f}")
    verdict = "meets" if rep["meets_target"] else "MISSES"
    print(f"under load: {verdict} refresh p95 <= {TARGET_REFRESH_MS:.0f} ms ({rep['refreshes']} "
          f"refreshes every {POLL_INTERVAL} s; peak RSS {rep['rss_peak_mb']:.1f} MB; load average "
          f"{rep['load_average_1m']['start']:.2f} -> {rep['load_average_1m']['end']:.2f} on "
          f"{os.cpu_count()} CPUs)")


def cleanup(store: RedisStore, prefix: str) -> int:
    store.reset()
    deleted = 0
    keys = list(store.r.scan_iter(match=prefix + ":*", count=1000))
    for i in range(0, len(keys), 1000):
        deleted += store.r.unlink(*keys[i:i + 1000])
    return deleted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--refreshes", type=int, default=30)
    parser.add_argument("--quick", action="store_true",
                        help="10,000 tasks and 10 refreshes (a smoke run)")
    parser.add_argument("--load-seconds", type=float, default=20.0,
                        help="length of the phase under load (default 20; 8 with --quick)")
    parser.add_argument("--no-load", action="store_true",
                        help="skip the phase under load (2 workers, a load generator)")
    parser.add_argument("--output", default=str(RESULTS / "tui.json"))
    ns = parser.parse_args()
    if ns.quick:
        ns.tasks, ns.refreshes = min(ns.tasks, 10_000), min(ns.refreshes, 10)
        ns.load_seconds = min(ns.load_seconds, 8.0)
    if ns.load_seconds <= 0:
        parser.error("--load-seconds must be positive")

    prefix = f"yadtq:bench-{uuid.uuid4().hex[:10]}"
    settings = Settings.from_env(key_prefix=prefix)
    store = RedisStore(settings)
    store.ping()
    broker = FakeBroker()  # the refresh reads Redis only; Kafka is not measured here
    client = Client(settings, store=store, producer_factory=broker.producer,
                    kafka_ping=broker.ping)
    rss_before, _ = rss_mb()
    try:
        populate_s = populate(store, ns.tasks)
        results = asyncio.run(measure(client, store, ns.refreshes))
        rss_after, rss_peak = rss_mb()
        counts = client.counts()
    finally:
        cleanup(store, prefix)
        client.close()
    total = results["refresh_total"]
    report = {
        "benchmark": "yadtq-tui refresh",
        "tasks": ns.tasks,
        "tasks_at_end": sum(counts.values()),
        "counts_at_end": {s.value: n for s, n in counts.items()},
        "refreshes": ns.refreshes,
        "page_size": 100,
        "populate_seconds": round(populate_s, 2),
        **results,
        "rss_mb_before_app": round(rss_before, 1),
        "rss_mb": round(rss_after, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "targets": {"refresh_ms": TARGET_REFRESH_MS, "rss_mb": TARGET_RSS_MB},
        "meets_targets": (total["p95_ms"] <= TARGET_REFRESH_MS
                          and rss_peak <= TARGET_RSS_MB),
        "redis": settings.redacted()["redis_url"],
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "under_load": None,
    }
    print(f"yadtq-tui refresh with {ns.tasks:,} tasks in Redis "
          f"({ns.refreshes} refreshes, 100-row page; populate {populate_s:.1f}s)")
    print(f"{'measure':<34}{'median ms':>11}{'p95 ms':>10}{'max ms':>10}")
    for key, label in (("fetch_thread", "fetch (thread, Redis reads)"),
                       ("apply_ui_thread", "apply (UI thread, widgets)"),
                       ("refresh_total", "refresh = fetch + apply"),
                       ("render_ui_thread", "paint after apply (CPU time)"),
                       ("refresh_via_app_worker", "refresh via the app's poll worker"),
                       ("filtered_fetch", "fetch with a state filter")):
        s = results[key]
        print(f"{label:<34}{s['median_ms']:>11.2f}{s['p95_ms']:>10.2f}{s['max_ms']:>10.2f}")
    print(f"{'memory (RSS now / peak)':<34}{rss_after:>10.1f} MB / {rss_peak:.1f} MB "
          f"(before the app: {rss_before:.1f} MB)")
    verdict = "meets" if report["meets_targets"] else "MISSES"
    print(f"{verdict} the targets: refresh p95 <= {TARGET_REFRESH_MS:.0f} ms, "
          f"peak RSS <= {TARGET_RSS_MB:.0f} MB (load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs)")
    if not ns.no_load:
        sys.stdout.flush()
        reset_peak_rss()  # this phase's own peak, not the 100k-task one's
        report["under_load"] = load_report(*run_under_load(ns.load_seconds))
        print_load(report["under_load"])
    out = Path(ns.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
