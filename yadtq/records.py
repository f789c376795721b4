"""Stored records read back as model objects, and values made safe to store.

Every reader here is total: whatever Redis holds (a missing or ill-typed field, bad JSON, bytes that
were not UTF-8 and now read as ``\\xNN`` escapes, a key of the wrong type), it returns a value and never
raises. A malformed task comes back with ``Task.problem`` saying what is wrong; a malformed worker
hash gives a best-effort ``WorkerInfo``. No I/O: ``yadtq.store`` reads, this module parses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from yadtq.keys import DEFAULT_PRIORITY, DEFAULT_QUEUE, PRIORITIES, QUEUE_RE
from yadtq.models import (
    STATES,
    HistoryEntry,
    RepairStats,
    Task,
    TaskState,
    WorkerInfo,
    WorkerStatus,
)
from yadtq.wire import NAME_RE

BRIEF = ("id", "name", "args", "state", "result", "error", "attempt", "worker", "created_at",
         "updated_at", "due_at", "queue", "priority")
"""The fields of a task without its history (``RedisStore.list(history=False)``, the dashboard)."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # ASCII out: always storable


def dump(value: Any) -> str:
    """``value`` as compact ASCII JSON: the one encoder for stored args and results, so a worker's
    copy of a task's args compares equal, as text, with what the client stored."""
    return _ENCODER.encode(value)


