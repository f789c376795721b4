"""Scheduler benchmark on the local stack (part of `make bench`): how late due tasks go out.

Two worker processes (each runs the scheduler loop; one leads). This process schedules ADD tasks at
``--rate`` per second for ``--seconds`` seconds, each due ``--delay`` seconds after it is submitted
(``submit_many(..., delay=)`` every 20 ms), so tasks come due at that rate while the workers run
the ones already due. For every task, from its history:

- dispatch lateness = when the scheduler's claim flipped it ``scheduled -> queued`` - its due time
  (both on Redis's clock);
- start lateness = when a worker marked it in-progress - its due time (the worker's clock; same
  machine).

Reported: p50, p99, max of both, and how many started before their due time (must be 0). Every
run checks that each task completed once with the right result (none lost, none run twice).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Workers, fresh_settings, machine, percentile, wait_for, write_result
from yadtq import Client
from yadtq.broker import ensure_topics
from yadtq.models import TaskState
from yadtq.records import task as parse_task

BATCH_SECONDS = 0.02


def submit_at_rate(client: Client, rate: int, seconds: float, delay: float) -> dict[str, int]:
    """Schedule ``rate`` tasks a second for ``seconds``; their ids with the expected results."""
    expected: dict[str, int] = {}
    per_batch = max(1, round(rate * BATCH_SECONDS))
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        items = [("ADD", [n + i, 1]) for i in range(per_batch)]
        ids = client.submit_many(items, delay=delay)
        for i, task_id in enumerate(ids):
            expected[task_id] = n + i + 1
        n += per_batch
        next_at = start + (n / per_batch) * BATCH_SECONDS
        time.sleep(max(0.0, next_at - time.monotonic()))
    return expected


def measure(client: Client, expected: dict[str, int]) -> dict[str, Any]:
    store = client.store
    dispatch: list[float] = []
    start: list[float] = []
    wrong = twice = 0
    ids = list(expected)
    for i in range(0, len(ids), 1000):
        pipe = store.r.pipeline(transaction=False)
        for task_id in ids[i:i + 1000]:
            pipe.hgetall(store.keys.task(task_id))
        for task_id, raw in zip(ids[i:i + 1000], pipe.execute(), strict=True):
            task = parse_task(task_id, raw)
            if task.state.value != "completed" or task.result != expected[task_id] \
                    or task.due_at is None:
                wrong += 1
                continue
            queued = [h.at for h in task.history if h.state.value == "queued"]
            started = [h.at for h in task.history if h.state.value == "in-progress"]
            twice += len(started) != 1
            if queued and started:
                dispatch.append(queued[0] - task.due_at)
                start.append(started[0] - task.due_at)

    def dist(values: list[float]) -> dict[str, float]:
        return {"p50_ms": round(percentile(values, 50) * 1000, 1),
                "p99_ms": round(percentile(values, 99) * 1000, 1),
                "max_ms": round(max(values) * 1000, 1) if values else float("nan")}

    return {"tasks": len(ids), "wrong_or_lost": wrong, "started_more_than_once": twice,
            "started_early": sum(1 for v in start if v < 0),
            "dispatch_lateness": dist(dispatch), "start_lateness": dist(start)}


def run(rate: int, seconds: float, delay: float, n_workers: int,
        dedicated: bool) -> dict[str, Any]:
    """One configuration: the workers schedule (one leads), or ``dedicated``: they do not and a
    ``yadtq-worker --scheduler`` process does."""
    settings = fresh_settings(f"sched-{n_workers}")
    ensure_topics(settings)
    client = Client(settings)
    workers = Workers(settings, n_workers, extra_args=("--no-scheduler",) if dedicated else ())
    scheduler = Workers(settings, 1, extra_args=("--scheduler",)) if dedicated else None
    try:
        workers.wait_ready(client)
        lock = client.store.keys.lock("scheduler")
        if not wait_for(lambda: client.store.r.get(lock) is not None, 60):
            raise RuntimeError("no scheduler took the lead")
        t0 = time.monotonic()
        expected = submit_at_rate(client, rate, seconds, delay)
        offered = len(expected) / (time.monotonic() - t0)
        done = wait_for(lambda: client.counts()[TaskState.COMPLETED] >= len(expected),
                        seconds + delay + 60)
        result = measure(client, expected)
        result.update({"workers": n_workers, "scheduler": "dedicated process" if dedicated
                       else "in the workers", "rate_offered_per_s": round(offered, 1),
                       "seconds": seconds, "delay_s": delay, "all_done": done})
        return result
    finally:
        workers.stop()
        if scheduler is not None:
            scheduler.stop()
        client.reset()
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="tasks per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=15, help="how long to submit (default 15)")
    parser.add_argument("--delay", type=float, default=2, help="delay of each task (default 2 s)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = [run(args.rate, args.seconds, args.delay, args.workers, dedicated)
            for dedicated in (False, True)]
    path = write_result("schedule", {"machine": machine(), "load_average": os.getloadavg(),
                                     "runs": runs})
    ok = True
    for result in runs:
        d, s = result["dispatch_lateness"], result["start_lateness"]
        print(f"{result['tasks']} tasks at {result['rate_offered_per_s']}/s, {args.workers} "
              f"workers, scheduler {result['scheduler']}: dispatch lateness p50 {d['p50_ms']} ms, "
              f"p99 {d['p99_ms']} ms, max {d['max_ms']} ms; start lateness p50 {s['p50_ms']} ms, "
              f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms; early {result['started_early']}, "
              f"lost/wrong {result['wrong_or_lost']}, twice {result['started_more_than_once']}")
        ok = ok and (result["all_done"] and not result["wrong_or_lost"]
                     and not result["started_early"] and not result["started_more_than_once"])
    print(f"-> {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
