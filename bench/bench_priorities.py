"""Priorities under a saturating load on the local stack (issue 12).

2 workers at ``--concurrency 8`` drain a backlog of ``IO_SLEEP 0.01`` tasks queued at ``normal``
before they start; two seconds into the drain, a steady trickle of the same task is submitted at
``high`` and at ``low`` (``--rate`` per second each, for ``--seconds``). Reported: each level's
wait, submit to finish (p50 / p99 / max), and the backlog's drain time. The same run with the
trickle at ``normal`` (``--baseline``) shows what the wait is without priorities. Every task is
checked: completed, run once.

    python bench/bench_priorities.py                  # priorities, then the baseline
    python bench/bench_priorities.py --backlog 20000 --rate 20 --seconds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.tasks_io  # noqa: F401 - registers IO_SLEEP for the client's validation
from bench.bench_concurrency import runs
from bench.common import Workers, drop_prefix, fresh_settings, machine, percentile, wait_for, write_result
from yadtq import Client
from yadtq.broker import ensure_topics
from yadtq.models import TaskState


def run(backlog: int, rate: float, seconds: float, baseline: bool) -> dict[str, Any]:
    settings = fresh_settings("prio")
    ensure_topics(settings)
    client = Client(settings)
    try:
        normal: list[str] = []
        for start in range(0, backlog, 500):
            normal += client.submit_many([("IO_SLEEP", [0.01])] * min(500, backlog - start))
        procs = Workers(settings, 2, extra_args=("--tasks", "bench.tasks_io", "--concurrency", "8"))
        try:
            wait_for(lambda: client.counts()[TaskState.COMPLETED] > 0, 60)
            time.sleep(2.0)
            trickle: dict[str, list[str]] = {"high": [], "low": []}
            t0 = time.monotonic()
            for i in range(int(rate * seconds)):
                for level in trickle:
                    trickle[level].append(client.submit(
                        "IO_SLEEP", [0.01], priority="normal" if baseline else level))
                time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
            total = backlog + sum(len(v) for v in trickle.values())
            if not wait_for(lambda: client.counts()[TaskState.COMPLETED] >= total, 600):
                raise RuntimeError(f"only {client.counts()} after 600 s")
        finally:
            procs.stop()
        out: dict[str, Any] = {"baseline": baseline, "backlog": backlog, "rate": rate,
                               "seconds": seconds}
        first = None
        for level, ids in (("normal", normal), *trickle.items()):
            pipe = client.store.r.pipeline(transaction=False)
            for task_id in ids:
                pipe.hmget(client.store.keys.task(task_id), "state", "history", "created_at",
                           "started_at", "finished_at")
            rows = pipe.execute()
            if any(state != "completed" or runs(history) != 1 for state, history, *_ in rows):
                raise RuntimeError(f"a {level} task did not complete, run once")
            waits = sorted(float(r[4]) - float(r[2]) for r in rows)
            if level == "normal":
                first = min(float(r[3]) for r in rows)
                out["backlog_drained_s"] = round(max(float(r[4]) for r in rows) - first, 2)
            else:
                out[level] = {"tasks": len(ids), "wait_p50_s": round(percentile(waits, 50), 3),
                              "wait_p99_s": round(percentile(waits, 99), 3),
                              "wait_max_s": round(waits[-1], 3)}
        return out
    finally:
        drop_prefix(client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=20.0, help="tasks per second per level")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", default="priorities", help="result name under bench/results")
    args = parser.parse_args()
    results = []
    for baseline in (False,) if args.no_baseline else (False, True):
        results.append(run(args.backlog, args.rate, args.seconds, baseline))
        print(results[-1], flush=True)
    write_result(args.out, {"machine": machine(), "runs": results})


if __name__ == "__main__":
    main()
