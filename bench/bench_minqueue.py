"""The least a task queue on Kafka and Redis does per I/O task, written as plainly as it can be
(issue 12): how fast the peers' I/O drain could be on this machine with kafka-python and redis-py
if the queue did nothing it did not have to.

Each of 2 processes (as the 2 workers) is one thread running one asyncio loop (plus kafka-python's
own network thread). It polls one consumer group on fresh 12-partition topics without waiting,
marks the polled tasks in-progress in Redis (one pipelined round trip per poll), runs each as a
coroutine (``await asyncio.sleep(0.01)``, then the peers' record: ``bench/peers/record.py``, as
YADTQ's ``PBASLEEP``), writes the outcomes of each turn of the loop in one pipelined round trip,
and commits per partition up to the lowest unfinished offset, every second and at the end. Up to
1,000 tasks in flight per process.

Two variants (``--variants``): ``plain`` (JSON messages, plain ``HSET`` calls), and ``yadtq-data``:
YADTQ's own data work in the same single thread (its wire format, produced by
``Client.submit_many``, decoded and validated by its registry; its START and FINISH scripts,
``RedisStore.start_ex`` / ``finish``, one call per poll and per turn of the loop).

What both leave out, that a queue meeting YADTQ's guarantees must do: history and results kept in
the plain one, retries, time limits, cancel, heartbeats, priorities, metrics, a worker that
survives a dead broker, rebalance handling (the group is joined before the first message is
produced). So their tasks/s is a ceiling, not a competitor.

Measured as the peers' drain is: the 2 processes join the group and are stopped (SIGSTOP), the
tasks are produced (with their ``queued`` record), the processes continue (SIGCONT); tasks/s =
N / (first completion -> last completion), from the records' own times. CPU per task: the
processes', Redis's and Kafka's (when ``make services`` started them).

    .venv/bin/python bench/bench_minqueue.py --tasks 20000   # results: bench/results/minqueue.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.peers.yadtq_peer  # noqa: F401 - registers PBASLEEP (here and in the spawned children)
from bench.common import fresh_settings, machine, proc_cpu, service_pids, write_result
from bench.peers import record
from bench.peers.base import FileRecorder, Recorder
from yadtq import Client, Settings, TaskState

INFLIGHT = 1000
COMMIT_EVERY = 1.0  # seconds


def _worker(env: dict[str, str], yadtq_data: bool, k: int, owned: Any, go: Any, stop: Any,
            out: Any) -> None:
    """One process (``env``: the run's YADTQ settings): poll, start, run, finish, commit, until
    ``stop`` is set. With ``yadtq_data``, YADTQ's own data work: its wire format decoded and
    validated by its registry, its START and FINISH scripts (``RedisStore``), one call per poll and
    per turn.
    Kafka through YADTQ's consumer adapter (``yadtq.broker.TaskConsumer``, with its work-arounds
    for kafka-python 3.0.12, ``yadtq.kafka_conn``): with a bare ``KafkaConsumer`` the members did
    not join within 60 s on a fresh broker, and some runs ended with tasks never delivered."""
    import redis

    from yadtq.broker import TaskConsumer
    from yadtq.errors import YadtqError

    os.environ.update(env)
    settings = Settings.from_env()
    prefix = settings.key_prefix + ":minqueue:"
    unfinished: dict[int, set[int]] = {}  # partition -> offsets polled, not finished
    highest: dict[int, int] = {}

    def revoked(partitions: set[int]) -> None:  # not ours to commit any more
        for p in partitions:
            unfinished.pop(p, None)
            highest.pop(p, None)

    consumer = TaskConsumer(settings, f"minqueue-{k}", on_revoked=revoked)
    state = redis.Redis.from_url(settings.redis_url)

    def parse(value: bytes) -> tuple[Any, str, list[Any]]:  # -> (what start takes, id, args)
        body = json.loads(value)
        return body["id"], body["id"], body["args"]

    def start(taken: list[Any]) -> None:
        pipe = state.pipeline(transaction=False)
        for tid in taken:
            pipe.hset(prefix + tid, mapping={"state": "in-progress", "started_at": time.time()})
        pipe.execute()

    def finish(batch: list[tuple[str, int]]) -> None:
        pipe = state.pipeline(transaction=False)
        for tid, value in batch:
            pipe.hset(prefix + tid, mapping={"state": "completed", "result": value,
                                             "finished_at": time.time()})
        pipe.execute()

    if yadtq_data:
        from yadtq import default_registry
        from yadtq.models import Outcome
        from yadtq.store import RedisStore
        from yadtq.wire import decode
        store = RedisStore(settings)

        def parse(value: bytes) -> tuple[Any, str, list[Any]]:
            e = decode(value)
            _spec, args = default_registry.validate(e.name, e.args)
            return e, e.id, list(args)

        def start(taken: list[Any]) -> None:
            store.start_ex("minqueue", taken)

        def finish(batch: list[tuple[str, int]]) -> None:
            store.finish("minqueue", [Outcome(tid, 1, TaskState.COMPLETED, result=value)
                                      for tid, value in batch])

    while not go.is_set():  # join before the tasks exist, as warm workers are: until the
        consumer.poll(timeout_ms=50)  # members own every partition between them
        owned.value = len(consumer.assignment())
    c0 = time.process_time()

    async def main() -> None:
        outcomes: list[tuple[Any, int, str, int]] = []
        flush_due = False
        last_commit = time.monotonic()
        loop = asyncio.get_running_loop()

        def flush() -> None:  # the outcomes of one turn of the loop, then they are finished
            nonlocal flush_due, outcomes
            flush_due = False
            batch, outcomes = outcomes, []
            finish([(tid, value) for _, _, tid, value in batch])
            for tp, offset, _, _ in batch:
                unfinished.get(tp, set()).discard(offset)

        async def run(tp: Any, offset: int, tid: str, args: list[Any]) -> None:
            nonlocal flush_due
            await asyncio.sleep(record.IO_SLEEP)
            outcomes.append((tp, offset, tid, record.add(*args)))
            if not flush_due:
                flush_due = True
                loop.call_soon(flush)

        def commit() -> None:
            offsets = {tp: min(left) if left else highest[tp] + 1 for tp, left in unfinished.items()}
            if offsets:
                try:
                    consumer.commit(offsets)
                except YadtqError as exc:  # a rebalance: the next commit has the offsets again
                    print(f"minqueue: commit failed: {exc}", file=sys.stderr)

        while not stop.is_set():
            room = INFLIGHT - sum(len(v) for v in unfinished.values())
            polled = consumer.poll(timeout_ms=0, max_records=room) if room > 0 else []
            if polled:
                taken, todo = [], []
                for m in polled:
                    item, tid, args = parse(m.value)
                    taken.append(item)
                    unfinished.setdefault(m.partition, set()).add(m.offset)
                    highest[m.partition] = max(m.offset, highest.get(m.partition, -1))
                    todo.append((m.partition, m.offset, tid, args))
                start(taken)
                for job in todo:
                    loop.create_task(run(*job))
            if time.monotonic() - last_commit >= COMMIT_EVERY:
                commit()
                last_commit = time.monotonic()
            await asyncio.sleep(0 if polled else 0.001)
        commit()

    try:
        asyncio.run(main())
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")  # the parent says what failed, not "Empty"
        raise
    out.put(time.process_time() - c0)
    consumer.close()


def _produce(settings: Settings, prefix: str, tasks: int) -> None:
    """The plain variant's tasks: a JSON message and a ``queued`` hash each."""
    import redis
    from kafka import KafkaProducer

    state = redis.Redis.from_url(settings.redis_url)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                             linger_ms=5, batch_size=256 * 1024)
    pipe = state.pipeline(transaction=False)
    for i in range(tasks):
        tid = uuid.uuid4().hex
        pipe.hset(prefix + tid, mapping={"state": "queued", "created_at": time.time()})
        producer.send(settings.topic, json.dumps({"id": tid, "args": [i, 1, f"io:{i}"]}).encode(),
                      key=tid.encode())
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    producer.flush()
    producer.close()


