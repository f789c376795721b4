"""Redis memory per finished task, the dashboard and ``yadtq tasks`` with a million tasks stored, and
memory under a steady load once retention is reached.

    .venv/bin/python bench/bench_memory.py [--tasks 1000000] [--steady-seconds 60] [--quick]

Starts its own ``redis-server`` on a free port in a temporary directory (no persistence), never the
shared one, and stops it at the end; configured as ``make services`` configures Redis (``TUNED``),
after a 20,000-task sample with Redis's default configuration for comparison. Phases:

1. **Fill**: ``--tasks`` ``ADD`` tasks through the store's own batch scripts (``CREATE``, ``START``,
   ``FINISH``, 1000 tasks per call), so every record is what a worker writes: completed, with its
   result and a three-entry history. Reports ``used_memory`` per task (target <= 1 KiB) and where it
   goes (``MEMORY USAGE`` of sample hashes and of each index: every task, and the state set, which
   for a final state is also retention's finish-time index).
2. **Read at that size**: the dashboard's refresh (``bench/bench_tui.py``'s measurement, headless;
   target <= 20 ms median, <= 100 MB resident) and ``yadtq tasks`` as a process and in process;
   the same again later with 1,000 tasks, so the size's cost shows apart from the machine's load.
3. **Purge**: ``Retention.purge`` of the million (what ``yadtq purge --older-than 0`` runs).
4. **Steady load**: a short TTL (``--ttl``, 10 s), tasks created, started and finished at a steady
   rate (``--rate``, 1000/s, in 100 ms batches), the worker's retention ``Sweeper`` leading every
   second; ``used_memory`` sampled every second. Flat = the spread of the samples after 2 TTLs.

Writes ``bench/results/memory.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_tui import beat, measure, reset_peak_rss, rss_mb, stats  # noqa: E402
from bench.common import RESULTS  # noqa: E402
from worker.retention import Sweeper  # noqa: E402
from yadtq import Client, Settings  # noqa: E402
from yadtq.errors import ServiceUnavailable  # noqa: E402
from yadtq.models import Outcome, TaskState  # noqa: E402
from yadtq.retention import Retention  # noqa: E402
from yadtq.store import RedisStore  # noqa: E402
from yadtq.testing import FakeBroker  # noqa: E402
from yadtq.wire import Envelope  # noqa: E402

TARGET_BYTES_PER_TASK = 1024
TARGET_REFRESH_MEDIAN_MS = 20.0
TARGET_RSS_MB = 100.0
BATCH = 1000
WORKER = "bench-memory-4242"
SMALL = 1000
"""The reads are measured again with this many tasks, to separate the size's cost from the
machine's load."""


class PrivateRedis:
    """A ``redis-server`` of our own on a free loopback port, in a temporary directory."""

    def __init__(self, *config: str) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server not found (make services installs it)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="yadtq-bench-memory-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--maxmemory", "0", *config],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def wait(self, store: RedisStore) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                store.ping()
                return
            except ServiceUnavailable:  # not up yet
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


TUNED = ("--hash-max-listpack-value", "512")
"""What ``make services`` and docker-compose.yml give Redis: a task hash (its history is over
Redis's default 64-byte listpack value) stays a listpack instead of a hash table."""


def default_config_bytes(n: int) -> dict[str, Any]:
    """Bytes per finished task with Redis's default configuration (``n`` tasks)."""
    server = PrivateRedis()
    try:
        store = RedisStore(Settings(redis_url=server.url))
        server.wait(store)
        empty = used_memory(store)
        fill(store, n)
        parts = breakdown(store, n)
        return {"tasks": n, "bytes_per_task": round((used_memory(store) - empty) / n, 1),
                "task_hash": parts["task_hash"], "hash_encoding": parts["hash_encoding"]}
    finally:
        server.stop()


def used_memory(store: RedisStore) -> int:
    return int(store.r.info("memory")["used_memory"])


