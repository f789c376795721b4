"""The Redis store: every task's state, result and history, and every worker's heartbeat.

This is the only module that imports ``redis``. State changes run as Lua scripts (``yadtq.lua``), one
round trip per batch of tasks. Key names come from ``yadtq.keys``.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from yadtq import lua
from yadtq.errors import ServiceUnavailable
from yadtq.keys import Keys
from yadtq.models import HistoryEntry, Task, TaskState, View, WorkerInfo, WorkerStatus
from yadtq.settings import Settings, redact_url
from yadtq.wire import Envelope

T = TypeVar("T")

STATES = (TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED, TaskState.FAILED)
DEAD_WORKER_KEEP_SECONDS = 600.0
"""A dead worker stays listed (as dead) this long after its last heartbeat."""


@dataclass(frozen=True)
class Outcome:
    """The end of one attempt, to be written with a compare-and-set on the attempt."""

    task_id: str
    attempt: int
    state: TaskState
    result: Any = None
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Beat:
    """One worker heartbeat."""

    worker_id: str
    host: str
    pid: int
    started_at: float
    current_task: str | None
    done: int
    failed: int
    partitions: tuple[int, ...] = ()
    stalled: str = ""
    """Why the worker's runner makes no progress ("" when it does)."""
    progress_at: float = 0.0
    """When the runner last started or finished something."""


