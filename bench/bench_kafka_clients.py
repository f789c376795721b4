"""kafka-python against confluent-kafka on the local broker, same run, alternating (issue 15).

    .venv/bin/python bench/bench_kafka_clients.py [--reps 3] [--quick] [--out kafka-clients]

Both clients get YADTQ's settings (``yadtq/broker.py``, ``yadtq/kafka_conn.py``: acks=all,
idempotent producer, linger 0, 5 in flight; consumer group with cooperative-sticky assignment,
manual asynchronous commits after each batch, fetch wait 100 ms, 500 records per poll). Every
measurement runs in fresh processes (``bench/kafka_clients_roles.py``), one producer and one
consumer, so CPU is per process (``time.process_time``, every thread of the client included).

Phases, each repeated ``--reps`` times, the two clients one after the other (which goes first
alternates from one repeat to the next), medians reported:

    confirmed  one thread: send, wait for the ack, next (YADTQ's confirmed ``submit()`` floor)
    submit     YADTQ's own confirmed ``Client.submit()`` from one thread (Redis + Kafka), no worker
    200/s      produce -> consume latency, paced 200 messages/s for 10 s
    1000/s     the same at 1,000/s for 5 s
    burst      10,000 messages as fast as the producer takes them: CPU seconds per 10,000

Every measurement has its own topic (12 partitions, named after the run) and consumer group; the
topics are deleted at the end. The machine's load average is recorded around each measurement.
Without confluent-kafka installed it prints that and exits 0 (not part of ``make test``).
Writes ``bench/results/kafka-clients.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine, write_result

ROLES = str(Path(__file__).resolve().parent / "kafka_clients_roles.py")
CLIENTS = ("kafka-python", "confluent")
PARTITIONS = 12


def phases(quick: bool) -> list[tuple[str, float, int]]:
    """(name, rate, messages); rate -1: confirmed one by one, 0: as fast as possible."""
    if quick:
        return [("confirmed", -1, 300), ("submit", -1, 300), ("200/s", 200, 400),
                ("1000/s", 1000, 1000), ("burst", 0, 2000)]
    return [("confirmed", -1, 2000), ("submit", -1, 2000), ("200/s", 200, 2000),
            ("1000/s", 1000, 5000), ("burst", 0, 10000)]


class Topics:
    """The run's topics, made with kafka-python's admin client and all deleted at the end."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","),
                                      client_id="bench-kafka-clients")
        self.made: list[str] = []
        self.producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")

    def new(self, name: str, prime: bool) -> str:
        """A topic with a leader for every partition; ``prime``: one seq -1 message on each."""
        from kafka.admin import NewTopic
        self.admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        self.made.append(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # metadata with a leader for every partition
            found = self.admin.describe_topics([name])
            parts = found[0].get("partitions") or [] if found else []
            if len(parts) == PARTITIONS and all(p.get("leader_id", -1) >= 0 for p in parts):
                if prime:
                    for part in range(PARTITIONS):
                        self.producer.send(name, value=b"-1:0:", partition=part)
                    self.producer.flush(timeout=30)
                return name
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} not ready")

    def delete_all(self) -> None:
        if self.made:
            try:
                self.admin.delete_topics(self.made, timeout_ms=30000)
            except Exception as exc:  # reported, the results are still written
                print(f"deleting the bench topics failed: {exc}", file=sys.stderr)
        self.producer.close(timeout=5)
        self.admin.close()


