"""The dashboard's refresh while 2 real workers are saturated (the ``under_load`` phase of bench_tui).

Runs the pieces; ``bench/bench_tui.py`` summarises and prints what they measured. Everything lives
under a private key prefix, topic and group (``bench.common.fresh_settings("tui-load")``):

- 2 ``yadtq-worker`` processes (``bench.common.Workers``), as in ``make bench``;
- a load generator in its own process (so it does not share the dashboard's GIL):
  ``Client.submit_many`` in batches of 500, as fast as it can while fewer than ``MAX_BACKLOG``
  tasks are queued, else it waits 50 ms. The workers always have work (both cores busy), and the
  queue and the Kafka topic stay bounded instead of growing for as long as the phase lasts;
- the dashboard headless (``run_test``) on a real ``Client``, refreshed through its own poll worker
  at its normal cadence (the next refresh ``POLL_INTERVAL`` after the last one was shown), with
  the health check (a Kafka request) on its default timer.

Afterwards it deletes every key of its prefix (``Client.reset`` and then a scan of the prefix),
its Kafka topics and its consumer group. Run as ``python -m bench.tui_load --generate SECONDS`` it
is the load generator (settings from the ``YADTQ_*`` variables).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO

from kafka.admin import KafkaAdminClient

from bench.common import (
    ROOT,
    Workers,
    fresh_settings,
    proc_cpu,
    self_cpu,
    service_pids,
    settings_env,
    wait_for,
)
from yadtq import Client, Settings
from yadtq.broker import client_config, ensure_topics
from yadtq.models import TaskState
from yadtq_tui.app import make_app

BATCH = 500
GENERATORS = 1
MAX_BACKLOG = 20_000
"""The generator pauses while this many tasks are queued (about 2-3 s of work for 2 workers)."""
LOAD_DESCRIPTION = (f"2 worker processes; 1 generator process: Client.submit_many, batches of "
                    f"{BATCH}, as fast as it can while fewer than {MAX_BACKLOG:,} tasks are queued")
POLL_INTERVAL = 0.5
"""The dashboard's default pause between refreshes (``make_app``, ``yadtq-tui --refresh``)."""
LAG_STEP = 0.01
"""Between refreshes the UI loop is probed with sleeps of this length; the oversleep is its lag."""
WARM_UP_TASKS = 2_000
"""The window opens once the workers have completed this many tasks."""


