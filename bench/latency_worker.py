"""The worker side of ``bench/bench_latency.py``: its task and its timestamps.

Imported by the benchmark's workers as their task module (``YADTQ_TASKS``), and only there: it
registers ``LATADD`` and, with ``YADTQ_BENCH_HOPS_DIR`` set, wraps ``TaskConsumer.poll``,
``RedisStore.start_ex`` and ``RedisStore.finish`` to note when each returned per task, writing them
to a file in that folder when the worker exits. The normal path has none of this.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from yadtq import task

HOPS_DIR = "YADTQ_BENCH_HOPS_DIR"
_runs: dict[str, list[float]] = {}  # worker side: seq -> run start times (one per run)
_seen: dict[str, dict[str, float]] = {}  # worker side: task id -> {append, poll, started, outcome}


@task("LATADD", max_attempts=1)
def latadd(a: int, b: int, seq: str) -> int:
    """a + b, noting when it ran (bench/bench_latency.py)."""
    _runs.setdefault(seq, []).append(time.time())
    return a + b


def _hook_confluent() -> None:
    """The same for ``ConfluentConsumer.poll`` (when confluent-kafka is installed): its librdkafka
    consumer is wrapped for the call, so the messages it returned are seen with their timestamps."""
    try:
        from yadtq.broker_confluent import ConfluentConsumer
    except ImportError:
        return
    original = ConfluentConsumer.poll

    class Spy:
        def __init__(self, real: Any) -> None:
            self.real, self.messages = real, []  # type: ignore[var-annotated]

        def poll(self, timeout: float) -> Any:
            m = self.real.poll(timeout)
            if m is not None:
                self.messages.append(m)
            return m

        def consume(self, n: int, timeout: float) -> Any:
            got = self.real.consume(n, timeout)
            self.messages.extend(got)
            return got

    def poll(self: Any, timeout_ms: int, max_records: int | None = None) -> Any:
        real = self._c
        self._c = spy = Spy(real)
        try:
            out = original(self, timeout_ms, max_records)
        finally:
            self._c = real
        now = time.time()
        for m in spy.messages:
            if m.error() is not None:
                continue
            try:
                tid = json.loads(m.value())["id"]
            except (ValueError, KeyError, TypeError):
                continue
            kind, stamp = m.timestamp()
            _seen.setdefault(tid, {}).update(poll=now, append=stamp / 1000,  # types as kafka-python's
                                             append_type={2: 1, 1: 0}.get(kind, -1))
        return out

    ConfluentConsumer.poll = poll  # type: ignore[method-assign]


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

    start, finish = RedisStore.start_ex, RedisStore.finish

    def timed_start(self: RedisStore, worker_id: str, envelopes: Any, *rest: Any) -> Any:
        res = start(self, worker_id, envelopes, *rest)  # what the runner calls (start_ex)
        now = time.time()
        for env in envelopes:
            _seen.setdefault(env.id, {})["started"] = now
        return res

    def timed_finish(self: RedisStore, worker_id: str, outcomes: Any, *rest: Any) -> list[bool]:
        res = finish(self, worker_id, outcomes, *rest)
        now = time.time()
        for o in outcomes:
            _seen.setdefault(o.task_id, {})["outcome"] = now
        return res

    broker.TaskConsumer.poll = poll  # type: ignore[method-assign]
    _hook_confluent()
    RedisStore.start_ex = timed_start  # type: ignore[method-assign]
    RedisStore.finish = timed_finish  # type: ignore[method-assign]

    def dump() -> None:
        path = Path(out_dir) / f"hops-{os.getpid()}.json"
        path.write_text(json.dumps({"tasks": _seen, "runs": _runs}))

    atexit.register(dump)


TRY = "YADTQ_BENCH_TRY"
"""A change to try, as JSON (``--try``): {"consumer": {KafkaConsumer keyword: value},
"producer": {KafkaProducer keyword: value}, "async_linger_ms": ms, "busy_linger": s,
"switchinterval": s (the workers), "gc_freeze": true (the workers, after start-up)}."""


def apply_try(spec: dict[str, Any], side: str) -> list[tuple[Any, str, Any]]:
    """Apply ``spec``'s changes for ``side`` ("worker" or "client"); what to restore."""
    from yadtq import batcher, broker, client
    undo: list[tuple[Any, str, Any]] = []

    def setattr_(obj: Any, name: str, value: Any) -> None:
        undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def with_kwargs(cls: Any, extra: dict[str, Any]) -> Any:
        def make(*args: Any, **kwargs: Any) -> Any:
            return cls(*args, **{**kwargs, **extra})
        return make

    if side == "worker":
        if spec.get("consumer"):
            setattr_(broker, "KafkaConsumer", with_kwargs(getattr(broker, "KafkaConsumer"), spec["consumer"]))
        if spec.get("switchinterval"):
            sys.setswitchinterval(float(spec["switchinterval"]))
        if spec.get("gc_freeze"):
            import gc

            from worker.worker import Worker
            run = Worker.run

            def frozen_run(self: Any, *args: Any, **kwargs: Any) -> Any:
                gc.freeze()
                return run(self, *args, **kwargs)
            setattr_(Worker, "run", frozen_run)
    else:
        if spec.get("producer"):
            setattr_(broker, "KafkaProducer", with_kwargs(getattr(broker, "KafkaProducer"), spec["producer"]))
        if "async_linger_ms" in spec:
            setattr_(client, "ASYNC_LINGER_MS", int(spec["async_linger_ms"]))
        if "busy_linger" in spec:
            setattr_(batcher, "BUSY_LINGER_SECONDS", float(spec["busy_linger"]))
    return undo


if os.environ.get(HOPS_DIR) and __name__ != "__main__":
    _install_hooks(os.environ[HOPS_DIR])
    apply_try(json.loads(os.environ.get(TRY) or "{}"), "worker")
