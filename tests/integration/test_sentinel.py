"""Redis Sentinel: a primary, a replica and three Sentinels on loopback (``scripts/sentinel.sh``),
the primary SIGKILLed under load; the workers and the dashboard follow the promotion and the
reconciler repairs what asynchronous replication lost. Nothing ends lost or stuck.

The stack runs on its own ports (16521-16522, 26521-26523) in the test's own directory, so it
never meets a ``make sentinel`` stack. Without redis-server the tests skip locally and FAIL when
``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, WorkerProcs
from yadtq import Client, Settings
from yadtq.errors import YadtqError
from yadtq.models import TaskState
from yadtq.store import RedisStore

pytestmark = pytest.mark.integration

REDIS_PORT, SENTINEL_PORT = 16521, 26521
SENTINELS = ",".join(f"127.0.0.1:{SENTINEL_PORT + n}" for n in range(3))


class Stack:
    """``scripts/sentinel.sh`` on the test's ports and directory."""

    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, "YADTQ_SENTINEL_REDIS_PORT": str(REDIS_PORT),
                    "YADTQ_SENTINEL_PORT": str(SENTINEL_PORT), "YADTQ_STATE_DIR": str(state)}

    def __call__(self, *args: str) -> str:
        done = subprocess.run([str(ROOT / "scripts" / "sentinel.sh"), *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (make services installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    sentinel = Stack(tmp_path / "sentinel")
    sentinel("start")
    try:
        yield sentinel
    finally:
        sentinel("stop")


@pytest.fixture
def sentinel_settings(settings_factory: Callable[..., Settings], stack: Stack) -> Settings:
    """The test's namespace, Redis through the Sentinels (the URL gives only the database), and a
    reconciler quick enough to see repairs within the test."""
    return settings_factory(redis_url="redis://ignored-with-sentinels/0", redis_sentinels=SENTINELS,
                            redis_service="yadtq", repair_interval=1.0, repair_after=4.0,
                            commit_after=0.0)


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_client_finds_the_primary_through_the_sentinels(sentinel_settings: Settings,
                                                           stack: Stack) -> None:
    store = RedisStore(sentinel_settings)
    store.ping()
    assert store.describe() == f"Sentinel {SENTINELS} (yadtq)"
    assert store.r.connection_pool.get_master_address() == ("127.0.0.1", REDIS_PORT)
    assert stack("primary") == f"127.0.0.1:{REDIS_PORT}"
    # a wrong service name is an outage with a clear reason, not a hang
    lost = RedisStore(sentinel_settings.with_(redis_service="nope"))
    with pytest.raises(YadtqError, match="No master found for 'nope'"):
        lost.ping()


def test_the_primary_killed_under_load_loses_no_task(sentinel_settings: Settings, stack: Stack,
                                                     tmp_path: Path) -> None:
    from yadtq.broker import ensure_topics

    ensure_topics(sentinel_settings)
    procs = WorkerProcs(sentinel_settings, tmp_path)
    client = Client(sentinel_settings)
    acknowledged: dict[str, int] = {}
    refused: list[str] = []
    stop = threading.Event()

    def submit() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                acknowledged[client.submit("ADD", [i, i])] = 2 * i
            except YadtqError as exc:  # not acknowledged: the task may or may not run
                refused.append(str(exc))
            time.sleep(0.01)

    progress: list[tuple[float, int]] = []

    def watch() -> None:
        watcher = Client(sentinel_settings)
        while not stop.is_set():
            try:
                progress.append((time.monotonic(), watcher.counts()[TaskState.COMPLETED]))
            except YadtqError:
                pass
            time.sleep(0.05)

    try:
        procs.start(2)
        procs.wait_alive(2)
        threads = [threading.Thread(target=submit), threading.Thread(target=watch)]
        for t in threads:
            t.start()
        time.sleep(4)
        killed_at = time.monotonic()
        node = stack("kill-primary")
        wait(lambda: stack("primary") != f"127.0.0.1:{REDIS_PORT}", 20, "the promotion")
        promoted = time.monotonic() - killed_at
        time.sleep(6)  # load goes on against the promoted replica
        stop.set()
        for t in threads:
            t.join(timeout=30)
        stack("restart", node)  # the old primary rejoins as a replica

        def all_done() -> bool:
            try:
                tasks = [client.get(i) for i in acknowledged]
            except YadtqError:
                return False
            return all(t is not None and t.state == TaskState.COMPLETED for t in tasks)

        wait(all_done, 90, f"{len(acknowledged)} acknowledged tasks to complete:\n{procs.logs()}")
        wrong = [i for i, want in acknowledged.items() if (t := client.get(i)) is None or t.result != want]
        assert wrong == []
        assert all(p.poll() is None for p in procs.procs), procs.logs()
        stuck = client.counts()
        assert stuck[TaskState.QUEUED] == stuck[TaskState.IN_PROGRESS] == 0, stuck
        repairs = client.repairs()
        print(f"sentinel failover: promoted after {promoted:.1f}s, longest pause in completions "
              f"{_longest_stall(progress, killed_at):.1f}s, {len(acknowledged)} acknowledged, "
              f"{len(refused)} submits raised, repaired {repairs.resent_queued} queued + "
              f"{repairs.requeued_in_progress} in-progress, lost 0, stuck 0")
        assert len(acknowledged) > 200, (len(acknowledged), refused[:5])
    finally:
        stop.set()
        procs.stop()
        client.close()


def _longest_stall(progress: list[tuple[float, int]], since: float) -> float:
    """The longest time the completed count did not move, from ``since`` on."""
    longest, last_change = 0.0, None
    for (t, n), (_, prev) in zip(progress[1:], progress, strict=False):
        if t < since:
            continue
        if last_change is None:
            last_change = t
        if n != prev:
            longest, last_change = max(longest, t - last_change), t
    return longest


async def test_the_dashboard_follows_the_promotion(sentinel_settings: Settings,
                                                   stack: Stack) -> None:
    from textual.widgets import Static

    from tests.tui.helpers import SIZE, fast_app, table_text, wait_for
    from yadtq.broker import ensure_topics

    ensure_topics(sentinel_settings)
    client = Client(sentinel_settings)
    app = fast_app(client)

    def light() -> str:
        return str(app.dashboard.query_one("#redis-light", Static).render())

    def listed(task_id: str) -> bool:
        return any(task_id[:8] in " ".join(row) for row in table_text(app))

    async with app.run_test(size=SIZE) as pilot:
        before = client.submit("ADD", [1, 1])
        await wait_for(pilot, lambda: "Redis ● up" in light() and listed(before), timeout=10,
                       what="the first task listed")
        stack("kill-primary")
        wait(lambda: stack("primary") == f"127.0.0.1:{REDIS_PORT + 1}", 20, "the promotion")
        after = client.submit("ADD", [2, 2])  # written to the promoted replica
        await wait_for(pilot, lambda: "Redis ● up" in light() and listed(after), timeout=20,
                       what="the dashboard to show a task written after the promotion")
    client.close()