@dataclass
class LoadRun:
    """Raw samples (seconds) and counters of one load phase."""

    seconds: float = 0.0
    fetch: list[float] = field(default_factory=list)
    """The reads of each refresh, in the app's poll worker thread (``Snapshot.fetch_seconds``)."""
    apply: list[float] = field(default_factory=list)
    """``apply_snapshot`` of each refresh on the UI thread (``DashboardScreen.apply_seconds``)."""
    via_worker: list[float] = field(default_factory=list)
    """``poll_now()`` until the snapshot is shown: thread hop, reads, message, apply."""
    loop_lag: list[float] = field(default_factory=list)
    """How late a ``LAG_STEP`` sleep on the UI loop woke up, between refreshes."""
    backlog: list[int] = field(default_factory=list)
    """Queued tasks seen by each refresh."""
    counts_before: dict[TaskState, int] = field(default_factory=dict)
    counts_after: dict[TaskState, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    load_average: tuple[float, float] = (0.0, 0.0)
    """1-minute load average when the window opened and when it closed."""


def generate(seconds: float, backlog: int) -> int:
    """Submit ``ADD i 1`` in batches of ``BATCH`` for ``seconds`` (pausing while ``backlog`` are
    queued); returns how many were submitted."""
    client = Client(Settings.from_env())
    deadline = time.monotonic() + seconds
    sent = 0
    try:
        while time.monotonic() < deadline:
            if client.counts()[TaskState.QUEUED] >= backlog:
                time.sleep(0.05)
                continue
            client.submit_many([("ADD", (sent + j, 1)) for j in range(BATCH)])
            sent += BATCH
    finally:
        client.close()
    return sent


def cpu_now(workers: Workers, pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of the workers, this process (the dashboard) and each of ``pids``."""
    return {"workers": workers.cpu_seconds(), "dashboard": self_cpu(),
            **{name: sum(proc_cpu(p) for p in group) for name, group in pids.items()}}


async def watch(client: Client, seconds: float, run: LoadRun, workers: Workers,
                pids: dict[str, list[int]]) -> None:
    """Run the dashboard for ``seconds`` and record every refresh into ``run``."""
    app = make_app(client, poll_interval=3600.0)  # this loop drives the polls, at POLL_INTERVAL
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.dashboard
        while screen.polls < 1:
            await pilot.pause(0.01)
        run.counts_before = await asyncio.to_thread(client.counts)
        cpu0 = cpu_now(workers, pids)
        load0 = os.getloadavg()[0]
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            before = screen.polls
            t0 = time.perf_counter()
            screen.poll_now()
            while screen.polls == before:
                await asyncio.sleep(0.0005)
            run.via_worker.append(time.perf_counter() - t0)
            snap = screen.last
            if snap is None:
                raise RuntimeError("a refresh was counted but no snapshot kept")
            run.fetch.append(snap.fetch_seconds)
            run.apply.append(screen.apply_seconds)
            run.backlog.append(snap.counts.get(TaskState.QUEUED, 0))
            idle_until = time.perf_counter() + POLL_INTERVAL
            while time.perf_counter() < idle_until:
                t1 = time.perf_counter()
                await asyncio.sleep(LAG_STEP)
                run.loop_lag.append(max(0.0, time.perf_counter() - t1 - LAG_STEP))
        run.seconds = time.perf_counter() - started
        run.cpu_seconds = {k: v - cpu0[k] for k, v in cpu_now(workers, pids).items()}
        run.load_average = (load0, os.getloadavg()[0])
        run.counts_after = await asyncio.to_thread(client.counts)


def run_under_load(seconds: float, generators: int = GENERATORS) -> tuple[LoadRun, Settings]:
    """Start the workers and the generators, watch the dashboard for ``seconds``, clean up."""
    settings = fresh_settings("tui-load")
    run = LoadRun()
    client = Client(settings)
    workers: Workers | None = None
    gens: list[subprocess.Popen[bytes]] = []
    errors = tempfile.TemporaryFile()

    def stopped() -> list[subprocess.Popen[bytes]]:
        return [g for g in gens if g.poll() is not None]

    try:
        ensure_topics(settings)
        workers = Workers(settings, 2)
        workers.wait_ready(client)
        for _ in range(generators):  # a time limit of their own, should this process die first
            gens.append(subprocess.Popen(
                [sys.executable, "-m", "bench.tui_load", "--generate", str(seconds + 180)],
                env=settings_env(settings), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors))
        if not wait_for(lambda: bool(stopped())
                        or client.counts()[TaskState.COMPLETED] >= WARM_UP_TASKS, 60):
            raise RuntimeError(f"no load after 60 s: {client.counts()}")
        if not stopped():
            pids = {"load_generator": [g.pid for g in gens], **{
                k: [pid] for k, pid in service_pids().items()}}
            asyncio.run(watch(client, seconds, run, workers, pids))
        if any(w.poll() is not None for w in workers.procs):
            raise RuntimeError("a worker process exited during the window; no result")
        if stopped():
            raise RuntimeError(f"a load generator stopped early (exit {stopped()[0].returncode}): "
                               + _tail(errors))
    finally:
        for g in gens:
            _stop(g)
        errors.close()
        if workers is not None:
            workers.stop()
        cleanup(client, settings)
    return run, settings


def cleanup(client: Client, settings: Settings) -> None:
    """Delete this phase's keys (its prefix only), topics and consumer group."""
    try:
        client.reset()
        r = client.store.r
        keys = list(r.scan_iter(match=settings.key_prefix + ":*", count=1000))
        for i in range(0, len(keys), 1000):
            r.unlink(*keys[i:i + 1000])
    finally:
        client.close()
    admin = KafkaAdminClient(**client_config(settings))
    try:
        admin.delete_topics([settings.topic, settings.dead_letter_topic], raise_errors=False)
        try:
            admin.delete_groups([settings.group])
        except Exception as exc:  # leftover group metadata only; report, go on
            print(f"note: consumer group {settings.group} not deleted: {exc}", file=sys.stderr)
    finally:
        admin.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode(errors="replace").strip()[-500:] or "(no output)"


def main() -> int:
    parser = argparse.ArgumentParser(description="bench_tui's load generator")
    parser.add_argument("--generate", type=float, required=True, metavar="SECONDS")
    parser.add_argument("--backlog", type=int, default=MAX_BACKLOG)
    ns = parser.parse_args()
    generate(ns.generate, ns.backlog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