def role(*args: str) -> list[str]:
    return [sys.executable, ROLES, *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            out: dict[str, Any] = json.loads(line)
            return out
    raise RuntimeError(f"no result in: {text[-2000:]}")


def run_pair(client: str, topic: str, rate: float, n: int) -> dict[str, Any]:
    """A consumer (READY once it owns every partition), then the producer; both results."""
    group = f"{topic}.g"
    timeout = (n / rate if rate > 0 else 30) + 60
    errlog = tempfile.TemporaryFile(mode="w+")
    cons = subprocess.Popen(role("consume", "--client", client, "--topic", topic, "--group", group,
                                 "-n", str(n), "--partitions", str(PARTITIONS),
                                 "--timeout", str(timeout)),
                            env=env(), stdout=subprocess.PIPE, stderr=errlog, text=True)
    assert cons.stdout is not None
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert cons.stdout is not None
        for line in cons.stdout:
            lines.append(line)
            if line.startswith("READY"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    def stderr() -> str:
        errlog.seek(0)
        return errlog.read()[-2000:]

    if not ready.wait(90):
        cons.kill()
        raise RuntimeError(f"{client} consumer not ready: {stderr()}")
    prod = subprocess.run(role("produce", "--client", client, "--topic", topic, "-n", str(n),
                               "--rate", str(rate)),
                          env=env(), capture_output=True, text=True, timeout=timeout + 60)
    if prod.returncode:
        cons.kill()
        raise RuntimeError(f"{client} producer failed: {prod.stderr[-2000:]}")
    try:
        cons.wait(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        cons.kill()
        raise
    reader.join(10)  # the one reader of its stdout: the result line is the last one
    if cons.returncode:
        raise RuntimeError(f"{client} consumer failed: {stderr()}")
    return {"producer": last_json(prod.stdout), "consumer": last_json("".join(lines))}


def run_confirmed(client: str, topic: str, n: int, what: str = "confirmed") -> dict[str, Any]:
    proc = subprocess.run(role(what, "--client", client, "--topic", topic, "-n", str(n)),
                          env=env(), capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(f"{client} confirmed producer failed: {proc.stderr[-2000:]}")
    return {"producer": last_json(proc.stdout)}


METRICS = {  # phase -> (row label, side, key)
    "confirmed": [("confirmed sends/s, one thread", "producer", "per_s"),
                  ("confirmed send p50 ms", "producer", "ack_p50_ms"),
                  ("confirmed send p99 ms", "producer", "ack_p99_ms")],
    "submit": [("Client.submit() confirmed/s, one thread", "producer", "per_s"),
               ("Client.submit() p50 ms", "producer", "ack_p50_ms"),
               ("Client.submit() p99 ms", "producer", "ack_p99_ms")],
    "200/s": [("200/s produce->consume p50 ms", "consumer", "p50_ms"),
              ("200/s produce->consume p99 ms", "consumer", "p99_ms")],
    "1000/s": [("1000/s produce->consume p50 ms", "consumer", "p50_ms"),
               ("1000/s produce->consume p99 ms", "consumer", "p99_ms"),
               ("1000/s producer CPU s/10k", "producer", "cpu_s_per_10k"),
               ("1000/s consumer CPU s/10k", "consumer", "cpu_s_per_10k")],
    "burst": [("burst producer CPU s/10k", "producer", "cpu_s_per_10k"),
              ("burst consumer CPU s/10k", "consumer", "cpu_s_per_10k"),
              ("burst producer msgs/s", "producer", "achieved_per_s")],
}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for phase, metrics in METRICS.items():
        for label, side, key in metrics:
            row: dict[str, Any] = {"metric": label}
            for client in CLIENTS:
                vals = [r[side][key] for r in runs if r["phase"] == phase and r["client"] == client]
                row[client] = statistics.median(vals) if vals else None
                row[f"{client} runs"] = [round(v, 4) for v in vals]
            a, b = row["kafka-python"], row["confluent"]
            row["confluent / kafka-python"] = b / a if a and b is not None else None
            rows.append(row)
    return rows


def checks(runs: list[dict[str, Any]]) -> list[str]:
    """Every message acknowledged and received once."""
    bad = []
    for r in runs:
        name = f"{r['phase']} {r['client']} rep {r['rep']}"
        if r["producer"].get("failed"):
            bad.append(f"{name}: {r['producer']['failed']} not acknowledged")
        cons = r.get("consumer")
        if cons and (cons["received"] != cons["n"] or cons["duplicates"]):
            bad.append(f"{name}: received {cons['received']}/{cons['n']}, {cons['duplicates']} dup")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    ap.add_argument("--out", default="kafka-clients")
    a = ap.parse_args()
    if importlib.util.find_spec("confluent_kafka") is None:
        print("confluent-kafka not installed, skipped")
        return 0
    import confluent_kafka
    import kafka

    from yadtq.settings import Settings
    bootstrap = Settings.from_env().kafka_bootstrap
    run_id = uuid.uuid4().hex[:8]
    topics = Topics(bootstrap)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for rep in range(a.reps):
            order = CLIENTS if rep % 2 == 0 else CLIENTS[::-1]
            for phase, rate, n in phases(a.quick):
                for client in order:
                    slug = phase.replace("/", "") + "-" + client.replace("-", "")
                    topic = topics.new(f"yadtq.bench-kc-{run_id}-{slug}-{rep}", prime=rate >= 0)
                    load0 = os.getloadavg()
                    if phase == "submit":  # YADTQ's client makes the dead-letter topic too
                        topics.made.append(f"{topic}.dlq")
                    res = (run_confirmed(client, topic, n, phase) if rate < 0
                           else run_pair(client, topic, rate, n))
                    res.update(rep=rep, phase=phase, client=client, rate=rate, n=n,
                               load_before=load0, load_after=os.getloadavg())
                    runs.append(res)
                    side = res.get("consumer") or res["producer"]
                    print(f"rep {rep} {phase:9} {client:12} "
                          + " ".join(f"{k}={v:.3f}" for k, v in side.items()
                                     if isinstance(v, float))
                          + f"  load {load0[0]:.2f}", flush=True)
    finally:
        topics.delete_all()
    rows = summarize(runs)
    loads = [r["load_before"][0] for r in runs] + [r["load_after"][0] for r in runs]
    result = {"machine": machine(), "versions": {
        "kafka-python": kafka.__version__, "confluent-kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0]},
        "reps": a.reps, "quick": a.quick, "seconds": time.monotonic() - started,
        "loadavg_1m": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        "note": "shared 2-core machine: another engineer's tests ran meanwhile; A/B alternate",
        "problems": checks(runs), "summary": rows, "runs": runs}
    path = write_result(a.out, result)
    print(f"\n{'metric':34} {'kafka-python':>12} {'confluent':>12} {'ratio':>7}")
    for row in rows:
        ratio = row["confluent / kafka-python"]
        print(f"{row['metric']:34} {row['kafka-python']:12.3f} {row['confluent']:12.3f} "
              f"{ratio if ratio is not None else float('nan'):7.2f}")
    print(f"load average (1 min) {result['loadavg_1m']}; problems: {result['problems'] or 'none'}")
    print(f"wrote {path}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
