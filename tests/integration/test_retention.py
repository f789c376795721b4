"""Retention and purge against the real Redis (and Kafka with real worker processes for the
end-to-end expiry): counts equal what is listed after expiry, unfinished tasks never go, a large
backlog is swept in short script calls, two sweepers at once remove nothing twice, one prefix's
purge leaves another's keys alone, and ``yadtq purge`` as a process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import ROOT, WorkerProcs
from tests.polling import wait_until
from tests.retention_helpers import consistent, finished_tasks, task_keys, unfinished_tasks
from worker.retention import Sweeper
from yadtq import Client, Settings
from yadtq.models import TaskState
from yadtq.retention import Retention
from yadtq.store import RedisStore

pytestmark = pytest.mark.integration

DAY = 86400.0


def test_workers_expire_finished_tasks_and_nothing_else(settings_factory: Callable[..., Settings],
                                                         tmp_path: object) -> None:
    # the reconciler is kept out (it would re-send the stranded tasks below, which then finish)
    settings = settings_factory(result_ttl=3.0, retention_interval=0.5, repair_interval=3600.0)
    from yadtq.broker import ensure_topics

    ensure_topics(settings)
    store = RedisStore(settings)
    client = Client(settings)
    procs = WorkerProcs(settings, tmp_path)  # type: ignore[arg-type]
    try:
        # no message behind them: they stay queued / in-progress (a dead worker's) for ever
        stranded = [*unfinished_tasks(store, 3, time.time() - 30 * DAY),
                    *unfinished_tasks(store, 2, time.time() - 30 * DAY, started=True)]
        procs.start(2)
        procs.wait_alive(2)
        ids = client.submit_many([("ADD", [i, 1]) for i in range(300)])
        ids += [client.submit("BOOM", ["x"]) for _ in range(5)]
        wait_until(lambda: client.counts()[TaskState.COMPLETED] + client.counts()[TaskState.FAILED]
                   >= 305 or task_keys(store, ids) < 305, 60, "the tasks to finish")
        seen_consistent = 0
        deadline = time.monotonic() + 40
        while task_keys(store, ids) and time.monotonic() < deadline:
            consistent(store, listing=False)  # indexes == counts at every moment of the expiry
            seen_consistent += 1
            time.sleep(0.2)
        assert task_keys(store, ids) == 0, procs.logs()
        assert seen_consistent > 0
        counts = consistent(store)
        assert counts == {**dict.fromkeys(TaskState, 0),
            TaskState.QUEUED: 3, TaskState.IN_PROGRESS: 2, TaskState.COMPLETED: 0,
                          TaskState.FAILED: 0}
        assert {t.id for t in client.list(limit=10)} == set(stranded)
        assert "retention: removed" in procs.logs()
    finally:
        procs.stop()
        client.close()
        store.reset()


def test_a_large_backlog_is_swept_in_short_batches(real_settings: Settings) -> None:
    store = RedisStore(real_settings)
    n = 20_000
    finished_tasks(store, n, time.time() - 10 * DAY)
    keep = finished_tasks(store, 100, time.time() - 60)
    retention = Retention(store)
    calls: list[tuple[int, int, float]] = []
    cutoff = time.time() - DAY
    while True:
        t0 = time.perf_counter()
        removed, kept, seen = retention.remove_batch(TaskState.COMPLETED, cutoff)
        calls.append((removed, seen, time.perf_counter() - t0))
        assert kept == 0
        if seen < retention.batch:
            break
    assert sum(c[0] for c in calls) == n
    assert len(calls) >= n // retention.batch
    assert max(c[1] for c in calls) <= retention.batch
    slowest = max(c[2] for c in calls)
    assert slowest < 1.0, f"a sweep call took {slowest:.3f} s"  # typically ~10 ms
    assert task_keys(store, keep) == 100
    assert consistent(store)[TaskState.COMPLETED] == 100


def test_sweepers_racing_remove_each_task_once(real_settings: Settings) -> None:
    store = RedisStore(real_settings)
    n = 6_000
    finished_tasks(store, n, time.time() - 2 * DAY, TaskState.FAILED)
    settings = real_settings.with_(result_ttl=DAY)
    removed: list[int] = []
    start = threading.Barrier(4)

    def leader(name: str) -> None:
        mine = RedisStore(settings)
        sweeper = Sweeper(settings, mine, name, threading.Event())
        sweeper.retention.batch = 100
        start.wait()
        removed.append(sweeper.run_once() or 0)

    def lockless() -> None:  # as if a lock had expired under a slow leader
        start.wait()
        removed.append(Retention(RedisStore(settings), batch=100).expire(DAY))

    threads = [threading.Thread(target=leader, args=(f"w{i}",)) for i in range(3)]
    threads.append(threading.Thread(target=lockless))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(removed) == n
    assert consistent(store) == dict.fromkeys(TaskState, 0)


def test_purge_under_one_prefix_leaves_the_other(settings_factory: Callable[..., Settings]) -> None:
    a, b = settings_factory(), settings_factory()
    store_a, store_b = RedisStore(a), RedisStore(b)
    try:
        mine = finished_tasks(store_a, 50, time.time() - 3 * DAY)
        theirs = finished_tasks(store_b, 40, time.time() - 3 * DAY)
        before = sorted(store_a.r.scan_iter(match=a.key_prefix + ":*", count=1000))
        assert Retention(store_b).purge(DAY) == 40
        assert task_keys(store_b, theirs) == 0
        assert sorted(store_a.r.scan_iter(match=a.key_prefix + ":*", count=1000)) == before
        assert task_keys(store_a, mine) == 50
        assert consistent(store_a)[TaskState.COMPLETED] == 50
    finally:
        store_a.reset()
        store_b.reset()


def run_cli(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "yadtq.cli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_purge_command(real_settings: Settings) -> None:
    store = RedisStore(real_settings)
    failed = finished_tasks(store, 30, time.time() - 2 * DAY, TaskState.FAILED)
    done = finished_tasks(store, 20, time.time() - 2 * DAY)
    young = finished_tasks(store, 5, time.time() - 600, TaskState.FAILED)
    old_queued = unfinished_tasks(store, 5, time.time() - 90 * DAY)
    bad = run_cli(real_settings, "purge", "--older-than", "1 day")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("yadtq: not a duration")
    refused = run_cli(real_settings, "purge", "--older-than", "1d", "--state", "in-progress")
    assert refused.returncode == 2 and "never purged" in refused.stderr
    assert task_keys(store, failed + done) == 50
    out = run_cli(real_settings, "purge", "--older-than", "1d", "--state", "failed")
    assert (out.returncode, out.stdout, out.stderr) == (0, "purged 30 tasks\n", "")
    out = run_cli(real_settings, "purge", "--older-than", "0")
    assert (out.returncode, out.stdout) == (0, "purged 25 tasks\n")
    assert task_keys(store, old_queued) == 5
    assert consistent(store) == {**dict.fromkeys(TaskState, 0),
        TaskState.QUEUED: 5, TaskState.IN_PROGRESS: 0,
                                 TaskState.COMPLETED: 0, TaskState.FAILED: 0}
    assert task_keys(store, young) == 0
