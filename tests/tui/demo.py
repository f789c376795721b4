"""Run the dashboard over in-memory fakes with simulated workers, to look at it by hand.

    PYTHONPATH=. .venv/bin/python -m tests.tui.demo [--tasks N] [--kafka-down-after S]

Workers are simulated by a thread that starts queued tasks and finishes them (DIV by zero fails,
ECHO returns its text, so markup and escape sequences can be checked on screen).
"""

from __future__ import annotations

import argparse
import random
import threading
import time

import fakeredis

from yadtq import Client, Settings
from yadtq.models import Beat, Outcome, TaskState
from yadtq.registry import default_registry
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope
from yadtq_tui.app import make_app

WORKERS = ("node-a-1201", "node-b-1388")


def build(tasks: int) -> tuple[Client, FakeBroker]:
    settings = Settings(key_prefix="yadtq:demo", heartbeat_interval=1.0)
    broker = FakeBroker()
    store = RedisStore(settings, fakeredis.FakeRedis(decode_responses=True))
    if default_registry.get("ECHO") is None:
        @default_registry.task("ECHO", max_attempts=1)
        def echo(text: str) -> str:
            """Return the text."""
            return text
    client = Client(settings, store=store, producer_factory=broker.producer,
                    kafka_ping=broker.ping)
    now = time.time()
    envs = []
    for i in range(tasks):
        op = random.choice(["ADD", "MUL", "SUB", "DIV"])
        args = (random.randint(0, 99), random.choice([0, 1, 2, 3, 7]))
        envs.append(Envelope(f"{random.getrandbits(128):032x}", op, args, now - (tasks - i) * 3))
    envs.append(Envelope(f"{random.getrandbits(128):032x}", "ECHO", ("[red]x[/red] \x1b[2J",),
                         now - 1))
    for i in range(0, len(envs), 1000):
        store.create(envs[i:i + 1000])
    return client, broker


def simulate(client: Client, stop: threading.Event) -> None:
    store = client.store
    started = time.time()
    done = dict.fromkeys(WORKERS, 0)
    failed = dict.fromkeys(WORKERS, 0)
    running: dict[str, tuple[str, float]] = {}
    while not stop.is_set():
        for w in WORKERS:
            cur = running.get(w)
            if cur and time.time() >= cur[1]:
                task = client.get(cur[0])
                if task.name == "DIV" and task.args[1] == 0:
                    out = Outcome(task.id, task.attempt, TaskState.FAILED,
                                  error="PermanentTaskError: division by zero")
                    failed[w] += 1
                else:
                    a = task.args
                    result = {"ADD": lambda: a[0] + a[1], "SUB": lambda: a[0] - a[1],
                              "MUL": lambda: a[0] * a[1], "DIV": lambda: a[0] / a[1],
                              "ECHO": lambda: a[0], "SLEEP": lambda: a[0]}[task.name]()
                    out = Outcome(task.id, task.attempt, TaskState.COMPLETED, result=result)
                    done[w] += 1
                store.finish(w, [out])
                running.pop(w)
            if w not in running:
                queued = client.list(TaskState.QUEUED, limit=50)
                if queued:
                    t = queued[-1]
                    store.start(w, [Envelope(t.id, t.name, t.args, t.created_at)])
                    running[w] = (t.id, time.time() + random.uniform(0.3, 2.0))
            store.heartbeat(Beat(w, w.rsplit("-", 1)[0], int(w.rsplit("-", 1)[1]), started,
                                 running.get(w, (None,))[0], done[w], failed[w]), 3.0)
        stop.wait(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--kafka-down-after", type=float, default=0)
    parser.add_argument("--no-workers", action="store_true")
    ns = parser.parse_args()
    client, broker = build(ns.tasks)
    stop = threading.Event()
    if not ns.no_workers:
        threading.Thread(target=simulate, args=(client, stop), daemon=True).start()
    if ns.kafka_down_after:
        def down() -> None:
            time.sleep(ns.kafka_down_after)
            broker.available = False
        threading.Thread(target=down, daemon=True).start()
    try:
        make_app(client, target="yadtq:demo on fakeredis").run()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