def finish_batch(store: RedisStore, first: int, n: int, created: float) -> None:
    """``n`` ADD tasks recorded, started and completed as a worker does (three script calls)."""
    envs = [Envelope(uuid.uuid4().hex, "ADD", (i, i + 1), created) for i in range(first, first + n)]
    store.create(envs)
    store.start(WORKER, envs)
    store.finish(WORKER, [Outcome(e.id, 1, TaskState.COMPLETED, result=2 * e.args[0] + 1)
                          for e in envs])


def fill(store: RedisStore, n: int) -> float:
    started = time.perf_counter()
    now = time.time()
    for first in range(0, n, BATCH):
        finish_batch(store, first, min(BATCH, n - first), now - (n - first) * 0.001)
        if first and first % 100_000 == 0:
            print(f"  {first:,} tasks, {time.perf_counter() - started:.0f} s", flush=True)
    return time.perf_counter() - started


COPY = """
local template = redis.call('HGETALL', KEYS[1])
local seed, first, n, t0 = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = first, first + n - 1 do
  local id = seed .. string.format('%016x', i)
  local fields = {}
  for j = 1, #template, 2 do
    fields[#fields + 1] = template[j]
    fields[#fields + 1] = template[j] == 'id' and id or template[j + 1]
  end
  redis.call('HSET', ARGV[5] .. id, unpack(fields))
  redis.call('ZADD', KEYS[2], t0 + i * 0.001, id)
  redis.call('ZADD', KEYS[3], t0 + i * 0.001 + 0.01, id)
end
redis.call('HINCRBY', KEYS[4], 'completed', n)
return n
"""
"""Copies of one finished task's hash under new ids, with its index and state-set entries (``--fill
copy``): the same bytes per record as the scripts write, 10,000 per call, for the reads at size."""


def fill_copies(store: RedisStore, n: int) -> float:
    started = time.perf_counter()
    finish_batch(store, 0, 1, time.time())
    keys = store.keys
    [template] = store.r.zrange(keys.index, 0, 0)
    copy = store.script(COPY)
    seed, t0 = uuid.uuid4().hex[:16], time.time() - n * 0.001
    for first in range(0, n - 1, 10_000):
        copy([keys.task(template), keys.index, keys.state_index(TaskState.COMPLETED), keys.counts],
             [seed, first, min(10_000, n - 1 - first), t0, keys.task("")])
    return time.perf_counter() - started


def breakdown(store: RedisStore, n: int) -> dict[str, Any]:
    """Bytes per task by structure: a sample of hashes, and each index divided by ``n``."""
    keys = store.keys
    sample = store.r.zrange(keys.index, 0, 199)
    hashes = [int(store.r.memory_usage(keys.task(i)) or 0) for i in sample]
    one = store.r.hgetall(keys.task(sample[0]))

    def per_task(key: str) -> float:
        return round(int(store.r.memory_usage(key, samples=0) or 0) / n, 1)

    return {"task_hash": round(statistics.mean(hashes), 1),
            "index_of_every_task": per_task(keys.index),
            "state_set_completed_by_finish_time": per_task(keys.state_index(TaskState.COMPLETED)),
            "hash_fields": {k: len(v) for k, v in one.items()},
            "hash_encoding": store.r.object("encoding", keys.task(sample[0])),
            "history_bytes": len(one.get("history", ""))}


def cli_tasks(url: str, runs: int = 5) -> dict[str, float]:
    """Wall time of ``yadtq tasks`` as a process (Python start-up included)."""
    env = {**os.environ, "YADTQ_REDIS_URL": url, "YADTQ_KEY_PREFIX": "yadtq"}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "yadtq.cli", "tasks"], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        assert out.stdout.count("\n") >= 20, out.stdout
    return stats(times)


def in_process_list(client: Client, runs: int = 20) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.list(None, 20, 0, history=False)
        times.append(time.perf_counter() - t0)
    return stats(times)


