"""How the ``yadtq`` CLI prints tasks, workers and the reconciler's repairs: aligned text tables
and ``--json``.

Every value that comes from a task or a worker goes through ``yadtq.text`` (terminal-safe); JSON
output keeps ``ensure_ascii``, so control characters stay escaped there too. A task whose stored
record is malformed (``Task.problem``) shows the state ``invalid`` and its problem, in text and
JSON alike; its other fields are best effort.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Any, TextIO

from yadtq.models import RepairStats, Task, TaskState, WorkerInfo, WorkerStatus
from yadtq.schedules import ScheduleInfo
from yadtq.text import format_args, format_duration, format_timestamp, format_value, safe_text

INVALID = "invalid"
"""The state shown for a task whose stored record is malformed."""


def state_text(t: Task) -> str:
    """The task's state, or ``invalid`` when its record is malformed (its state is then a guess)."""
    return INVALID if t.problem is not None else t.state.value


def due_text(t: Task, now: float | None = None) -> str:
    """``due in 25s`` / ``due 3s ago`` for a task with a due time (else empty)."""
    if t.due_at is None:
        return ""
    left = t.due_at - (time.time() if now is None else now)
    return f"due in {format_duration(left)}" if left >= 0 else f"due {format_duration(-left)} ago"


def task_json(t: Task) -> dict[str, Any]:
    """``t`` as the JSON object ``--json`` prints (every field, history included; ``problem`` is
    null unless the record is malformed, and ``state`` is then ``invalid``)."""
    return {"id": t.id, "name": t.name, "args": list(t.args), "queue": t.queue,
            "priority": t.priority, "state": state_text(t),
            "problem": t.problem,
            "result": t.result, "error": t.error, "attempt": t.attempt, "worker": t.worker,
            "created_at": t.created_at, "updated_at": t.updated_at, "due_at": t.due_at,
            "history": [{"state": h.state.value, "at": h.at, "worker": h.worker,
                         "attempt": h.attempt, "note": h.note} for h in t.history]}


def worker_json(w: WorkerInfo) -> dict[str, Any]:
    """``w`` as the JSON object ``yadtq workers --json`` prints (``stalled``: why a stalled
    worker's runner makes no progress, else null; ``last_beat`` by the worker's clock,
    ``seconds_since_beat`` by Redis's for a live worker)."""
    return {"id": w.id, "host": w.host, "pid": w.pid, "status": w.status.value,
            "stalled": w.stalled, "current_task": w.current_task, "done": w.done,
            "failed": w.failed, "last_beat": w.last_beat,
            "seconds_since_beat": round(w.since_beat(), 3), "uptime": round(w.uptime(), 1)}


def repairs_json(r: RepairStats) -> dict[str, Any]:
    """The reconciler's counters as ``yadtq stats --json`` prints them (``repairs``)."""
    return {"runs": r.runs, "resent_queued": r.resent_queued,
            "requeued_in_progress": r.requeued_in_progress, "last_run_at": r.last_run_at,
            "last_leader": r.last_leader, "last_repaired": r.last_repaired}


def print_json(data: Any, out: TextIO) -> None:
    """Indented JSON; ``ensure_ascii`` keeps control characters escaped (``\\u001b``)."""
    print(json.dumps(data, indent=2), file=out)


def _timestamp(t: float) -> str:
    return format_timestamp(t, UTC, zone=True)


def _print_table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)


def print_tasks(tasks: list[Task], out: TextIO) -> None:
    """One aligned row per task (the ``yadtq tasks`` table)."""
    if not tasks:
        print("no tasks", file=out)
        return
    rows = [("ID", "TASK", "ARGS", "STATE", "RESULT/ERROR", "WORKER", "TRY", "AGE")]
    now = time.time()
    for t in tasks:
        done = t.state is TaskState.COMPLETED
        outcome = format_value(t.result, 30) if done else safe_text(t.error or "", 30)
        if t.state is TaskState.SCHEDULED and t.problem is None:
            outcome = due_text(t, now)
        if t.problem is not None:
            outcome = safe_text(t.problem, 60)
        rows.append((t.id, safe_text(t.name, 16), format_args(t.args, 24), state_text(t), outcome,
                     safe_text(t.worker or "", 20), str(t.attempt), format_duration(t.age(now))))
    _print_table(rows, out)