class RedisStore:
    """Task state in Redis. Pass ``client`` to use another Redis-compatible client (tests)."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        if client is None:
            client = redis.Redis.from_url(
                settings.redis_url,
                password=settings.redis_password() or None,
                decode_responses=True,
                socket_timeout=5.0,
                socket_connect_timeout=2.0,
                health_check_interval=15,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
        self.r = client
        self._create = self.r.register_script(lua.CREATE)
        self._start = self.r.register_script(lua.START)
        self._finish = self.r.register_script(lua.FINISH)
        self._transition = self.r.register_script(lua.TRANSITION)
        self._view = self.r.register_script(lua.VIEW)
        self._state_keys = [self.keys.state_index(s) for s in STATES]

    def describe(self) -> str:
        return redact_url(self.settings.redis_url)

    # ------------------------------------------------------------------ errors
    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except redis.AuthenticationError as exc:
            raise ServiceUnavailable(f"Redis refused the credentials: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise ServiceUnavailable(f"Redis unreachable at {self.describe()}: {exc}") from None
        except redis.ResponseError as exc:
            raise ServiceUnavailable(f"Redis error: {exc}") from None

    def _call(self, fn: Callable[[], T]) -> T:
        with self._errors():
            return fn()

    def ping(self) -> None:
        self._call(self.r.ping)

    # ------------------------------------------------------------------ writes
    def create(self, envelopes: Sequence[Envelope]) -> list[bool]:
        """Record new tasks as ``queued``; False for an id that already existed."""
        if not envelopes:
            return []
        args: list[Any] = [time.time()]
        for e in envelopes:
            args += [e.id, e.name, _dump(list(e.args)), repr(e.created_at)]
        keys = [self.keys.counts, *self._state_keys, self.keys.index,
                *(self.keys.task(e.id) for e in envelopes)]
        out = self._call(lambda: self._create(keys=keys, args=args))
        return [bool(x) for x in out]

    def start(self, worker_id: str, envelopes: Sequence[Envelope]) -> list[int]:
        """Mark tasks ``in-progress`` for ``worker_id``; per task the attempt to run (>= 1),
        0 if the task is already final, -1 if a reset cleared it."""
        if not envelopes:
            return []
        args: list[Any] = [worker_id, time.time()]
        for e in envelopes:
            args += [e.id, e.name, _dump(list(e.args)), repr(e.created_at)]
        keys = [self.keys.counts, *self._state_keys, self.keys.index, self.keys.reset_marker,
                *(self.keys.task(e.id) for e in envelopes)]
        return [int(x) for x in self._call(lambda: self._start(keys=keys, args=args))]

    def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> list[bool]:
        """Write each attempt's outcome unless a newer attempt took the task (then False)."""
        if not outcomes:
            return []
        now = time.time()
        args: list[Any] = [worker_id, now]
        for o in outcomes:
            args += [o.task_id, o.attempt, o.state.value,
                     "" if o.result is None and o.state is not TaskState.COMPLETED
                     else _dump(o.result), o.error or "", o.note or ""]
        keys = [self.keys.counts, *self._state_keys, self.keys.rate(int(now)),
                *(self.keys.task(o.task_id) for o in outcomes)]
        return [bool(x) for x in self._call(lambda: self._finish(keys=keys, args=args))]

    def transition(self, task_id: str, expected: TaskState, new: TaskState, note: str,
                   error: str = "", attempt: int | None = None) -> int:
        """Move one task ``expected -> new`` if it is still ``expected`` (and at ``attempt``).
        1 moved, 0 not (something else changed it first), -1 no such task."""
        keys = [self.keys.counts, *self._state_keys, self.keys.task(task_id)]
        args = [time.time(), expected.value, new.value, note, error,
                "" if attempt is None else attempt]
        return int(self._call(lambda: self._transition(keys=keys, args=args)))

    def reset(self) -> int:
        """Delete every task of this prefix (and the counters), never the whole database. Returns how many."""
        def run() -> int:
            self.r.set(self.keys.reset_marker, repr(time.time()))
            deleted = 0
            batch: list[str] = []
            for key in self.r.scan_iter(match=self.keys.task_pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += self.r.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += self.r.unlink(*batch)
            rate_keys = list(self.r.scan_iter(match=self.keys.rate_pattern, count=1000))
            self.r.unlink(self.keys.index, self.keys.counts, *self._state_keys, *rate_keys)
            return int(deleted)
        return self._call(run)

    # ------------------------------------------------------------------ reads
    def get(self, task_id: str) -> Task | None:
        data = self._call(lambda: self.r.hgetall(self.keys.task(task_id)))
        return _task(data) if data else None

    def list(self, state: TaskState | None = None, limit: int = 50, offset: int = 0, *,
             history: bool = True) -> list[Task]:
        """Newest first, one page: reads ``limit`` hashes, never the whole keyspace. With
        ``history=False`` the tasks come without their history (read and parsed for nothing by a
        table that does not show it: the dashboard's refresh)."""
        index = self.keys.index if state is None else self.keys.state_index(state)

        if limit <= 0:
            return []

        def run() -> builtins.list[Task]:
            ids = self.r.zrevrange(index, max(offset, 0), max(offset, 0) + limit - 1)
            if not ids:
                return []
            pipe = self.r.pipeline(transaction=False)
            for task_id in ids:
                if history:
                    pipe.hgetall(self.keys.task(task_id))
                else:
                    pipe.hmget(self.keys.task(task_id), _BRIEF)
            if history:
                return [_task(d) for d in pipe.execute() if d]
            return _brief_tasks(pipe.execute())
        return self._call(run)

    def counts(self) -> dict[TaskState, int]:
        return _counts(self._call(lambda: self.r.hgetall(self.keys.counts)))

    def total(self, state: TaskState | None = None) -> int:
        index = self.keys.index if state is None else self.keys.state_index(state)
        return int(self._call(lambda: self.r.zcard(index)))

    def finished_per_second(self, seconds: int = 60, now: float | None = None) -> builtins.list[int]:
        """Tasks finished in each of the last ``seconds`` whole seconds, oldest first."""
        end = int(now if now is not None else time.time())
        keys = [self.keys.rate(s) for s in range(end - seconds, end)]
        values = self._call(lambda: self.r.mget(keys))
        return [int(v or 0) for v in values]

    # ------------------------------------------------------------------ workers
    def heartbeat(self, beat: Beat, ttl: float) -> None:
        now = time.time()
        key = self.keys.worker(beat.worker_id)

        fields = {
            "id": beat.worker_id, "host": beat.host, "pid": beat.pid,
            "started_at": repr(beat.started_at), "last_beat": repr(now),
            "current_task": beat.current_task or "", "done": beat.done, "failed": beat.failed,
            "partitions": ",".join(str(p) for p in sorted(beat.partitions)),
            "stalled": beat.stalled, "progress_at": repr(beat.progress_at),
        }

        def run() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, int(ttl * 1000))
            pipe.zadd(self.keys.workers, {beat.worker_id: now})
            pipe.hset(self.keys.workers_last, beat.worker_id, _dump(fields))
            pipe.execute()
        self._call(run)

    def remove_worker(self, worker_id: str) -> None:
        """A clean exit: the worker disappears at once instead of turning dead."""
        def run() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(self.keys.worker(worker_id))
            pipe.zrem(self.keys.workers, worker_id)
            pipe.hdel(self.keys.workers_last, worker_id)
            pipe.execute()
        self._call(run)

    def workers(self, late_after: float, now: float | None = None) -> builtins.list[WorkerInfo]:
        """Every known worker: alive, late (heartbeat older than ``late_after`` s) or dead (key gone)."""
        t = time.time() if now is None else now

        def run() -> builtins.list[WorkerInfo]:
            old = self.r.zrangebyscore(self.keys.workers, "-inf", t - DEAD_WORKER_KEEP_SECONDS)
            if old:
                self.r.zrem(self.keys.workers, *old)
                self.r.hdel(self.keys.workers_last, *old)
            known = self.r.zrange(self.keys.workers, 0, -1, withscores=True)
            if not known:
                return []
            ids = [worker_id for worker_id, _ in known]
            pipe = self.r.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(worker_id))
            pipe.hmget(self.keys.workers_last, ids)
            *beats, lasts = pipe.execute()
            return _workers(known, beats, lasts, t, late_after)
        return self._call(run)

    def view(self, state: TaskState | None, limit: int, seconds: int, late_after: float,
             now: float | None = None) -> View:
        """What a dashboard refresh shows, in one round trip (one read script; ``list(history=False)``,
        ``counts``, ``finished_per_second`` and ``workers`` take seven): under load every round
        trip waits behind the workers' scripts in Redis's queue."""
        t = time.time() if now is None else now
        index = self.keys.index if state is None else self.keys.state_index(state)
        keys = [index, self.keys.counts, self.keys.workers, self.keys.workers_last,
                *(self.keys.rate(s) for s in range(int(t) - seconds, int(t)))]
        args = [max(0, limit), self.keys.task(""), self.keys.worker(""),
                repr(t - DEAD_WORKER_KEEP_SECONDS), *_BRIEF]
        tasks, counts, rates, flat = self._call(lambda: self._view(keys=keys, args=args))
        known = [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 4)]
        beats = [_pairs(flat[i + 2]) for i in range(0, len(flat), 4)]
        lasts = [flat[i + 3] for i in range(0, len(flat), 4)]
        return View(_brief_tasks(tasks), _counts(_pairs(counts)), [int(v or 0) for v in rates],
                    _workers(known, beats, lasts, t, late_after))

    # ------------------------------------------------------------------ registry
    def publish_specs(self, specs: Sequence[dict[str, Any]]) -> None:
        if specs:
            mapping = {s["name"]: _dump(s) for s in specs}
            self._call(lambda: self.r.hset(self.keys.registry, mapping=mapping))

    def published_specs(self) -> builtins.list[dict[str, Any]]:
        raw = self._call(lambda: self.r.hgetall(self.keys.registry))
        out = []
        for value in raw.values():
            try:
                spec = json.loads(value)
            except ValueError:
                continue
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                out.append(spec)
        return out


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # built once, not per call


