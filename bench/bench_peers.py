"""YADTQ side by side with other task queues on this machine (``make``-free: run it directly).

    .venv/bin/pip install -e '.[peers]'
    .venv/bin/python bench/bench_peers.py --quick          # a few minutes, 1 repeat
    .venv/bin/python bench/bench_peers.py                  # 3 repeats, medians
    .venv/bin/python bench/bench_peers.py --io --quick     # the I/O-bound phase only (10 ms sleep)

Every system runs the same task (a + b, recording its completion in Redis, result stored by the
system), on the same Redis (each its own database: Celery 5, RQ 6, Dramatiq 7, Huey 8, records 9;
YADTQ its usual one under a ``yadtq:bench-...`` prefix) and Kafka (YADTQ, kq), with 2 worker
processes. Systems run in a random order in each repeat; every phase is bounded in time; each
worker is stopped at the end, on errors and on SIGINT/SIGTERM/SIGHUP (process groups).
Phases and their exact definitions: ``bench/peers/phases.py``. Configurations: each module of
``bench/peers/``. Results: ``bench/results/peers[-quick].json`` and ``.png``.

``--io``: only the I/O-bound phase instead: a task that sleeps 10 ms, each system at its setting for
I/O-bound work (threads, 64 per worker process, where it has them; stated in each module's
docstring and ``io_config``; YADTQ ``--concurrency 64``), 2 worker processes each; tasks/s of a warm
drain, lost and duplicated. Its task records its completion as one line appended to a file, not
in Redis (``--io-record``: ``bench/peers/record.py`` says why). Results:
``bench/results/peers-io[-quick].json`` (no plot).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
RUN = os.environ.setdefault("PEERS_RUN", uuid.uuid4().hex[:6])  # before the peer modules load

from bench.common import RESULTS, machine, service_pids, write_result  # noqa: E402
from bench.peers import phases, procs, report  # noqa: E402
from bench.peers.base import Peer  # noqa: E402

SYSTEMS = {"yadtq": "yadtq_peer.YadtqPeer", "yadtq-async": "yadtq_peer.YadtqAsyncPeer",
           "celery": "celery_peer.CeleryPeer", "celery-solo": "celery_peer.CelerySoloPeer",
           "rq": "rq_peer.RqPeer", "rq-simple": "rq_peer.RqSimplePeer",
           "dramatiq": "dramatiq_peer.DramatiqPeer", "huey": "huey_peer.HueyPeer",
           "kq": "kq_peer.KqPeer"}
DEFAULT_SYSTEMS = tuple(SYSTEMS)
SYSTEMS["yadtq-aio"] = "yadtq_peer.YadtqAioPeer"  # an I/O-phase variant (async def task)
SYSTEMS["yadtq-confluent"] = "yadtq_peer.YadtqConfluentPeer"  # the optional second Kafka client
SYSTEMS["yadtq-aio-confluent"] = "yadtq_peer.YadtqAioConfluentPeer"  # I/O phase, both options
# --io: celery-solo (no concurrency) and yadtq-async (differs only in 1-by-1 submits) left out
IO_SYSTEMS = ("yadtq", "yadtq-aio", "celery", "rq", "rq-simple", "dramatiq", "huey", "kq")


def load(name: str, io: bool = False) -> Peer:
    module, cls = SYSTEMS[name].split(".")
    return getattr(importlib.import_module(f"bench.peers.{module}"), cls)(RUN, io)


def warm_up(peer: Peer, sz: phases.Sizes) -> dict[str, Any]:
    try:
        return phases.start_ready(peer, peer.recorder(), "warmup", sz)
    except phases.PhaseError as exc:
        return {"error": str(exc), "check": exc.check}
    finally:
        peer.stop()


def run_rep(peer: Peer, rep: int, sz: phases.Sizes, io: bool = False) -> dict[str, Any]:
    """One repeat of every phase, or with ``io`` of the I/O phase (``--io``: start, ready, then the
    warm drain of the sleeping task, ``sz.warm_drain`` tasks); workers are stopped on entry and
    on exit."""
    rec = peer.recorder()
    out: dict[str, Any] = {"started": time.strftime("%H:%M:%S"), "loadavg_1min": os.getloadavg()[0]}
    try:
        steps: list[tuple[str, Any]]
        if io:
            peer.stop()
            steps = [("ready", lambda: phases.start_ready(peer, rec, f"r{rep}ready", sz)),
                     ("io_drain", lambda: phases.warm_drain(peer, rec, f"r{rep}io", sz))]
        else:
            try:
                out["drain"] = phases.drain(peer, rec, f"r{rep}drain", sz)
            except phases.PhaseError as exc:
                out["drain"] = {"error": str(exc), "check": exc.check}
                peer.stop()
            steps = [
                ("ready", lambda: phases.start_ready(peer, rec, f"r{rep}ready", sz,
                                                     start=not peer.alive())),
                ("warm_drain", lambda: phases.warm_drain(peer, rec, f"r{rep}wdrain", sz)),
                ("burst", lambda: phases.burst(peer, rec, f"r{rep}burst", sz))]
            steps += [(f"rate_{r}", lambda r=r: phases.offered(peer, rec, f"r{rep}rate{r}", r, sz))
                      for r in sz.rates]
        for name, step in steps:
            if name.startswith("rate_"):
                capacity = max(out.get("drain", {}).get("drain_per_s", 0),
                               out.get("warm_drain", {}).get("drain_per_s", 0),
                               out.get("burst", {}).get("tasks_per_s", 0))
                if int(name[5:]) > 1.5 * capacity:
                    out[name] = {"skipped": f"saturated: capacity {capacity:.0f}/s in this repeat"}
                    continue
            try:
                out[name] = step()
            except phases.PhaseError as exc:
                out[name] = {"error": str(exc), "check": exc.check}
                if name == "ready" or not peer.alive():
                    break
    except Exception as exc:  # one system's failure must not end the run
        out["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        peer.stop()
    return out


def tables(systems: dict[str, Any], rates: list[int], io: bool = False) -> str:
    if io:
        return "\n\n".join([report.table(systems, report.IO, "I/O-bound: 10 ms sleep per task (tasks/s)"),
                             report.io_ratio_table(systems), report.exactly_table(systems)])
    return "\n\n".join([report.table(systems, report.THROUGHPUT, "Throughput (tasks/s)"),
                        report.ratio_table(systems),
                        report.table(systems, report.latency_columns(rates),
                                     "Latency at offered rates (submit -> task done)"),
                        report.table(systems, report.CPU, "CPU seconds per 1,000 tasks"),
                        report.exactly_table(systems)])


def sweep() -> None:
    """Delete every key and topic any run of this benchmark may have left (its own names only)."""
    import redis
    from kafka.admin import KafkaAdminClient

    from bench.peers.base import RECORD_DB, REDIS
    from yadtq import Settings
    patterns = {0: ["yadtq:bench-peers-*"], 5: ["pb-*"], 6: ["rq:*pb*"], 7: ["pb-*"], 8: ["huey.*pb*"],
                RECORD_DB: ["pb:*"]}
    for db, pats in patterns.items():
        r = redis.Redis.from_url(Settings.from_env().redis_url if db == 0 else f"{REDIS}/{db}")
        n = sum(r.unlink(k) for p in pats for k in r.scan_iter(match=p, count=1000))
        for name in ("rq:queues", "rq:workers") if db == 6 else ():
            members = [m for m in r.smembers(name) if b"pb-" in m]
            if members:
                r.srem(name, *members)
        print(f"db {db}: {n} keys deleted")
    admin = KafkaAdminClient(bootstrap_servers=os.environ.get("YADTQ_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    try:
        topics = [t for t in admin.list_topics() if t.startswith(("yadtq.bench-peers-", "pb-"))]
        if topics:
            admin.delete_topics(topics)
        print(f"Kafka: {len(topics)} topics deleted")
    finally:
        admin.close()


def machine_info() -> dict[str, Any]:
    info = machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                                 if line.startswith("model name"))
        info["mem_total"] = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    except (OSError, StopIteration):
        pass
    info["loadavg_start"] = os.getloadavg()
    info["processor"] = platform.processor()
    try:
        import redis
        info["redis_server"] = redis.Redis.from_url(os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379")
                                                    ).info("server")["redis_version"]
    except Exception as exc:
        info["redis_server"] = f"unknown ({exc})"
    root = Path(__file__).resolve().parent.parent
    state = Path(os.environ.get("YADTQ_STATE_DIR", root / ".local" / "services"))
    info["kafka_server"] = ", ".join(p.name for p in state.glob("kafka-*")) or "unknown"
    info["services_pids"] = service_pids()
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few tasks, 1 repeat: a few minutes")
    parser.add_argument("--io", action="store_true",
                        help="only the I/O-bound phase (10 ms sleep per task, each system's I/O setting)")
    parser.add_argument("--io-tasks", type=int, help="tasks in the I/O drain (default 3,000; 20,000 "
                        "without --quick)")
    parser.add_argument("--io-record", choices=("file", "redis"), default="file",
                        help="how the I/O phase's task records its completion: one line appended "
                             "to a file (default) or one Redis call (as every other phase; before "
                             "2026-12-08 the I/O phase's too): bench/peers/record.py")
    parser.add_argument("--systems",
                        help="comma-separated, of: " + ", ".join(SYSTEMS) + " (default: "
                        + ",".join(DEFAULT_SYSTEMS) + "; with --io: " + ",".join(IO_SYSTEMS) + ")")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--burst", type=int)
    parser.add_argument("--drain", type=int, help="tasks in the cold drain")
    parser.add_argument("--warm-drain", type=int, help="tasks in the warm drain (the headline)")
    parser.add_argument("--rates", default="100,200,1000")
    parser.add_argument("--rate-seconds", type=float)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the table and plot from the saved results of this mode")
    parser.add_argument("--sweep", action="store_true",
                        help="only delete what earlier (interrupted) runs of this benchmark left")
    args = parser.parse_args()
    if args.sweep:
        sweep()
        return 0
    stem = "peers" + ("-io" if args.io else "") + ("-quick" if args.quick else "")
    if args.replot:
        saved = json.loads((RESULTS / f"{stem}.json").read_text())
        saved["table"] = tables(saved["systems"], list(saved["sizes"]["rates"]), args.io)
        write_result(stem, saved)
        if args.io:
            print(saved["table"])
            return 0
        print(saved["table"], "\n", report.plot(saved["systems"], list(saved["sizes"]["rates"]),
                                                RESULTS / f"{stem}.png"))
        return 0
    q = args.quick
    sz = phases.Sizes(burst=args.burst or (1000 if q else 3000), drain=args.drain or (2000 if q else 6000),
                      rates=tuple(int(r) for r in args.rates.split(",")),
                      rate_seconds=args.rate_seconds or (3.0 if q else 6.0), warm=200 if q else 500,
                      wait=90.0 if q else 300.0,
                      warm_drain=args.warm_drain or (5000 if q else 20_000))
    if args.io:  # the I/O drain is the warm drain of the sleeping task
        sz.warm_drain = args.io_tasks or (3000 if q else 20_000)
        sz.result_grace = 2.0
    repeats = args.repeats or (1 if q else 3)
    procs.install_handlers()
    results: dict[str, Any] = {"machine": machine_info(), "run": RUN, "seed": args.seed, "quick": q,
                               "io": args.io, "io_record": args.io_record if args.io else None,
                               "repeats": repeats, "sizes": sz.__dict__,
                               "definitions": phases.__doc__,
                               "order": [], "failed": {}, "systems": {}}
    peers: dict[str, Peer] = {}
    for name in (args.systems or ",".join(IO_SYSTEMS if args.io else DEFAULT_SYSTEMS)).split(","):
        try:
            peers[name] = load(name, args.io)
            if args.io and args.io_record == "file":
                peers[name].use_record_file()
            peers[name].prepare()
        except Exception as exc:  # record it and run the others
            results["failed"][name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: not run: {results['failed'][name]}", flush=True)
            peers.pop(name, None)
    rng = random.Random(args.seed)
    reps: dict[str, list[dict[str, Any]]] = {n: [] for n in peers}
    warm: dict[str, Any] = {}
    try:
        for name in rng.sample(list(peers), len(peers)):
            print(f"[warm-up] {name} ...", end=" ", flush=True)
            warm[name] = warm_up(peers[name], sz)
            print(warm[name].get("error", f"ready in {warm[name].get('ready_s')} s"), flush=True)
        for rep in range(repeats):
            order = list(peers)
            rng.shuffle(order)
            results["order"].append(order)
            for name in order:
                t0 = time.time()
                print(f"[repeat {rep + 1}/{repeats}] {name} ...", end=" ", flush=True)
                reps[name].append(run_rep(peers[name], rep, sz, io=args.io))
                errs = {k: v["error"] for k, v in reps[name][-1].items()
                        if isinstance(v, dict) and "error" in v}
                print(f"{time.time() - t0:.0f} s" + (f"  errors: {errs}" if errs else ""), flush=True)
    finally:
        for name, peer in peers.items():
            peer.stop()
            for attempt in range(6):  # the shared services may be restarting: retry for ~30 s
                try:
                    peer.cleanup()
                    peer.recorder().cleanup()
                    break
                except Exception as exc:
                    print(f"{name}: cleanup failed ({exc}); " + ("retrying" if attempt < 5 else
                          "run `bench/bench_peers.py --sweep` later"), file=sys.stderr)
                    time.sleep(5)
    cols = report.IO if args.io else report.THROUGHPUT + report.latency_columns(list(sz.rates)) + report.CPU
    for name, peer in peers.items():
        results["systems"][name] = {"config": peer.config, "bulk_api": peer.bulk_api,
                                    "versions": peer.versions(), "warm_up": warm.get(name),
                                    "repeats": reps[name],
                                    "median": report.medians(reps[name], cols),
                                    "exactly": report.exactly([*reps[name], {"warm": warm.get(name) or {}}])}
    results["machine"]["loadavg_end"] = os.getloadavg()
    systems = results["systems"]
    text = results["table"] = tables(systems, list(sz.rates), args.io)
    path = write_result(stem, results)
    png = None if args.io else report.plot(systems, list(sz.rates), RESULTS / f"{stem}.png")
    print("\n" + text)
    if results["failed"]:
        print("\nnot run: " + "; ".join(f"{k}: {v}" for k, v in results["failed"].items()))
    print(f"\nwritten: {path}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