def safe_text(text: str) -> str:
    """``text`` as it can be stored: characters UTF-8 cannot encode (lone surrogates, as in some
    exception messages) become ``\\udXXX`` escapes instead of raising ``UnicodeEncodeError``."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def stored_queue(queue: str) -> str:
    """The ``queue`` argument of the Lua scripts: '' for the default queue (no field is written,
    so a default-queue record is the same as before queues existed)."""
    return "" if queue == DEFAULT_QUEUE else queue


def stored_priority(priority: str) -> str:
    """The ``priority`` argument of the Lua scripts: '' for ``normal`` (no field is written)."""
    return "" if priority == DEFAULT_PRIORITY else priority


# ---------------------------------------------------------------------------------------- tasks
def task(task_id: str, data: Mapping[str, Any] | str) -> Task:
    """The task stored under ``task_id`` from its fields (all of them, or ``BRIEF``), or from the
    error text of a read that failed on it (a key of the wrong type)."""
    if isinstance(data, str):
        return Task(task_id, "", (), problem=f"not a task record: {data}")
    problems: list[str] = []
    stored_id = data.get("id")
    if stored_id != task_id:
        problems.append("no id" if stored_id is None else f"id field is {_short(stored_id)}")
    name = data.get("name")
    if not isinstance(name, str):
        problems.append("no name")
        name = ""
    elif not NAME_RE.fullmatch(name):
        problems.append(f"name {_short(name)} is not a task name")
    args: tuple[Any, ...] = ()
    raw_args = _json(data.get("args"), "args", problems, required=True)
    if isinstance(raw_args, list):
        args = tuple(raw_args)
    elif raw_args is not _BAD and data.get("args"):
        problems.append("args is not a JSON array")
    state = TaskState.QUEUED
    raw_state = data.get("state")
    try:
        state = TaskState(raw_state if isinstance(raw_state, str) else "")
    except ValueError:
        problems.append("no state" if raw_state is None else f"unknown state {_short(raw_state)}")
    result = _json(data.get("result"), "result", problems)
    if result is _BAD:
        result = data.get("result")  # shown as the text it is
    attempt = _number(data.get("attempt"), "attempt", problems, int)
    created_at = _number(data.get("created_at"), "created_at", problems, float)
    updated_at = (created_at if data.get("updated_at") is None
                  else _number(data.get("updated_at"), "updated_at", problems, float))
    due_at = None
    if data.get("due_at") not in (None, ""):
        due_at = _number(data.get("due_at"), "due_at", problems, float)
    history: tuple[HistoryEntry, ...] = ()
    if data.get("history") is not None:
        history = _history(data.get("history"), problems)
    error, worker = data.get("error"), data.get("worker")
    queue = data.get("queue") or DEFAULT_QUEUE
    if not isinstance(queue, str) or not QUEUE_RE.fullmatch(queue):
        problems.append(f"queue {_short(queue)} is not a queue name")
        queue = DEFAULT_QUEUE
    priority = data.get("priority") or DEFAULT_PRIORITY
    if priority not in PRIORITIES:
        problems.append(f"priority {_short(priority)} is not a priority")
        priority = DEFAULT_PRIORITY
    return Task(
        id=task_id, name=name, args=args, state=state, result=result,
        error=error if isinstance(error, str) and error else None,
        attempt=attempt, worker=worker if isinstance(worker, str) and worker else None,
        created_at=created_at, updated_at=updated_at, history=history, due_at=due_at, queue=queue,
        priority=priority,
        problem="; ".join(problems) or None)


def brief_tasks(ids: Sequence[str], rows: Sequence[Sequence[Any] | str | Exception]) -> list[Task]:
    """Tasks from ``HMGET <BRIEF>`` rows (or a failed read's error), skipping ids whose record is
    gone (every field missing: the index outlived the hash)."""
    out = []
    for task_id, row in zip(ids, rows, strict=True):
        if isinstance(row, str | Exception):
            out.append(task(task_id, str(row)))
        elif any(v is not None for v in row):
            out.append(task(task_id, dict(zip(BRIEF, row, strict=False))))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_BAD = object()
"""What ``_json`` returns for text that is not JSON (the problem is already noted)."""


def _json(raw: Any, what: str, problems: list[str], *, required: bool = False) -> Any:
    if raw is None or raw == "":
        if required:
            problems.append(f"no {what}")
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        problems.append(f"{what} is not valid JSON")
        return _BAD


def _number(raw: Any, what: str, problems: list[str], kind: type[int] | type[float]) -> Any:
    if raw is None:
        problems.append(f"no {what}")
        return kind(0)
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or (kind is float and not math.isfinite(value)):
        problems.append(f"{what} {_short(raw)} is not a number")
        return kind(0)
    return value


def _history(raw: Any, problems: list[str]) -> tuple[HistoryEntry, ...]:
    entries = _json(raw, "history", problems)
    if not isinstance(entries, list):
        if entries is not _BAD:
            problems.append("history is not a JSON array")
        return ()
    out = []
    bad = 0
    for entry in entries:
        try:
            state, at, worker, attempt = entry[0], entry[1], entry[2], entry[3]
            note = entry[4] if len(entry) > 4 else None
            out.append(HistoryEntry(TaskState(state), float(at), str(worker) if worker else None,
                                    int(attempt), str(note) if note else None))
        except (ValueError, TypeError, IndexError, KeyError, OverflowError):
            bad += 1
    if bad:
        problems.append(f"{bad} history entries malformed")
    return tuple(out)


# ---------------------------------------------------------------------------------------- counters
def counts(raw: Mapping[str, Any]) -> dict[TaskState, int]:
    """The per-state counters (a missing or garbled counter reads as 0)."""
    return {s: max(0, _int(raw.get(s.value))) for s in STATES}


def repairs(raw: Mapping[str, Any]) -> RepairStats:
    """The reconciler's counters from the ``repairs`` hash."""
    last_run = raw.get("last_run_at")
    leader = raw.get("last_leader")
    return RepairStats(
        runs=_int(raw.get("runs")), resent_queued=_int(raw.get("resent_queued")),
        requeued_in_progress=_int(raw.get("requeued_in_progress")),
        last_run_at=None if last_run is None else _float(last_run, None),
        last_leader=leader if isinstance(leader, str) and leader else None,
        last_repaired=_int(raw.get("last_repaired")))


def rates(values: Sequence[Any]) -> list[int]:
    """Per-second completion counters (a missing or garbled one reads as 0)."""
    return [_int(v) for v in values]


def pairs(flat: Sequence[Any]) -> dict[str, Any]:
    """A script's HGETALL (a flat list of field, value) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=False))


def _int(raw: Any, default: int = 0) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError, OverflowError):
        return default


def _float(raw: Any, default: Any) -> Any:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


# ---------------------------------------------------------------------------------------- workers
def workers(flat: Sequence[Any], now: float, late_after: float) -> list[WorkerInfo]:
    """Workers from the ``VIEW`` script's flat list (id, last seen, beat fields, last beat JSON,
    milliseconds since the beat by its key's TTL or nothing).

    A worker whose heartbeat key exists is ``stalled`` if the beat carries a reason, else ``late``
    if the beat is older than ``late_after`` seconds, else ``alive``; one whose key expired is
    ``dead`` and shown from its last heartbeat. A beat's age is on Redis's clock (a live worker's
    from its key's TTL, a dead one's from the workers set's score), so a worker whose clock is off
    is not shown late; a beat without ``ttl_ms`` (a worker of an older version) falls back to
    ``now`` minus the time the worker wrote."""
    out = []
    for i in range(0, len(flat) - 4, 5):
        worker_id, last_seen = str(flat[i]), _float(flat[i + 1], 0.0)
        beat = pairs(flat[i + 2]) if isinstance(flat[i + 2], list) else {}
        ms = flat[i + 4]
        age = ms / 1000 if isinstance(ms, int) and not isinstance(ms, bool) else None
        if beat:
            stalled = beat.get("stalled") or None
            if age is None:
                age = max(0.0, now - _float(beat.get("last_beat"), last_seen))
            status = (WorkerStatus.STALLED if stalled else
                      WorkerStatus.LATE if age > late_after else WorkerStatus.ALIVE)
            data: Mapping[str, Any] = beat
        else:  # the TTL key expired: dead; show what its last heartbeat said
            loaded = _load_dict(flat[i + 3])
            if loaded is None:
                host, _, pid = worker_id.rpartition("-")
                loaded = {"host": host or worker_id, "pid": pid if pid.isdigit() else 0}
            data, status, stalled = loaded, WorkerStatus.DEAD, None
        out.append(_worker(worker_id, data, status, last_seen, stalled, age))
    return out


def _load_dict(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _worker(worker_id: str, data: Mapping[str, Any], status: WorkerStatus, last_seen: float,
            stalled: Any, age: float | None) -> WorkerInfo:
    last = _float(data.get("last_beat"), last_seen)
    current = data.get("current_task")
    return WorkerInfo(
        id=worker_id, host=str(data.get("host", "?")), pid=_int(data.get("pid")),
        status=status, last_beat=last, started_at=_float(data.get("started_at"), last),
        current_task=str(current) if current else None,  # for a dead worker: what it was running
        done=_int(data.get("done")), failed=_int(data.get("failed")),
        partitions=() if status is WorkerStatus.DEAD
        else tuple(int(x) for x in str(data.get("partitions", "")).split(",") if x.isascii() and x.isdigit()),
        stalled=str(stalled) if stalled else None, beat_age=age)


def specs(raw: Mapping[str, str]) -> list[dict[str, Any]]:
    """The task specs the workers published (the ``registry`` hash's values), each a JSON object
    with a ``name``; anything else is left out."""
    out = []
    for value in raw.values():
        try:
            spec = json.loads(value)
        except (ValueError, RecursionError):
            continue
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            out.append(spec)
    return out