def _dump(value: Any) -> str:
    return _ENCODER.encode(value)


def _load(raw: str | None) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _worker(worker_id: str, data: dict[str, Any], status: WorkerStatus, last_seen: float) -> WorkerInfo:
    last = float(data.get("last_beat", last_seen))
    return WorkerInfo(
        id=worker_id, host=str(data.get("host", "?")), pid=int(data.get("pid", 0) or 0),
        status=status, last_beat=last, started_at=float(data.get("started_at", last)),
        current_task=data.get("current_task") or None,  # for a dead worker: what it was running
        done=int(data.get("done", 0)), failed=int(data.get("failed", 0)),
        partitions=() if status is WorkerStatus.DEAD
        else tuple(int(x) for x in str(data.get("partitions", "")).split(",") if x.isdigit()))


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    """A script's HGETALL (a flat list of field, value) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _counts(raw: dict[str, str]) -> dict[TaskState, int]:
    return {s: max(0, int(raw.get(s.value, 0))) for s in STATES}


def _brief_tasks(rows: Sequence[Sequence[str | None]]) -> list[Task]:
    return [_task(dict(zip(_BRIEF, v, strict=True))) for v in rows if v[0]]  # type: ignore[arg-type]


def _workers(known: Sequence[tuple[str, float]], beats: Sequence[dict[str, str]],
             lasts: Sequence[str | None], now: float, late_after: float) -> list[WorkerInfo]:
    out = []
    for (worker_id, last_seen), data, last in zip(known, beats, lasts, strict=True):
        if data:
            age = now - float(data.get("last_beat", last_seen))
            status = WorkerStatus.LATE if age > late_after else WorkerStatus.ALIVE
        else:  # the TTL key expired: dead; show what its last heartbeat said
            loaded = _load(last) if last else None
            if not isinstance(loaded, dict):
                host, _, pid = worker_id.rpartition("-")
                loaded = {"host": host or worker_id, "pid": pid if pid.isdigit() else 0}
            data, status = loaded, WorkerStatus.DEAD
        out.append(_worker(worker_id, data, status, float(last_seen)))
    return out


_BRIEF = ("id", "name", "args", "state", "result", "error", "attempt", "worker", "created_at",
          "updated_at")
"""The fields of a task without its history (``list(history=False)``)."""


def _task(d: dict[str, str]) -> Task:
    history = []
    for entry in _load(d.get("history")) or []:
        try:
            state, at, worker, attempt = entry[0], entry[1], entry[2], entry[3]
            note = entry[4] if len(entry) > 4 else None
            history.append(HistoryEntry(TaskState(state), float(at), worker or None,
                                        int(attempt), note or None))
        except (ValueError, TypeError, IndexError):
            continue
    args = _load(d.get("args"))
    return Task(
        id=d.get("id", ""), name=d.get("name", ""),
        args=tuple(args) if isinstance(args, list) else (),
        state=TaskState(d.get("state", "queued")),
        result=_load(d.get("result")), error=d.get("error") or None,
        attempt=int(d.get("attempt", 0)), worker=d.get("worker") or None,
        created_at=float(d.get("created_at", 0)), updated_at=float(d.get("updated_at", 0)),
        history=tuple(history),
    )
