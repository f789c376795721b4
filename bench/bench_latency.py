"""Where a task's latency goes, hop by hop, on the local stack (`make bench`; issue 15).

    .venv/bin/python bench/bench_latency.py [--seconds 5] [--repeat 1] [--out latency]

2 worker processes run ``LATADD`` (a + b, one attempt). For each phase, per task:

    call     the client's ``submit`` call begins (this process)
    return   ``submit`` returns (wait=True: Redis record + Kafka's acknowledgement)
    append   Kafka appended the record (its timestamp; the bench topic is set to LogAppendTime,
             so this is the broker's clock, in whole milliseconds)
    poll     the worker's ``poll`` returned it
    started  the worker's START script (in-progress) returned
    run      the task function began
    outcome  the worker's FINISH script (outcome in Redis) returned
    seen     this process heard the workers' announcement that it finished (how ``Client.wait``
             is woken; ``--poll``: a watcher thread reads the outstanding tasks' state every
             millisecond instead)

Each hop's p50/p99 and the end to end (call -> seen) are reported. Phases: offered 200/s and
1,000/s with confirmed ``submit()`` (wait=True), 1,000/s and 5,000/s with one-by-one
``submit(wait=False)``, and a burst of confirmed submits from one thread (submit calls per second).
Every phase checks 0 lost, 0 duplicated (runs counted by the task itself), results a + b.

The worker-side timestamps cost the normal path nothing: ``bench/latency_worker.py``, the workers'
task module (``YADTQ_TASKS``) only in this benchmark, wraps ``TaskConsumer.poll``,
``RedisStore.start_ex`` and ``RedisStore.finish`` in the worker processes and writes what it saw to a
file when the worker exits. ``--try JSON`` runs each repeat without and with a change (consumer or
producer keywords, the background submitter's wait, the workers' switch interval, gc.freeze) and
compares the medians: the machine is shared and noisy, so A and B alternate.
Writes ``bench/results/latency.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency_worker import HOPS_DIR, TRY, apply_try

HOPS = (("submit call", "call", "return"), ("to Kafka append", "call", "append"),
        ("append -> poll", "append", "poll"), ("poll -> start written", "poll", "started"),
        ("start -> run", "started", "run"), ("run -> outcome written", "run", "outcome"),
        ("outcome -> client sees", "outcome", "seen"), ("end to end", "call", "seen"))

# ---------------------------------------------------------------------- the client side
class Watcher:
    """Notes when each outstanding task is seen completed. ``announce`` (the default, how
    ``Client.wait`` is woken): the workers' announcement of finished ids, which ``FINISH`` sends in
    the script that writes them final (``Client.wait`` then reads the task: one GET more, not
    counted here; reading every announced batch here fell behind at 5,000/s, the bench process
    being the submitter too), and a read of the 256 oldest outstanding ones once a second besides.
    Otherwise it reads those 256 every millisecond (reading every outstanding one would load this
    process more the longer the backlog)."""

    def __init__(self, client: Any, announce: bool = True) -> None:
        self.r, self.keys = client.store.r, client.store.keys
        self.interval = 1.0 if announce else 0.001
        self._pending: dict[str, None] = {}
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-watcher", daemon=True)
        self._thread.start()
        self._listener: threading.Thread | None = None
        if announce:
            ready = threading.Event()
            self._listener = threading.Thread(target=self._listen, args=(ready,),
                                              name="bench-announced", daemon=True)
            self._listener.start()
            ready.wait(5)

    def _listen(self, ready: threading.Event) -> None:
        pubsub = self.r.pubsub()
        pubsub.subscribe(self.keys.finished)
        try:
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    ready.set()
                elif message["type"] == "message":  # sent by FINISH once they are written final
                    now = time.time()
                    ids = json.loads(message["data"])
                    with self._lock:
                        for tid in ids:
                            if self._pending.pop(tid, 0) is None:
                                self.seen[tid] = now
        finally:
            pubsub.close()

    def add(self, task_id: str) -> None:
        with self._lock:
            self._pending[task_id] = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(itertools.islice(self._pending, 256))  # the oldest first
            if ids:
                self._read(ids)

    def _read(self, ids: list[str]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hget(self.keys.task(tid), "state")
        states = pipe.execute()
        now = time.time()
        with self._lock:
            for tid, state in zip(ids, states, strict=True):
                if state in ("completed", "failed", "cancelled") and tid in self._pending:
                    self.seen[tid] = now
                    self._pending.pop(tid, None)

    def wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self._listener is not None:
            self._listener.join(timeout=2)


def offered(client: Any, watcher: Watcher, phase: str, rate: float, seconds: float,
            wait: bool) -> dict[str, Any]:
    n = int(rate * seconds)
    tasks: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        call = time.time()
        tid = client.submit("LATADD", [i, 7, f"{phase}:{i}"], wait=wait)
        tasks[tid] = {"call": call, "return": time.time(), "seq": f"{phase}:{i}", "sum": i + 7}
        watcher.add(tid)
    client.flush()
    elapsed = time.perf_counter() - t0
    if not watcher.wait_all(60):
        raise RuntimeError(f"{phase}: not every task completed within 60 s")
    return {"offered_per_s": rate, "achieved_per_s": round(n / elapsed, 1), "wait": wait,
            "tasks": tasks}


def confirmed_burst(client: Any, watcher: Watcher, phase: str, n: int) -> dict[str, Any]:
    """One thread, one confirmed ``submit()`` after another: submit calls per second."""
    tasks: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for i in range(n):
        call = time.time()
        tid = client.submit("LATADD", [i, 7, f"{phase}:{i}"])
        tasks[tid] = {"call": call, "return": time.time(), "seq": f"{phase}:{i}", "sum": i + 7}
        watcher.add(tid)
    elapsed = time.perf_counter() - t0
    if not watcher.wait_all(60):
        raise RuntimeError(f"{phase}: not every task completed within 60 s")
    return {"submit_per_s": round(n / elapsed, 1), "tasks": tasks}


def _ms(values: list[float], q: float) -> float | None:
    from bench.common import percentile
    return round(percentile(values, q) * 1000, 2) if values else None


def analyse(client: Any, phase: dict[str, Any], watcher: Watcher, hops: dict[str, Any],
            runs: dict[str, list[float]]) -> dict[str, Any]:
    """Per-hop p50/p99 and the exactly-once check of one phase (its ``tasks`` are replaced)."""
    tasks = phase.pop("tasks")
    ids = list(tasks)
    pipe = client.store.r.pipeline(transaction=False)
    for tid in ids:
        pipe.hmget(client.store.keys.task(tid), "state", "result", "attempt", "created_at",
                   "finished_at")
    rows = pipe.execute()
    lost = dup = wrong = 0
    stamps: list[dict[str, float]] = []
    stored: list[float] = []
    types: set[int] = set()
    for tid, (state, result, attempt, created, finished) in zip(ids, rows, strict=True):
        t = tasks[tid]
        n_runs = len(runs.get(t["seq"], []))
        lost += n_runs == 0 or state != "completed"
        dup += n_runs > 1 or attempt != "1"
        wrong += state == "completed" and (result is None or int(result) != t["sum"])
        if state != "completed" or tid not in hops or tid not in watcher.seen or not n_runs:
            continue
        h = hops[tid]
        types.add(h.get("append_type", -1))
        stamps.append({"call": t["call"], "return": t["return"], "append": h["append"],
                       "poll": h["poll"], "started": h["started"], "run": runs[t["seq"]][0],
                       "outcome": h["outcome"], "seen": watcher.seen[tid]})
        stored.append(float(finished) - float(created))
    out = {k: v for k, v in phase.items()}
    out["check"] = {"tasks": len(ids), "lost": lost, "duplicated": dup, "wrong_result": wrong,
                    "timed": len(stamps)}
    out["append_timestamp"] = ("LogAppendTime (broker)" if types == {1} else
                               "CreateTime (producer send)" if types == {0} else str(types))
    out["hops_ms"] = {name: {"p50": _ms([s[b] - s[a] for s in stamps], 50),
                             "p99": _ms([s[b] - s[a] for s in stamps], 99)}
                      for name, a, b in HOPS}
    out["stored_created_to_finished_ms"] = {"p50": _ms(stored, 50), "p99": _ms(stored, 99)}
    return out


def load_hops(out_dir: Path) -> tuple[dict[str, Any], dict[str, list[float]]]:
    hops: dict[str, Any] = {}
    runs: dict[str, list[float]] = {}
    for f in sorted(out_dir.glob("hops-*.json")):
        data = json.loads(f.read_text())
        hops.update(data["tasks"])
        for seq, times in data["runs"].items():
            runs.setdefault(seq, []).extend(times)
    return hops, runs


def log_append_time(settings: Any) -> None:
    """The bench topic's records get the broker's append time as their timestamp."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    from yadtq.broker import client_config
    admin = KafkaAdminClient(**client_config(settings))
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic,
                                            {"message.timestamp.type": "LogAppendTime"})],
                            incremental=True)
    finally:
        admin.close()