def reads(client: Client, store: RedisStore, url: str, refreshes: int, label: str) -> dict[str, Any]:
    """The dashboard's refresh (headless, ``bench_tui.measure``) and ``yadtq tasks``."""
    beat(store, time.time())
    reset_peak_rss()
    rss_before, _ = rss_mb()
    refresh = asyncio.run(measure(client, store, refreshes))
    rss_now, rss_peak = rss_mb()
    tasks_cli = cli_tasks(url)
    tasks_lib = in_process_list(client)
    r = refresh["refresh_total"]
    print(f"with {label}: dashboard refresh (fetch + apply) median {r['median_ms']:.2f} ms, p95 "
          f"{r['p95_ms']:.2f} ms (fetch {refresh['fetch_thread']['median_ms']:.2f}, apply "
          f"{refresh['apply_ui_thread']['median_ms']:.2f}); via the poll worker median "
          f"{refresh['refresh_via_app_worker']['median_ms']:.2f} ms; RSS {rss_now:.1f} MB (peak "
          f"{rss_peak:.1f}); yadtq tasks {tasks_cli['median_ms']:.0f} ms as a process, "
          f"client.list {tasks_lib['median_ms']:.2f} ms in process; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    return {"dashboard": {**refresh, "rss_mb_before": round(rss_before, 1),
                          "rss_mb": round(rss_now, 1), "rss_peak_mb": round(rss_peak, 1)},
            "yadtq_tasks_process": tasks_cli, "client_list_in_process": tasks_lib,
            "load_average_1m": round(os.getloadavg()[0], 2)}


