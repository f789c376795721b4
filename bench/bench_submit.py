"""Confirmed submits from one thread (issue 15): ``Client.submit()`` calls per second, each
waiting for Kafka's acknowledgement, with each Kafka client (`make bench`).

    .venv/bin/python bench/bench_submit.py [--n 2000] [--repeat 3]

No workers run (the tasks stay queued; their keys are removed afterwards): this is the
caller's cost, the Redis record written while Kafka acknowledges the message (``yadtq.enqueue``).
The clients alternate within each repeat (which goes first flips each repeat); 200 submits warm
each one up first. Per client: the median over the repeats of the rate and of the call's p50 and
p99. Writes ``bench/results/submit.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import drop_prefix, fresh_settings, machine, write_result
from yadtq import Client
from yadtq.broker import ensure_topics
from yadtq.settings import KAFKA_CLIENTS


def one(kafka_client: str, n: int) -> dict[str, Any]:
    settings = fresh_settings("submit").with_(kafka_client=kafka_client)
    ensure_topics(settings)
    client = Client(settings)
    try:
        for i in range(200):
            client.submit("ADD", [i, 1])
        calls = []
        start = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            client.submit("ADD", [i, 1])
            calls.append(time.perf_counter() - t)
        seconds = time.perf_counter() - start
        calls.sort()
        queued = client.total()
        return {"per_s": round(n / seconds, 1), "p50_ms": round(calls[n // 2] * 1000, 3),
                "p99_ms": round(calls[int(n * 0.99)] * 1000, 3), "recorded": queued,
                "load_average": round(os.getloadavg()[0], 2)}
    finally:
        drop_prefix(client)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="submit")
    args = parser.parse_args()
    clients = [c for c in KAFKA_CLIENTS
               if c != "confluent" or importlib.util.find_spec("confluent_kafka") is not None]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    for r in range(args.repeat):
        for c in clients if r % 2 == 0 else list(reversed(clients)):
            got = one(c, args.n)
            runs[c].append(got)
            print(f"run {r + 1}, {c:<13} {got['per_s']:>8}/s  p50 {got['p50_ms']} ms  "
                  f"p99 {got['p99_ms']} ms  (load {got['load_average']})")
    bad = [(c, g["recorded"]) for c, rs in runs.items() for g in rs if g["recorded"] != args.n + 200]
    medians = {c: {k: median(g[k] for g in rs) for k in ("per_s", "p50_ms", "p99_ms")}
               for c, rs in runs.items()}
    for c, m in medians.items():
        print(f"median, {c:<13} {m['per_s']:>8}/s  p50 {m['p50_ms']} ms  p99 {m['p99_ms']} ms")
    path = write_result(args.out, {"machine": machine(), "n": args.n, "medians": medians,
                                   "runs": runs})
    print(f"written to {path}")
    if bad:
        print(f"FAILED: tasks recorded per run differ from those submitted: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