def print_task(t: Task, out: TextIO) -> None:
    """Every field of one task, then its history (``yadtq view``); timestamps in UTC."""
    fields = [("id", t.id), ("task", safe_text(t.name)), ("queue", t.queue),
              ("priority", t.priority), ("args", format_args(t.args)),
              ("state", state_text(t)),
              *([("problem", safe_text(t.problem))] if t.problem is not None else []),
              ("result", format_value(t.result)),
              ("error", safe_text(t.error or "")), ("attempts", str(t.attempt)),
              ("worker", safe_text(t.worker or "")), ("created", _timestamp(t.created_at)),
              ("updated", _timestamp(t.updated_at)),
              *([("due", f"{_timestamp(t.due_at)} ({due_text(t)})")] if t.due_at is not None else [])]
    for k, v in fields:
        print(f"{k + ':':<10} {v}", file=out)
    print("history:", file=out)
    for h in t.history:
        extra = f" by {safe_text(h.worker)}" if h.worker else ""
        note = f" ({safe_text(h.note)})" if h.note else ""
        print(f"  {_timestamp(h.at)}  {h.state.value:<12} attempt {h.attempt}{extra}{note}", file=out)


def print_workers(workers: list[WorkerInfo], out: TextIO) -> None:
    """One aligned row per worker (``yadtq workers``)."""
    if not workers:
        print("no workers", file=out)
        return
    rows = [("WORKER", "STATUS", "RUNNING", "DONE", "FAILED", "UPTIME", "STALLED BECAUSE")]
    for w in workers:
        why = (safe_text(w.stalled or "no reason given", 120)
               if w.status is WorkerStatus.STALLED else "")
        rows.append((safe_text(w.id, 40), w.status.value, safe_text(w.current_task or "-", 32),
                     str(w.done), str(w.failed), format_duration(w.uptime()), why))
    _print_table(rows, out)


def print_repairs(r: RepairStats, out: TextIO) -> None:
    """The reconciler's counters (``yadtq stats``); the last run in UTC."""
    print(f"repair runs: {r.runs}", file=out)
    print(f"re-sent queued: {r.resent_queued}", file=out)
    print(f"re-queued in-progress: {r.requeued_in_progress}", file=out)
    if r.last_run_at is None:
        print("last repair run: never", file=out)
        return
    leader = f" by {safe_text(r.last_leader, 60)}" if r.last_leader else ""
    print(f"last repair run: {_timestamp(r.last_run_at)}{leader} ({r.last_repaired} repaired)",
          file=out)


def schedule_json(s: ScheduleInfo) -> dict[str, Any]:
    """``s`` as ``yadtq schedules --json`` prints it: ``state`` is ``ok`` or ``invalid`` (then
    ``problem`` says why); times are epoch seconds; ``last_state`` is null when the last period's
    task is gone (or the period was the one in which the schedule was first seen);
    ``published_at`` is when a worker last published it (null from an older worker), ``stale``
    true when that is more than 3 publish intervals ago (then ``next_run`` is null)."""
    d = s.schedule
    return {"name": s.name, "state": INVALID if s.problem is not None else "ok",
            "problem": s.problem, "task": d.task if d else None,
            "args": list(d.args) if d else None, "cron": d.cron if d else None,
            "every": d.every if d else None, "tz": d.tz if d else None,
            "expression": d.expression if d else None, "next_run": s.next_run,
            "last_period": s.last_period, "last_task": s.last_task, "last_state": s.last_state,
            "published_at": s.published_at, "stale": s.stale}


def next_run_text(s: ScheduleInfo) -> str:
    """The NEXT RUN of ``yadtq schedules``: the time (UTC), ``-`` when there is none, and for a
    stale schedule why it has none."""
    if s.stale and s.published_at is not None:
        return f"none: not declared by a running worker since {_timestamp(s.published_at)}"
    return _timestamp(s.next_run) if s.next_run is not None else "-"


def print_schedules(schedules: list[ScheduleInfo], out: TextIO) -> None:
    """One aligned row per schedule (``yadtq schedules``); times in UTC."""
    if not schedules:
        print("no schedules (workers publish the ones their --tasks modules declare)", file=out)
        return
    rows = [("SCHEDULE", "TASK", "WHEN", "NEXT RUN", "LAST RUN", "LAST TASK", "LAST STATE")]
    for s in schedules:
        d = s.schedule
        when = d.expression if d else f"{INVALID}: {s.problem}"
        task = f"{d.task} {format_args(d.args, 24)}".strip() if d else ""
        last_state = (s.last_state or "-") if s.last_task else ""
        if d is not None and s.problem is not None:
            last_state = f"{INVALID}: {s.problem}"
        rows.append((safe_text(s.name, 40), safe_text(task, 40), safe_text(when, 80),
                     next_run_text(s),
                     _timestamp(s.last_period) if s.last_period is not None else "never",
                     s.last_task or "", safe_text(last_state, 60)))
    _print_table(rows, out)