def run_once(seconds: float, burst_n: int, spec: dict[str, Any],
             announce: bool = True) -> dict[str, Any]:
    from bench.common import Workers, fresh_settings
    from bench.peers.yadtq_peer import YadtqPeer
    from yadtq import Client
    from yadtq.broker import ensure_topics

    settings = fresh_settings("lat")
    ensure_topics(settings)
    log_append_time(settings)
    undo = apply_try(spec, "client")
    client = Client(settings)
    out_dir = Path(tempfile.mkdtemp(prefix="yadtq-lat-"))
    saved = {k: os.environ.get(k) for k in ("YADTQ_TASKS", HOPS_DIR, TRY)}
    os.environ.update({"YADTQ_TASKS": "bench.latency_worker", HOPS_DIR: str(out_dir),
                       TRY: json.dumps(spec)})
    try:
        workers = Workers(settings, 2)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    watcher = Watcher(client, announce)
    phases: dict[str, Any] = {}
    try:
        workers.wait_ready(client)
        offered(client, watcher, "warm", 500, 2, wait=False)  # every worker has run LATADD
        phases["offered_200_confirmed"] = offered(client, watcher, "o200", 200, seconds, True)
        phases["offered_1000_confirmed"] = offered(client, watcher, "o1000", 1000, seconds, True)
        phases["offered_1000_unconfirmed"] = offered(client, watcher, "u1000", 1000, seconds, False)
        phases["offered_5000_unconfirmed"] = offered(client, watcher, "u5000", 5000, seconds, False)
        phases["confirmed_burst"] = confirmed_burst(client, watcher, "burst", burst_n)
    finally:
        workers.stop()
        watcher.close()
    hops, runs = load_hops(out_dir)
    try:
        if len(list(out_dir.glob("hops-*.json"))) != 2:
            raise RuntimeError("a worker did not write its timestamps (did it exit cleanly?)")
        return {name: analyse(client, p, watcher, hops, runs) for name, p in phases.items()}
    finally:
        for obj, name, value in reversed(undo):
            setattr(obj, name, value)
        for f in out_dir.glob("*"):
            f.unlink()
        out_dir.rmdir()
        cleanup = YadtqPeer.__new__(YadtqPeer)  # its clean-up: keys, client, topics
        cleanup.settings, cleanup.client, cleanup.r = settings, client, client.store.r
        try:
            cleanup.cleanup()
        except Exception as exc:
            print(f"cleanup: {exc}", file=sys.stderr)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase and hop, the median over the repeats of p50 and of p99 (and of the rate)."""
    from statistics import median
    out: dict[str, Any] = {}
    for phase in runs[0]:
        hops: dict[str, Any] = {}
        for name, _, _ in HOPS:
            vals = {q: [r[phase]["hops_ms"][name][q] for r in runs
                        if r[phase]["hops_ms"][name][q] is not None] for q in ("p50", "p99")}
            hops[name] = {q: round(median(v), 2) if v else None for q, v in vals.items()}
        rates = [r[phase].get("achieved_per_s", r[phase].get("submit_per_s")) for r in runs]
        out[phase] = {"per_s": round(median(rates), 1), "hops_ms": hops}
    return out


def print_run(result: dict[str, Any]) -> None:
    names = [h[0] for h in HOPS]
    print(f"  {'phase':<26}{'rate':>8}  " + "  ".join(f"{n[:14]:>14}" for n in names))
    for phase, r in result.items():
        rate = r.get("achieved_per_s", r.get("submit_per_s"))
        cells = "  ".join(f"{str(r['hops_ms'][n]['p50']) + '/' + str(r['hops_ms'][n]['p99']):>14}"
                          for n in names)
        print(f"  {phase:<26}{rate:>8}  {cells}  {r['check']}")


def main() -> int:
    from bench.common import machine, write_result

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per offered-load phase")
    parser.add_argument("--burst", type=int, default=2000, help="confirmed submits in the burst")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--poll", action="store_true",
                        help="see outcomes by reading every millisecond, not by announcement")
    parser.add_argument("--out", default="latency", help="bench/results/<OUT>.json")
    parser.add_argument("--label", default="", help="what this run measures (kept in the file)")
    parser.add_argument("--try", dest="spec", default=None, metavar="JSON",
                        help=f"a change to try ({TRY}'s keys); with it each repeat runs without "
                             "and then with it, and the medians of both are compared")
    args = parser.parse_args()
    variants = {"as is": {}} if args.spec is None else {"as is": {}, "tried": json.loads(args.spec)}
    runs: list[dict[str, Any]] = []
    for i in range(args.repeat):
        for variant, spec in variants.items():
            load = os.getloadavg()
            print(f"run {i + 1}/{args.repeat}, {variant} (load average {load[0]:.2f} {load[1]:.2f} "
                  f"{load[2]:.2f}); p50/p99 ms per hop")
            result = run_once(args.seconds, args.burst, spec, announce=not args.poll)
            print_run(result)
            runs.append({"variant": variant, "load_average": [round(x, 2) for x in load],
                         "phases": result})
    bad = [(i, p, r["check"]) for i, run in enumerate(runs) for p, r in run["phases"].items()
           if r["check"]["lost"] or r["check"]["duplicated"] or r["check"]["wrong_result"]]
    medians = {v: median_of([r["phases"] for r in runs if r["variant"] == v]) for v in variants}
    for v, med in medians.items():
        print(f"median over {args.repeat} run(s), {v}: per phase, rate and end to end p50/p99 ms")
        for phase, m in med.items():
            e2e = m["hops_ms"]["end to end"]
            print(f"  {phase:<26}{m['per_s']:>8}  {e2e['p50']}/{e2e['p99']}")
    data = {"machine": machine(), "label": args.label, "tried": variants.get("tried"),
            "seen_by": "polling every ms" if args.poll else "announcement (Client.wait's way)",
            "kafka_client": os.environ.get("YADTQ_KAFKA_CLIENT", "kafka-python"),
            "seconds": args.seconds, "hops": {name: f"{a} -> {b}" for name, a, b in HOPS},
            "median_over_runs": medians, "runs": runs}
    path = write_result(args.out, data)
    print(f"written to {path}")
    if bad:
        print(f"FAILED checks: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