def steady(store: RedisStore, settings: Settings, seconds: float, rate: int) -> dict[str, Any]:
    """Finish ``rate`` tasks a second with the sweeper on; sample ``used_memory`` every second."""
    stopping = threading.Event()
    sweeper = Sweeper(settings, store, WORKER, stopping)
    sweeper.start()
    samples: list[tuple[float, int, int]] = []
    per_tick = max(1, rate // 10)
    t0 = time.monotonic()
    next_tick, next_sample, made = t0, t0, 0
    try:
        while (now := time.monotonic()) - t0 < seconds:
            if now >= next_sample:
                samples.append((round(now - t0, 1), used_memory(store), store.total()))
                next_sample += 1.0
            finish_batch(store, made, per_tick, time.time())
            made += per_tick
            next_tick += 0.1
            time.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        stopping.set()
        sweeper.join(5)
    ttl = settings.result_ttl
    after = [m for t, m, _ in samples if t >= 2 * ttl + settings.retention_interval]
    stored = [k for t, _, k in samples if t >= 2 * ttl + settings.retention_interval]
    return {"ttl_s": ttl, "sweep_interval_s": settings.retention_interval, "rate_per_s": rate,
            "seconds": seconds, "tasks_finished": made,
            "samples": [{"t": t, "used_memory": m, "tasks_stored": k} for t, m, k in samples],
            "after_2_ttl": {"used_memory_min": min(after), "used_memory_max": max(after),
                            "spread_bytes": max(after) - min(after),
                            "tasks_stored_min": min(stored), "tasks_stored_max": max(stored)}
            if after else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--refreshes", type=int, default=30)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--ttl", type=float, default=10.0, help="TTL of the steady phase (s)")
    parser.add_argument("--rate", type=int, default=1000, help="tasks/s of the steady phase")
    parser.add_argument("--fill", choices=("scripts", "copy"), default="scripts",
                        help="scripts: CREATE/START/FINISH per 1000 tasks (what workers write); "
                             "copy: one such task copied server-side (much faster, same bytes)")
    parser.add_argument("--quick", action="store_true", help="50,000 tasks, 30 s of steady load")
    parser.add_argument("--output", default=str(RESULTS / "memory.json"))
    ns = parser.parse_args()
    if ns.quick:
        ns.tasks, ns.steady_seconds, ns.refreshes = min(ns.tasks, 50_000), 30.0, 10
    default_sample = default_config_bytes(20_000)
    print(f"Redis's default hash-max-listpack-value (64): {default_sample['bytes_per_task']:,.0f} "
          f"bytes per finished task ({default_sample['task_hash']:,.0f} in the hash, encoding "
          f"{default_sample['hash_encoding']}); the rest runs with {' '.join(TUNED)}")
    server = PrivateRedis(*TUNED)
    try:
        settings = Settings.from_env(redis_url=server.url, key_prefix="yadtq", result_ttl=ns.ttl,
                                     retention_interval=1.0)
        store = RedisStore(settings)
        server.wait(store)
        version = store.r.info("server")["redis_version"]
        empty = used_memory(store)
        print(f"filling {ns.tasks:,} finished ADD tasks into a private Redis on port {server.port}")
        fill_s = (fill if ns.fill == "scripts" else fill_copies)(store, ns.tasks)
        full = used_memory(store)
        per_task = (full - empty) / ns.tasks
        parts = breakdown(store, ns.tasks)
        print(f"fill {fill_s:.1f} s ({ns.tasks / fill_s:,.0f} tasks/s); used_memory "
              f"{(full - empty) / 2**20:,.1f} MiB = {per_task:,.0f} bytes per finished task "
              f"(target <= {TARGET_BYTES_PER_TASK})")
        print("  per task: " + ", ".join(f"{k} {v}" for k, v in parts.items()
                                         if isinstance(v, float)))
        broker = FakeBroker()
        client = Client(settings, store=store, producer_factory=broker.producer,
                        kafka_ping=broker.ping)
        big = reads(client, store, server.url, ns.refreshes, f"{ns.tasks:,} tasks")
        t0 = time.perf_counter()
        purged = Retention(store).purge(0)
        purge_s = time.perf_counter() - t0
        after_purge = used_memory(store)
        print(f"purge of {purged:,} tasks: {purge_s:.1f} s ({purged / purge_s:,.0f}/s); "
              f"used_memory back to {(after_purge - empty) / 2**20:.1f} MiB above empty")
        store.reset()
        fill(store, SMALL)
        small = reads(client, store, server.url, ns.refreshes, f"{SMALL:,} tasks (same machine, "
                      "same minute: what the size costs)")
        client.close()
        store.reset()
        print(f"steady load: {ns.rate}/s for {ns.steady_seconds:.0f} s, TTL {ns.ttl:g} s")
        steady_report = steady(store, settings, ns.steady_seconds, ns.rate)
        flat = steady_report["after_2_ttl"]
        if flat:
            print(f"  after 2 TTLs: used_memory {flat['used_memory_min'] / 2**20:.2f}-"
                  f"{flat['used_memory_max'] / 2**20:.2f} MiB, tasks stored "
                  f"{flat['tasks_stored_min']:,}-{flat['tasks_stored_max']:,}")
    finally:
        server.stop()
    report = {
        "benchmark": "yadtq memory and reads at size",
        "tasks": ns.tasks, "fill": ns.fill, "fill_seconds": round(fill_s, 1),
        "used_memory_empty": empty, "used_memory_full": full,
        "redis_config": " ".join(TUNED),
        "bytes_per_finished_task": round(per_task, 1), "bytes_per_task_by_structure": parts,
        "with_redis_default_config": default_sample,
        "reads_at_size": big, f"reads_with_{SMALL}_tasks": small,
        "purge": {"tasks": purged, "seconds": round(purge_s, 2),
                  "used_memory_after_minus_empty": after_purge - empty},
        "steady": steady_report,
        "targets": {"bytes_per_task": TARGET_BYTES_PER_TASK,
                    "refresh_median_ms": TARGET_REFRESH_MEDIAN_MS, "rss_mb": TARGET_RSS_MB},
        "meets_targets": {
            "bytes_per_task": per_task <= TARGET_BYTES_PER_TASK,
            "refresh_median": big["dashboard"]["refresh_total"]["median_ms"]
            <= TARGET_REFRESH_MEDIAN_MS,
            "rss": big["dashboard"]["rss_peak_mb"] <= TARGET_RSS_MB},
        "redis": f"redis-server {version}, private, no persistence",
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(ns.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
