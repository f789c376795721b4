"""The phases, identical for every system. Times are wall-clock ``time.time()`` of one machine.

Per system: once, a warm-up (start 2 workers, submit tasks until both workers ran some, then
``warm`` more; stop). Then in each repeat, in this order:
- cold drain: workers stopped; N tasks enqueued (the system's bulk API if it has one) -> enqueue/s;
  then 2 workers start; tasks/s = N / (first completion -> last completion)
  (and N / (worker start -> last completion), startup included).
- ready: the same workers keep running; warm-up tasks until both ran some, then ``warm`` more.
- drain (warm): every process of the running, warm workers is stopped (SIGSTOP); M tasks are
  enqueued with the bulk API (for at most ``freeze_max`` seconds, under every system's group or
  heartbeat timeout); the workers continue (SIGCONT); drain tasks/s = M / (first completion ->
  last completion). The issue's definition: tasks already queued, workers warm.
- burst: N tasks, one submit call per task from this process, while the warm workers run;
  tasks/s = N / (first submit -> last completion); submit/s = N / submit loop time.
- offered rate R: R tasks/s for S seconds, one submit per task on a fixed schedule;
  latency = completion time recorded by the task - time just before its submit call.
  Not run (reported "saturated") when R > 1.5 x the system's capacity in this repeat
  (max of its drain and burst tasks/s): its latency would only measure a growing backlog.
- exactly-N, every phase: per task, completions counted by the task itself (0 = lost, >1 =
  duplicated) and the result the system stored read back and compared with a + b.
- CPU per 1,000 tasks: workers (process trees, reaped children included) and the submitter
  (this process, during its submit loop), from ``/proc/<pid>/stat``.

I/O phase (``bench_peers.py --io``, instead of the above): the task sleeps 10 ms (a blocking
``time.sleep``, ``record.sleep_add``; YADTQ-aio: ``await asyncio.sleep``) and then does what the
others' task does, except that it records its completion as one line appended to a file
(``--io-record file``, the default since 2026-12-08; ``redis``: as the other phases); each
system's workers run at its I/O setting (``io_config`` of its module: threads where it has them,
64 per process). Once, the warm-up; then in each repeat: ready (as
above, the workers started), then the I/O drain: the warm drain above with the sleeping task
(workers stopped while M tasks are bulk-enqueued, then continued; tasks/s = M / (first completion
-> last completion)), with the same exactly-N check, except that a result not stored yet when
the last completion is counted is awaited up to ``result_grace`` (2 s; counted as ``late_results``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.common import percentile, self_cpu
from bench.peers.base import Item, Peer, Recorder
from bench.peers.procs import frozen, tree_cpu


class PhaseError(RuntimeError):
    def __init__(self, message: str, check: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.check = check  # lost / duplicated / wrong counts even when the phase did not finish


@dataclass
class Sizes:
    burst: int
    drain: int
    rates: tuple[int, ...]
    rate_seconds: float
    warm: int
    wait: float  # longest wait for a phase's completions (s)
    warm_drain: int = 20_000
    freeze_max: float = 5.0  # longest SIGSTOP of warm workers while the warm drain is enqueued (s)
    result_grace: float = 0.0  # check(): how long results missing at the first read are awaited (s)


def _items(phase: str, n: int) -> list[Item]:
    return [(i, 1, f"{phase}:{i}") for i in range(n)]


def _ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 2) if values else float("nan")


def check(peer: Peer, rec: Recorder, items: list[Item], handles: list[Any],
          grace: float = 0.0) -> dict[str, int]:
    """Lost / duplicated / wrong-result counts. A task records its completion before it returns and
    the system stores its result after: with ``grace`` > 0 (the I/O phase) results missing at the
    first read are read again for up to ``grace`` seconds; ``late_results`` counts those that came."""
    counts = rec.counts([k for _, _, k in items])
    stored = peer.results(handles)
    missing = [i for i, r in enumerate(stored) if r is None]
    first_missing, deadline = len(missing), time.monotonic() + grace
    while missing and time.monotonic() < deadline:
        time.sleep(0.05)
        for i, r in zip(missing, peer.results([handles[i] for i in missing]), strict=True):
            stored[i] = r
        missing = [i for i in missing if stored[i] is None]
    out = {"tasks": len(items), "lost": sum(c == 0 for c in counts), "dup": sum(c > 1 for c in counts),
           "wrong_result": sum(r is None or int(r) != a + b
                               for r, (a, b, _) in zip(stored, items, strict=True))}
    if grace:
        out["late_results"] = first_missing - len(missing)
    return out


def _wait(peer: Peer, rec: Recorder, phase: str, n: int, timeout: float,
          checked: tuple[list[Item], list[Any]] | None = None) -> None:
    """Wait for ``n`` completions; on failure the error carries the exactly-N check of ``checked``."""
    if not rec.wait(phase, n, timeout, peer.alive):
        state = "workers exited" if not peer.alive() else f"timed out after {timeout:.0f} s"
        result = None
        if checked is not None:
            try:
                result = check(peer, rec, *checked)
            except Exception:  # the services may be what failed
                result = None
        raise PhaseError(f"{phase}: {rec.completed(phase)} of {n} completed ({state})", result)


def start_ready(peer: Peer, rec: Recorder, phase: str, sz: Sizes, start: bool = True) -> dict[str, Any]:
    """Start the workers (unless running), wait until both ran tasks, then run ``warm`` more."""
    t0 = time.time()
    if start:
        peer.start()
    peer.before_ready(60.0)
    deadline, sent = time.monotonic() + 60.0, 0
    while True:
        for it in _items(phase, sent + 10)[sent:]:
            peer.submit(it)
        peer.flush()
        sent += 10
        _wait(peer, rec, phase, sent, max(1.0, deadline - time.monotonic()))
        if rec.workers_seen(phase, peer.identity) >= 2:
            break
        if time.monotonic() > deadline:
            raise PhaseError(f"{peer.name}: only one worker ran tasks after 60 s")
    ready = time.time() - t0
    warm = [(i, 1, f"{phase}w:{i}") for i in range(sz.warm)]
    handles = peer.submit_bulk(warm)
    peer.flush()
    _wait(peer, rec, phase + "w", sz.warm, sz.wait, (warm, handles))
    return {"ready_s": round(ready, 2), "warm_tasks": sent + sz.warm,
            "check": check(peer, rec, warm, handles, sz.result_grace)}


def burst(peer: Peer, rec: Recorder, phase: str, sz: Sizes) -> dict[str, Any]:
    items = _items(phase, sz.burst)
    roots = peer.worker_pids()
    w0, s0 = tree_cpu(roots), self_cpu()
    t0 = time.time()
    handles = []
    for it in items:
        handles.append(peer.submit(it))
        if time.time() - t0 > sz.wait:
            break
    peer.flush()
    t_sub, s1 = time.time(), self_cpu()
    n = len(handles)
    items = items[:n]
    _wait(peer, rec, phase, n, sz.wait, (items, handles))
    w1 = tree_cpu(roots)
    last = max(d for d in rec.done([k for _, _, k in items]) if d is not None)
    out = {"tasks": n, "seconds": round(last - t0, 3), "tasks_per_s": round(n / (last - t0), 1),
           "submit_per_s": round(n / (t_sub - t0), 1),
           "cpu_workers_per_1000": round((w1 - w0) / n * 1000, 3),
           "cpu_submitter_per_1000": round((s1 - s0) / n * 1000, 3)}
    out["cpu_per_1000"] = round(out["cpu_workers_per_1000"] + out["cpu_submitter_per_1000"], 3)
    if hasattr(peer, "visible_latencies"):
        vis = peer.visible_latencies(handles)
        out["visible_p50_ms"], out["visible_p99_ms"] = _ms(vis, 50), _ms(vis, 99)
    out["check"] = check(peer, rec, items, handles)
    return out


def offered(peer: Peer, rec: Recorder, phase: str, rate: int, sz: Sizes) -> dict[str, Any]:
    items = _items(phase, int(rate * sz.rate_seconds))
    handles, sent_at = [], []
    t0 = time.perf_counter()
    for i, it in enumerate(items):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif time.perf_counter() - t0 > 3 * sz.rate_seconds:
            break  # the system cannot take submits at this rate: bounded
        sent_at.append(time.time())
        handles.append(peer.submit(it))
    peer.flush()
    elapsed = time.perf_counter() - t0
    n = len(handles)
    items = items[:n]
    _wait(peer, rec, phase, n, sz.wait, (items, handles))
    done = rec.done([k for _, _, k in items])
    lat = [d - s for d, s in zip(done, sent_at, strict=True) if d is not None]
    out = {"offered_per_s": rate, "tasks": n, "achieved_per_s": round(n / elapsed, 1),
           "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99), "max_ms": _ms(lat, 100)}
    if hasattr(peer, "visible_latencies"):
        vis = peer.visible_latencies(handles)
        out["visible_p50_ms"], out["visible_p99_ms"] = _ms(vis, 50), _ms(vis, 99)
    out["check"] = check(peer, rec, items, handles)
    return out


def _enqueue(peer: Peer, items: list[Item], limit: float) -> tuple[list[Any], float, dict[str, float]]:
    """Bulk-enqueue ``items`` 500 per call for at most ``limit`` seconds: the handles, the time
    it ended, and its rate and CPU per 1,000 tasks."""
    s0, t0 = self_cpu(), time.time()
    handles: list[Any] = []
    for i in range(0, len(items), 500):
        handles += peer.submit_bulk(items[i:i + 500])
        if time.time() - t0 > limit:
            break
    peer.flush()
    t_enq, s1 = time.time(), self_cpu()
    n = max(1, len(handles))
    return handles, t_enq, {"enqueue_per_s": round(n / (t_enq - t0), 1),
                            "enqueue_seconds": round(t_enq - t0, 2),
                            "cpu_enqueue_per_1000": round((s1 - s0) / n * 1000, 3)}


def drain(peer: Peer, rec: Recorder, phase: str, sz: Sizes) -> dict[str, Any]:
    """Workers must be stopped."""
    items = _items(phase, sz.drain)
    handles, _, enq = _enqueue(peer, items, sz.wait)
    n = len(handles)
    items = items[:n]
    peer.start()
    t_start = time.time()
    _wait(peer, rec, phase, 1, 90.0, (items, handles))
    roots = peer.worker_pids()
    c_first, w_first = rec.completed(phase), tree_cpu(roots)
    _wait(peer, rec, phase, n, sz.wait, (items, handles))
    w_last = tree_cpu(roots)
    done = [d for d in rec.done([k for _, _, k in items]) if d is not None]
    first, last = min(done), max(done)
    return {"tasks": n, **enq,
            "drain_per_s": round(n / max(last - first, 1e-6), 1),
            "drain_from_start_per_s": round(n / (last - t_start), 1),
            "first_completion_after_start_s": round(first - t_start, 2),
            "cpu_workers_per_1000": round((w_last - w_first) / max(1, n - c_first) * 1000, 3),
            "check": check(peer, rec, items, handles)}


def warm_drain(peer: Peer, rec: Recorder, phase: str, sz: Sizes) -> dict[str, Any]:
    """Workers running and warm (after ``start_ready``)."""
    items = _items(phase, sz.warm_drain)
    roots = peer.worker_pids()
    with frozen(roots):
        handles, t_enq, enq = _enqueue(peer, items, sz.freeze_max)
        w0 = tree_cpu(roots)
    n = len(handles)
    items = items[:n]
    _wait(peer, rec, phase, n, sz.wait, (items, handles))
    w1 = tree_cpu(roots)
    done = [d for d in rec.done([k for _, _, k in items]) if d is not None]
    first, last = min(done), max(done)
    return {"tasks": n, **enq, "frozen_s": enq["enqueue_seconds"],
            "drain_per_s": round(n / max(last - first, 1e-6), 1),
            "first_completion_after_thaw_s": round(first - t_enq, 3),
            "cpu_workers_per_1000": round((w1 - w0) / n * 1000, 3),
            "check": check(peer, rec, items, handles, sz.result_grace)}
