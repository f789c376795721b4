"""Fault injection against the real services: the engine of the fault tests and of `make chaos`.

A run: N short ADD tasks plus some long NAP tasks flow through 3 real worker processes while faults
are injected one after another — SIGKILL of a worker process (its supervisor starts a new one),
SIGSTOP/SIGCONT of one (a zombie), a Redis stop/start, a Kafka stop/start, SIGTERM to every worker
(new ones are started).
Afterwards every accepted task must be final with the right result and nothing in-progress; the
report counts lost, stuck, extra attempts (duplicate starts) and the recovery times.

    python -m tests.integration.chaos [--tasks 5000] [--long 20] [--outage 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, WorkerProcs
from tests.integration.helpers import TopicSize
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.errors import ServiceUnavailable
from yadtq.models import TaskState

ALL_FAULTS = ("kill", "stop", "redis", "kafka", "term", "redis9", "client9", "poison")
CLIENT_MARK = 1_000_000
"""Second argument of the ADD tasks a killed client submits (to find the ones it recorded)."""
POISON = (b'{"v":1,"id":"%s","name":"ADD","args":[1,2],"created_at":1' + b"0" * 400 + b"}",
          b"\xff\xfe not UTF-8", b"[" * 5000, b'"a string"', b'{"v":99}')


@dataclass
class Report:
    tasks_submitted: int = 0
    submits_refused: int = 0
    refused_marked_failed: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    stuck: int = 0
    wrong: int = 0
    extra_attempts: int = 0
    tasks_with_extra_attempts: int = 0
    recovery_seconds: list[float] = field(default_factory=list)
    refused_but_ran: int = 0
    """Submits that raised (no acknowledgement) although Kafka kept the message: the task ran
    with the right result (an acknowledgement lost in a broker restart)."""
    repaired: int = 0
    """Tasks the reconciler re-sent or re-queued."""
    dead_lettered: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["faults"] = dict(self.faults)
        rec = sorted(self.recovery_seconds)
        data["recovery_p50_s"] = round(rec[len(rec) // 2], 2) if rec else None
        data["recovery_max_s"] = round(rec[-1], 2) if rec else None
        data["recovery_seconds"] = [round(r, 2) for r in rec]
        data["problems"] = self.problems[:20]
        return data


def services(action: str) -> None:
    """scripts/services.sh with the current YADTQ_* ports and state dir."""
    subprocess.run([str(ROOT / "scripts" / "services.sh"), action], check=True, timeout=180,
                   env={**os.environ, "PYTHON": sys.executable})


class Chaos:
    def __init__(self, settings: Settings, log_dir: Path, n_short: int, n_long: int,
                 outage: float, seed: int) -> None:
        # a reconciler that looks often, so its repairs land within the run
        settings = settings.with_(repair_interval=min(settings.repair_interval, 2.0),
                                  repair_after=min(settings.repair_after, 5.0))
        self.settings = settings
        self.client = Client(settings)
        self.pool = WorkerProcs(settings, log_dir)
        self.n_short, self.n_long, self.outage = n_short, n_long, outage
        self.rng = random.Random(seed)
        self.report = Report()
        self.expected: dict[str, Any] = {}
        self.refused: list[str] = []
        self.lock = threading.Lock()
        self.submitting = threading.Event()

    # ------------------------------------------------------------------ load
    def submitter(self, duration: float) -> None:
        client = Client(self.settings)
        plan: list[tuple[str, list[Any]]] = [("ADD", [i, 1000]) for i in range(self.n_short)]
        plan += [("NAP", [round(self.rng.uniform(1.0, 3.0), 2)]) for _ in range(self.n_long)]
        self.rng.shuffle(plan)
        chunk = 20
        pause = duration / max(1, len(plan) / chunk)
        t0 = time.monotonic()
        for i in range(0, len(plan), chunk):
            items = plan[i:i + chunk]
            try:
                ids = client.submit_many(items)
                with self.lock:
                    for task_id, (name, args) in zip(ids, items, strict=True):
                        self.expected[task_id] = args[0] + args[1] if name == "ADD" else args[0]
            except ServiceUnavailable:
                # the caller is told; those tasks are recorded failed "not enqueued", or (when Kafka
                # kept a message whose acknowledgement was lost) they ran: checked later
                with self.lock:
                    self.report.submits_refused += len(items)
            target = t0 + (i // chunk + 1) * pause
            time.sleep(max(0.0, target - time.monotonic()))
        client.close()
        self.submitting.clear()

    # ------------------------------------------------------------------ faults
    def _busy_worker(self) -> tuple[int, str | None]:
        """The pid of a live worker process (the supervisor's child) running a task we just gave it
        (a 2 s NAP), and that task's id."""
        workers = {c for p in self.pool.procs if p.poll() is None for c in child_pids(p.pid)}
        try:
            task_id = self.client.submit("NAP", [2.0])
            with self.lock:
                self.expected[task_id] = 2.0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                task = self.client.get(task_id)
                pid = int((task.worker or "-0").rpartition("-")[2])
                if task.state is TaskState.IN_PROGRESS and pid in workers:
                    return pid, task_id
                time.sleep(0.05)
        except ServiceUnavailable as exc:
            self.report.problems.append(f"could not pick a busy worker: {exc}")
        return self.rng.choice(sorted(workers)), None

    def _watch_recovery(self, task_id: str | None, since: float) -> None:
        if task_id is None:
            return

        def watch() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if self.client.get(task_id).state.is_final:
                        self.report.recovery_seconds.append(time.monotonic() - since)
                        return
                except ServiceUnavailable:
                    pass
                time.sleep(0.1)
        threading.Thread(target=watch, daemon=True).start()

    def kill(self) -> None:
        """SIGKILL a busy worker process: its supervisor starts a new one (self-healing)."""
        pid, task_id = self._busy_worker()
        os.kill(pid, signal.SIGKILL)
        self._watch_recovery(task_id, time.monotonic())
        self.report.faults["sigkill"] += 1

    def stop(self) -> None:
        pid, task_id = self._busy_worker()
        os.kill(pid, signal.SIGSTOP)
        self._watch_recovery(task_id, time.monotonic())
        time.sleep(self.settings.session_timeout_ms / 1000 + 3 * self.settings.heartbeat_interval + 2)
        os.kill(pid, signal.SIGCONT)
        self.report.faults["sigstop"] += 1

    def redis(self) -> None:
        services("stop-redis")
        time.sleep(self.outage)
        services("start-redis")
        self.report.faults["redis_restart"] += 1

    def kafka(self) -> None:
        services("stop-kafka")
        time.sleep(self.outage)
        services("start-kafka")
        self.report.faults["kafka_restart"] += 1

    def redis9(self) -> None:
        """SIGKILL Redis under load (it may lose its last second of writes), then start it."""
        services("kill-redis")
        time.sleep(self.outage)
        services("start-redis")
        self.report.faults["redis_sigkill"] += 1

    def client9(self) -> None:
        """A client SIGKILLed in the middle of a large submit_many: every task it recorded must
        still run (the reconciler re-sends what Kafka never got)."""
        code = (f"import os, threading, time\n"
                f"from yadtq import Client\n"
                f"c = Client()\n"
                f"threading.Timer(0.4, lambda: os.kill(os.getpid(), 9)).start()\n"
                f"for k in range(20):\n"
                f"    c.submit_many([('ADD', (i, {CLIENT_MARK})) for i in range(k * 200, k * 200 + 200)])\n"
                f"time.sleep(5)\n")
        proc = subprocess.run([sys.executable, "-c", code], env=self.pool.env(), timeout=60,
                              capture_output=True, check=False)
        self.report.faults["client_sigkill"] += 1
        if proc.returncode != -signal.SIGKILL:
            self.report.problems.append(f"client9: the client ended with {proc.returncode}: "
                                        f"{proc.stderr.decode(errors='replace')[-300:]}")

    def poison(self) -> None:
        """Hostile messages on the tasks topic (every partition): dead-lettered, nothing stranded."""
        from yadtq.broker import TaskProducer

        producer = TaskProducer(self.settings)
        try:
            for i in range(self.settings.partitions * 2):
                for j, raw in enumerate(POISON):
                    body = raw.replace(b"%s", f"{i:016x}{j:016x}".encode())
                    producer.send_raw(self.settings.topic, body, key=f"poison-{i}-{j}".encode())
        finally:
            producer.close()
        self.report.faults["poison_messages"] += self.settings.partitions * 2 * len(POISON)

    def term(self) -> None:
        live = [p for p in self.pool.procs if p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        for p in live:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.report.problems.append(f"worker {p.pid} ignored SIGTERM for 60 s")
                p.kill()
        self.report.faults["sigterm_all"] += 1
        self.pool.start(3)

    # ------------------------------------------------------------------ run
    def run(self, faults: tuple[str, ...], gap: float = 2.0, timeout: float = 240.0) -> Report:
        t0 = time.monotonic()
        ensure_topics(self.settings)
        self.pool.start(3)
        self.pool.wait_alive(3, timeout=60)
        duration = gap * (len(faults) + 1) + self.outage * sum(f in ("redis", "kafka") for f in faults)
        self.submitting.set()
        load = threading.Thread(target=self.submitter, args=(duration,), daemon=True)
        load.start()
        try:
            for name in faults:
                time.sleep(gap)
                getattr(self, name)()
            load.join(timeout=duration + 120)
            self.adopt_client_tasks()
            self.wait_final(timeout)
        finally:
            self.pool.stop()
            for action in ("start-redis", "start-kafka"):
                try:
                    services(action)
                except subprocess.CalledProcessError as exc:
                    self.report.problems.append(f"{action}: {exc}")
        self.check()
        self.report.seconds = round(time.monotonic() - t0, 1)
        return self.report

    def wait_final(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                counts = self.client.counts()
            except ServiceUnavailable:
                time.sleep(0.5)
                continue
            if counts[TaskState.QUEUED] == 0 and counts[TaskState.IN_PROGRESS] == 0 \
                    and sum(counts.values()) >= len(self.expected):
                self.adopt_client_tasks()
                if sum(counts.values()) >= len(self.expected):
                    return
            time.sleep(0.5)

    def adopt_client_tasks(self) -> None:
        """The tasks the killed client managed to record in Redis are owed a run like any other."""
        for task in self.client.list(limit=1_000_000, history=False):
            if task.id not in self.expected and len(task.args) == 2 and task.args[1] == CLIENT_MARK:
                self.expected[task.id] = task.args[0] + CLIENT_MARK

    def check(self) -> None:
        r = self.report
        repairs = self.client.repairs()
        r.repaired = repairs.resent_queued + repairs.requeued_in_progress
        dlq = TopicSize(self.settings, self.settings.dead_letter_topic, 1)  # (settings whose
        # tasks topic is the dead-letter topic are refused: a queue may not write there)
        try:
            r.dead_lettered = dlq()
        finally:
            dlq.close()
        if r.dead_lettered < r.faults["poison_messages"]:
            r.problems.append(f"{r.faults['poison_messages']} hostile messages sent, "
                              f"{r.dead_lettered} dead-lettered")
            r.wrong += 1
        r.tasks_submitted = len(self.expected)
        for task_id, value in self.expected.items():
            task = self.client.store.get(task_id)
            if task is None:
                r.lost += 1
                r.problems.append(f"{task_id}: missing")
                continue
            if not task.state.is_final:
                r.stuck += 1
                r.problems.append(f"{task_id}: still {task.state}")
                continue
            if task.state is not TaskState.COMPLETED or task.result != value:
                r.wrong += 1
                r.problems.append(f"{task_id}: {task.state} {task.result!r} {task.error!r}")
            starts = sum(1 for h in task.history if h.state is TaskState.IN_PROGRESS)
            finals = [h for h in task.history if h.state.is_final]
            if len(finals) != 1:
                r.problems.append(f"{task_id}: {len(finals)} final states in history")
                r.wrong += 1
            if starts > 1:
                r.extra_attempts += starts - 1
                r.tasks_with_extra_attempts += 1
        for task in self.client.list(limit=1_000_000):
            if task.id in self.expected:
                continue
            if task.state is TaskState.FAILED and (task.error or "").startswith("not enqueued"):
                r.refused_marked_failed += 1
            elif task.state is TaskState.COMPLETED and task.result == _value(task.name, task.args):
                r.refused_but_ran += 1
            else:
                r.problems.append(f"{task.id}: not submitted by the run, {task.state} {task.result!r}")
                r.wrong += 1
        # every refused submit left nothing (Redis was down), a failed "not enqueued" record, or
        # (its acknowledgement lost) a task that ran
        if r.refused_marked_failed + r.refused_but_ran > r.submits_refused:
            r.problems.append("more refused tasks recorded than were refused")
            r.wrong += 1
        in_progress = self.client.total(TaskState.IN_PROGRESS)
        queued = self.client.total(TaskState.QUEUED)
        if in_progress or queued:
            r.problems.append(f"{in_progress} in-progress and {queued} queued at the end")
            r.stuck += in_progress + queued


def _value(name: str, args: tuple[Any, ...]) -> Any:
    """The result the run's tasks must have."""
    if name == "ADD" and len(args) == 2:
        return args[0] + args[1]
    return args[0] if name == "NAP" and args else object()


def child_pids(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.add(int(entry))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--long", type=int, default=20)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=",".join(ALL_FAULTS + ("kill", "kill")))
    args = parser.parse_args()
    tag = f"chaos-{os.getpid()}"
    settings = Settings.from_env().with_(
        key_prefix=f"yadtq:{tag}", topic=f"yadtq.{tag}", dead_letter_topic=f"yadtq.{tag}.dlq",
        group=f"yadtq-{tag}", partitions=6, heartbeat_interval=0.5, session_timeout_ms=3000)
    log_dir = Path(tempfile.mkdtemp(prefix="yadtq-chaos-"))
    chaos = Chaos(settings, log_dir, args.tasks, args.long, args.outage, args.seed)
    report = chaos.run(tuple(args.faults.split(",")))
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    out = ROOT / "bench" / "results" / "chaos.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"worker logs: {log_dir}")
    return 0 if report.lost == report.stuck == report.wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

