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
    seen     this process saw it completed (a watcher thread reads the outstanding tasks' state
             every millisecond, as a client waiting on a result would)

Each hop's p50/p99 and the end to end (call -> seen) are reported. Phases: offered 200/s and
1,000/s with confirmed ``submit()`` (wait=True), 1,000/s and 5,000/s with one-by-one
``submit(wait=False)``, and a burst of confirmed submits from one thread (submit calls per second).
Every phase checks 0 lost, 0 duplicated (runs counted by the task itself), results a + b.

The worker-side timestamps cost the normal path nothing: this module, imported by the workers as
their task module (``YADTQ_TASKS``) only in this benchmark, wraps ``TaskConsumer.poll``,
``RedisStore.start`` and ``RedisStore.finish`` in the worker processes and writes what it saw to a
file when the worker exits. Writes ``bench/results/latency.json``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yadtq import task  # noqa: E402

HOPS_DIR = "YADTQ_BENCH_HOPS_DIR"
HOPS = (("submit call", "call", "return"), ("to Kafka append", "call", "append"),
        ("append -> poll", "append", "poll"), ("poll -> start written", "poll", "started"),
        ("start -> run", "started", "run"), ("run -> outcome written", "run", "outcome"),
        ("outcome -> client sees", "outcome", "seen"), ("end to end", "call", "seen"))

_runs: dict[str, list[float]] = {}  # worker side: seq -> run start times (one per run)
_seen: dict[str, dict[str, float]] = {}  # worker side: task id -> {append, poll, started, outcome}


@task("LATADD", max_attempts=1)
def latadd(a: int, b: int, seq: str) -> int:
    """a + b, noting when it ran (bench/bench_latency.py)."""
    _runs.setdefault(seq, []).append(time.time())
    return a + b


def _install_hooks(out_dir: str) -> None:
    """Worker side: note when poll, START and FINISH return per task; dump at exit."""
    from yadtq import broker
    from yadtq.broker_types import Record
    from yadtq.store import RedisStore

    def poll(self: Any, timeout_ms: int, max_records: int | None = None) -> list[Record]:
        with broker.kafka_errors(self.settings.kafka_bootstrap, "poll"):
            batches = self._c.poll(timeout_ms=timeout_ms, max_records=max_records)
        now = time.time()
        out: list[Record] = []
        for tp, messages in batches.items():
            for m in messages:
                out.append(Record(tp.partition, m.offset, m.value, tp.topic))
                try:
                    tid = json.loads(m.value)["id"]
                except (ValueError, KeyError, TypeError):
                    continue
                _seen.setdefault(tid, {}).update(
                    poll=now, append=m.timestamp / 1000, append_type=m.timestamp_type)
        return out

    start, finish = RedisStore.start, RedisStore.finish

    def timed_start(self: RedisStore, worker_id: str, envelopes: Any) -> list[int]:
        res = start(self, worker_id, envelopes)
        now = time.time()
        for env in envelopes:
            _seen.setdefault(env.id, {})["started"] = now
        return res

    def timed_finish(self: RedisStore, worker_id: str, outcomes: Any) -> list[bool]:
        res = finish(self, worker_id, outcomes)
        now = time.time()
        for o in outcomes:
            _seen.setdefault(o.task_id, {})["outcome"] = now
        return res

    broker.TaskConsumer.poll = poll  # type: ignore[method-assign]
    RedisStore.start = timed_start  # type: ignore[method-assign]
    RedisStore.finish = timed_finish  # type: ignore[method-assign]

    def dump() -> None:
        path = Path(out_dir) / f"hops-{os.getpid()}.json"
        path.write_text(json.dumps({"tasks": _seen, "runs": _runs}))

    atexit.register(dump)


if os.environ.get(HOPS_DIR) and __name__ != "__main__":
    _install_hooks(os.environ[HOPS_DIR])


# ---------------------------------------------------------------------- the client side
class Watcher:
    """Reads the state of outstanding tasks every ``interval`` s; notes when each is completed."""

    def __init__(self, client: Any, interval: float = 0.001) -> None:
        self.r, self.keys, self.interval = client.store.r, client.store.keys, interval
        self._pending: dict[str, None] = {}
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-watcher", daemon=True)
        self._thread.start()

    def add(self, task_id: str) -> None:
        with self._lock:
            self._pending[task_id] = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._pending)[:5000]
            if not ids:
                continue
            pipe = self.r.pipeline(transaction=False)
            for tid in ids:
                pipe.hget(self.keys.task(tid), "state")
            states = pipe.execute()
            now = time.time()
            with self._lock:
                for tid, state in zip(ids, states, strict=True):
                    if state in ("completed", "failed", "cancelled"):
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


def run_once(seconds: float, burst_n: int) -> dict[str, Any]:
    from bench.common import Workers, fresh_settings
    from bench.peers.yadtq_peer import YadtqPeer
    from yadtq import Client
    from yadtq.broker import ensure_topics

    settings = fresh_settings("lat")
    ensure_topics(settings)
    log_append_time(settings)
    client = Client(settings)
    out_dir = Path(tempfile.mkdtemp(prefix="yadtq-lat-"))
    saved = {k: os.environ.get(k) for k in ("YADTQ_TASKS", HOPS_DIR)}
    os.environ.update({"YADTQ_TASKS": "bench.bench_latency", HOPS_DIR: str(out_dir)})
    try:
        workers = Workers(settings, 2)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    watcher = Watcher(client)
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
        for f in out_dir.glob("*"):
            f.unlink()
        out_dir.rmdir()
        try:
            YadtqPeer.cleanup(_Cleanup(settings, client))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - cleaning up: say so, keep the result
            print(f"cleanup: {exc}", file=sys.stderr)


class _Cleanup:
    """What ``YadtqPeer.cleanup`` needs: the client, its key prefix and topics."""

    def __init__(self, settings: Any, client: Any) -> None:
        self.settings, self.client, self.r = settings, client, client.store.r

    def delete_matching(self, pattern: str) -> None:
        for key in self.r.scan_iter(match=pattern, count=1000):
            self.r.unlink(key)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase and hop, the median over the repeats of p50 and of p99."""
    from statistics import median
    out: dict[str, Any] = {}
    for phase in runs[0]:
        hops = {}
        for name, _, _ in HOPS:
            vals = {q: [r[phase]["hops_ms"][name][q] for r in runs
                        if r[phase]["hops_ms"][name][q] is not None] for q in ("p50", "p99")}
            hops[name] = {q: round(median(v), 2) if v else None for q, v in vals.items()}
        out[phase] = hops
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
    parser.add_argument("--out", default="latency", help="bench/results/<OUT>.json")
    parser.add_argument("--label", default="", help="what this run measures (kept in the file)")
    args = parser.parse_args()
    runs = []
    for i in range(args.repeat):
        load = os.getloadavg()
        print(f"run {i + 1}/{args.repeat} (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}); "
              "p50/p99 ms per hop")
        result = run_once(args.seconds, args.burst)
        print_run(result)
        runs.append({"load_average": [round(x, 2) for x in load], "phases": result})
    bad = [(i, p, r["check"]) for i, run in enumerate(runs) for p, r in run["phases"].items()
           if r["check"]["lost"] or r["check"]["duplicated"] or r["check"]["wrong_result"]]
    data = {"machine": machine(), "label": args.label, "seconds": args.seconds, "runs": runs,
            "median_over_runs": median_of([r["phases"] for r in runs]),
            "hops": {name: f"{a} -> {b}" for name, a, b in HOPS}}
    path = write_result(args.out, data)
    print(f"written to {path}")
    if bad:
        print(f"FAILED checks: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