def run(tasks: int, procs: int = 2, partitions: int = 12, yadtq_data: bool = False,
        record_file: bool = True) -> dict[str, Any]:
    from kafka.admin import KafkaAdminClient

    from yadtq.broker import ensure_topics
    settings = fresh_settings("minqueue", partitions)
    base_url = re.sub(r"/\d*$", "", settings.redis_url)
    os.environ.setdefault("PEERS_REDIS", base_url)
    tag = uuid.uuid4().hex[:8]
    os.environ["PEERS_NS"] = ns = f"bench-minqueue-{tag}"
    prefix = settings.key_prefix + ":minqueue:"
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    keys = [f"io:{i}" for i in range(tasks)]
    path = record.file_for(ns)
    if record_file:  # the spawned children inherit it (bench/peers/record.py)
        os.environ["PEERS_RECORD_FILE"] = path
    else:
        os.environ.pop("PEERS_RECORD_FILE", None)
    rec = FileRecorder(path) if record_file else Recorder(ns)
    import redis
    state = redis.Redis.from_url(settings.redis_url)
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    go = ctx.Event()
    owned = [ctx.Value("i", 0) for _ in range(procs)]
    children = [ctx.Process(target=_worker, args=(settings.to_env(), yadtq_data, k, owned[k], go,
                                                  stop, out))
                for k in range(procs)]
    try:
        for c in children:
            c.start()
        deadline = time.monotonic() + 60
        settled, held = 0, [0] * procs  # checks in a row with the same share, each member some
        while settled < 20:
            if time.monotonic() > deadline:
                raise RuntimeError("the consumers did not share the partitions within 60 s")
            now = [v.value for v in owned]
            steady = now == held and sum(now) >= partitions and min(now) > 0
            settled, held = (settled + 1 if steady else 0), now
            time.sleep(0.05)
        go.set()
        for c in children:  # the tasks are all queued before the drain (as the peers' drain)
            os.kill(c.pid, signal.SIGSTOP)
        if yadtq_data:
            client = Client(settings)
            try:
                for i in range(0, tasks, 500):
                    client.submit_many([("PBASLEEP", (j, 1, f"io:{j}"))
                                        for j in range(i, min(tasks, i + 500))])
            finally:
                client.close()
        else:
            _produce(settings, prefix, tasks)
        svc = service_pids()
        s0 = {k: proc_cpu(p) for k, p in svc.items()}
        for c in children:
            os.kill(c.pid, signal.SIGCONT)
        deadline = time.monotonic() + max(120.0, tasks / 200)
        if not rec.wait("io", tasks, deadline - time.monotonic()):
            raise RuntimeError(f"only {rec.completed('io')} of {tasks} done in time")
        s1 = {k: proc_cpu(p) for k, p in svc.items()}
        stop.set()
        ends = [out.get(timeout=30) for _ in children]
        if any(isinstance(e, str) for e in ends):
            raise RuntimeError(f"a process failed: {[e for e in ends if isinstance(e, str)]}")
        cpu = sum(ends)
        done = [t for t in rec.done(keys) if t is not None]
        counts = rec.counts(keys)
        completed = None
        if yadtq_data:  # every START and FINISH took: the scripts did their whole work
            client = Client(settings)
            try:
                completed = client.counts().get(TaskState.COMPLETED, 0)
            finally:
                client.close()
            if completed != tasks:
                raise RuntimeError(f"{completed} of {tasks} tasks completed in YADTQ's records")
    finally:
        stop.set()
        for c in children:
            c.join(30)
            if c.is_alive():
                c.kill()
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(settings.topic)])
        admin.close()
        if yadtq_data:
            client = Client(settings)
            try:
                client.reset()
            finally:
                client.close()
        for key in state.scan_iter(prefix + "*", count=1000):
            state.delete(key)
        rec.cleanup()
        os.environ.pop("PEERS_RECORD_FILE", None)
    span = max(done) - min(done)
    result: dict[str, Any] = {
        "tasks": tasks, "processes": procs, "partitions": partitions, "inflight_per_process":
        INFLIGHT, "tasks_per_s": round(tasks / span) if span > 0 else None,
        "record": "file" if record_file else "redis", "completed_in_yadtq": completed,
        "lost": counts.count(0), "duplicated": sum(c - 1 for c in counts if c > 1),
        "process_cpu_us_per_task": round(cpu / tasks * 1e6, 1)}
    for k in s0:  # the services' CPU from the end of the enqueue to the last completion
        result[f"{k}_cpu_us_per_task"] = round((s1[k] - s0[k]) / tasks * 1e6, 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="minqueue")
    ap.add_argument("--io-record", choices=("file", "redis"), default="file",
                    help="the task's record: a line appended to a file, or its Redis call "
                         "(bench/peers/record.py)")
    ap.add_argument("--variants", default="plain,yadtq-data",
                    help="plain: JSON and HSETs; yadtq-data: YADTQ's wire format, registry and scripts")
    ns = ap.parse_args()
    runs = []
    for k, variant in itertools.product(range(ns.repeats), ns.variants.split(",")):
        r = run(ns.tasks, yadtq_data=variant == "yadtq-data", record_file=ns.io_record == "file")
        r["variant"] = variant
        runs.append(r)
        print(f"[{k + 1}/{ns.repeats}] {variant}: the least queue on Kafka + Redis, 2 processes: "
              f"{r['tasks_per_s']} tasks/s, {r['process_cpu_us_per_task']} µs CPU per task in them"
              + "".join(f", {s} {r[s + '_cpu_us_per_task']} µs" for s in ("redis", "kafka")
                        if s + "_cpu_us_per_task" in r)
              + f"; lost {r['lost']}, duplicated {r['duplicated']}", flush=True)
    path = write_result(ns.out, {"benchmark": "the least queue on Kafka + Redis (issue 12)",
                                 "machine": machine(), "runs": runs})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
