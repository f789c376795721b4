"""The Redis store: every task's state, result and history, and every worker's heartbeat.

This is the only module that imports ``redis``. State changes run as Lua scripts (``yadtq.lua``), one
round trip per batch of tasks. Key names come from ``yadtq.keys``; stored records are parsed by
``yadtq.records``, so a malformed record reads as a task with a ``problem``, never as an exception.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from yadtq import lua, lua_view, records
from yadtq.errors import ServiceUnavailable, StoreError
from yadtq.ids import HEX
from yadtq.keys import Keys
from yadtq.models import STATES, Beat, Outcome, Task, TaskState, View, WorkerInfo
from yadtq.records import BRIEF as _BRIEF
from yadtq.records import dump as _dump
from yadtq.records import safe_text as _safe
from yadtq.records import stored_priority as _priority
from yadtq.records import stored_queue as _queue
from yadtq.settings import Settings, redact_url
from yadtq.store_upkeep import UpkeepStore
from yadtq.wire import Envelope

T = TypeVar("T")

__all__ = ["DEAD_WORKER_KEEP_SECONDS", "STATES", "Beat", "Outcome", "RedisStore"]
# STATES lives in yadtq.models; it is re-exported here for code that imports it from the store.

DEAD_WORKER_KEEP_SECONDS = 600.0
"""A dead worker stays listed (as dead) this long after its last heartbeat."""
ID_SCAN_PAGE = 10_000
"""Index members read per ``ZSCAN`` round trip by ``ids_starting``."""

TRANSIENT_CODES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN"})
"""Redis error codes that pass (loading the dataset, a long script, a failover): waited out."""
_TRANSIENT_CLASSES = (redis.exceptions.ReadOnlyError, redis.exceptions.TryAgainError,
                      redis.exceptions.ClusterDownError)  # redis-py's classes for some of them



def connect(settings: Settings) -> Any:
    """A client for ``settings.redis_url``, or for the primary that ``settings.redis_sentinels``
    name (each new connection asks them for its address, so a failover is followed). Retries span
    a Sentinel failover (~2-3 s); anything longer is an outage the callers handle."""
    options: dict[str, Any] = dict(
        password=settings.redis_password() or None,
        decode_responses=True,
        encoding_errors="backslashreplace",  # bytes that are not UTF-8 read as \xNN
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=15,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    sentinels = settings.sentinel_addresses()
    if not sentinels:
        return redis.Redis.from_url(settings.redis_url, **options,
                                    retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2))
    url = redis.connection.parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    for name in ("db", "username", "password"):
        if url.get(name) is not None and options.get(name) is None:
            options[name] = url[name]
    sentinel: Any = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        sentinels, socket_timeout=0.5, socket_connect_timeout=0.5)
    return sentinel.master_for(settings.redis_service, ssl=settings.redis_url.startswith("rediss:"),
                               retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 8), **options)


class RedisStore(UpkeepStore):
    """Task state in Redis. Pass ``client`` to use another Redis-compatible client (tests)."""

    def __init__(self, settings: Settings, client: Any = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        """Epoch seconds for every stored time (tests set a fixed one)."""
        self.keys = Keys(settings.key_prefix)
        self.r = connect(settings) if client is None else client
        self._create = self.r.register_script(lua.CREATE)
        self._start = self.r.register_script(lua.START)
        self._finish = self.r.register_script(lua.FINISH)
        self._transition = self.r.register_script(lua.TRANSITION)
        self._view = self.r.register_script(lua_view.VIEW)
        self._heartbeat = self.r.register_script(lua_view.HEARTBEAT)
        self._acquire = self.r.register_script(lua_view.ACQUIRE_LOCK)
        self._release = self.r.register_script(lua_view.RELEASE_LOCK)
        self._state_keys = [self.keys.state_index(s) for s in STATES]

    def describe(self) -> str:
        if self.settings.redis_sentinels:
            return f"Sentinel {self.settings.redis_sentinels} ({self.settings.redis_service})"
        return redact_url(self.settings.redis_url)

    # ------------------------------------------------------------------ errors
    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place where redis-py's exceptions become ours: ``ServiceUnavailable`` for what
        passes (unreachable, timeout, ``LOADING``, ``BUSY``, failover), ``StoreError`` for a
        refusal that repeating the request cannot change (``WRONGTYPE``, ``OOM``, a script error)."""
        try:
            yield
        except redis.AuthenticationError as exc:
            raise ServiceUnavailable(f"Redis refused the credentials: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise ServiceUnavailable(f"Redis unreachable at {self.describe()}: {exc}") from None
        except redis.ResponseError as exc:
            code, text = _error_code(exc)
            if code in TRANSIENT_CODES or isinstance(exc, _TRANSIENT_CLASSES):
                raise ServiceUnavailable(f"Redis unavailable at {self.describe()}: {text}") from None
            raise StoreError(f"Redis refused: {text}") from None

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (calls on ``self.r``) with this store's error translation (``_errors``); also
        for the parts of the store that live in modules of their own (``yadtq.cancel``)."""
        with self._errors():
            return fn()

    _call = call

    def script(self, source: str) -> Callable[[Sequence[str], Sequence[Any]], Any]:
        """A Lua script of another module (``yadtq.lua_retention``), run with this store's
        error translation: ``run(keys, args)``."""
        compiled = self.r.register_script(source)
        return lambda keys, args: self._call(lambda: compiled(keys=list(keys), args=list(args)))

    def ping(self) -> None:
        self._call(self.r.ping)

    # ------------------------------------------------------------------ writes
    def create(self, envelopes: Sequence[Envelope]) -> list[bool]:
        """Record new tasks as ``queued``; False for an id that already existed."""
        if not envelopes:
            return []
        args: list[Any] = [self.clock()]
        for e in envelopes:
            args += [e.id, _safe(e.name), _dump(list(e.args)), repr(e.created_at), _queue(e.queue),
                     _priority(e.priority)]
        keys = [self.keys.counts, *self._state_keys, self.keys.index,
                *(self.keys.task(e.id) for e in envelopes)]
        out = self._call(lambda: self._create(keys=keys, args=args))
        return [bool(x) for x in out]

    def start(self, worker_id: str, envelopes: Sequence[Envelope],
              alone: Sequence[bool] | None = None) -> list[int]:
        """Mark tasks ``in-progress`` for ``worker_id``, in one script call: per task the attempt
        to run (>= 1) or a code of ``yadtq.lua.START`` (``alone``: per task, None: all)."""
        return [attempt for attempt, _ in self.start_ex(worker_id, envelopes, alone)]

    def start_ex(self, worker_id: str, envelopes: Sequence[Envelope],
                 alone: Sequence[bool] | None = None) -> list[tuple[int, int]]:
        """``start``, with each task's deaths: the times a worker died with it in hand."""
        if not envelopes:
            return []
        fresh = min(2 * self.settings.heartbeat_interval, self.settings.session_timeout_ms / 2000)
        args: list[Any] = [_safe(worker_id), self.clock(), lua.SUSPECT_AGE, self.keys.worker(""),
                           int(fresh * 1000)]
        for e, one in zip(envelopes, alone or [True] * len(envelopes), strict=True):
            args += [e.id, _safe(e.name), _dump(list(e.args)), repr(e.created_at), _queue(e.queue),
                     _priority(e.priority), "1" if one else "0"]
        keys = [self.keys.counts, *self._state_keys, self.keys.index, self.keys.reset_marker,
                *(self.keys.task(e.id) for e in envelopes)]
        out = [int(x) for x in self._call(lambda: self._start(keys=keys, args=args))]
        return list(zip(out[:len(envelopes)], out[len(envelopes):], strict=True))

    def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> list[bool]:
        """Write each attempt's outcome (False: a newer attempt took the task, or it is malformed)."""
        if not outcomes:
            return []
        now = self.clock()
        args: list[Any] = [_safe(worker_id), now, self.keys.finished]
        for o in outcomes:
            args += [o.task_id, o.attempt, o.state.value,
                     "" if o.result is None and o.state is not TaskState.COMPLETED
                     else _dump(o.result), _safe(o.error or ""), _safe(o.note or ""), o.delay]
        keys = [self.keys.counts, *self._state_keys, self.keys.rate(int(now)), self.keys.due,
                *(self.keys.task(o.task_id) for o in outcomes)]
        return [bool(x) for x in self._call(lambda: self._finish(keys=keys, args=args))]

    def transition(self, task_id: str, expected: TaskState, new: TaskState, note: str,
                   error: str = "", attempt: int | None = None) -> int:
        """Move one task ``expected -> new`` if it is still ``expected`` (and at ``attempt``).
        1 moved, 0 not (something else changed it first, or its record is malformed), -1 no such
        task."""
        keys = [self.keys.counts, *self._state_keys, self.keys.task(task_id)]
        args = [self.clock(), expected.value, new.value, _safe(note), _safe(error),
                "" if attempt is None else attempt]
        return int(self._call(lambda: self._transition(keys=keys, args=args)))

    def reset(self) -> int:
        """Delete every task of this prefix (and the counters), never the whole database. Returns how many."""
        def run() -> int:
            self.r.set(self.keys.reset_marker, repr(self.clock()))
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
            self.r.unlink(self.keys.index, self.keys.counts, self.keys.due, self.keys.dispatching,
                          self.keys.cancel_requests, *self._state_keys, *rate_keys)
            return int(deleted)
        return self._call(run)

    # ------------------------------------------------------------------ reads
    def get(self, task_id: str) -> Task | None:
        """The task, None if there is none; a malformed record gives a task with ``problem`` set."""
        try:
            data = self._call(lambda: self.r.hgetall(self.keys.task(task_id)))
        except StoreError as exc:  # e.g. WRONGTYPE: something that is not a hash holds the key
            return records.task(task_id, str(exc))
        return records.task(task_id, data) if data else None

    def ids_starting(self, prefix: str, most: int = 2) -> builtins.list[str]:
        """Up to ``most`` task ids that start with ``prefix`` (hex digits only: no pattern
        characters), from the index of every task: ``ZSCAN`` in pages of ``ID_SCAN_PAGE``, so a
        million tasks are read in about a hundred round trips and Redis is never blocked."""
        if not prefix or not set(prefix) <= HEX:
            raise ValueError(f"not a hex prefix: {prefix[:70]!r}")

        def run() -> builtins.list[str]:
            found: builtins.list[str] = []
            for task_id, _ in self.r.zscan_iter(self.keys.index, match=prefix + "*",
                                               count=ID_SCAN_PAGE):
                if task_id not in found:  # ZSCAN may return a member twice
                    found.append(task_id)
                    if len(found) >= most:
                        break
            return found
        return self._call(run)

    def list(self, state: TaskState | None = None, limit: int = 50, offset: int = 0, *,
             history: bool = True) -> list[Task]:
        """Newest first (a final state: most recently finished first), one page: reads ``limit``
        hashes, never the whole keyspace. With ``history=False`` the tasks come without their
        history (cheaper: a table that does not show it). A malformed record is listed as a task
        with ``problem`` set."""
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
            rows = pipe.execute(raise_on_error=False)
            if history:
                return [records.task(i, str(d) if isinstance(d, Exception) else d)
                        for i, d in zip(ids, rows, strict=True) if d]
            return records.brief_tasks(ids, rows)
        return self._call(run)

    def counts(self) -> dict[TaskState, int]:
        return records.counts(self._call(lambda: self.r.hgetall(self.keys.counts)))

    def total(self, state: TaskState | None = None) -> int:
        index = self.keys.index if state is None else self.keys.state_index(state)
        return int(self._call(lambda: self.r.zcard(index)))

    def finished_per_second(self, seconds: int = 60, now: float | None = None) -> builtins.list[int]:
        """Tasks finished in each of the last ``seconds`` whole seconds, oldest first."""
        end = int(now if now is not None else self.clock())
        keys = [self.keys.rate(s) for s in range(end - seconds, end)]
        return records.rates(self._call(lambda: self.r.mget(keys)))

    # ------------------------------------------------------------------ workers
    def heartbeat(self, beat: Beat, ttl: float) -> None:
        now = self.clock()
        worker_id = _safe(beat.worker_id)
        key = self.keys.worker(worker_id)

        fields = {
            "id": worker_id, "host": _safe(beat.host), "pid": beat.pid,
            "started_at": repr(beat.started_at), "last_beat": repr(now),
            "current_task": _safe(beat.current_task or ""), "done": beat.done,
            "failed": beat.failed, "partitions": ",".join(str(p) for p in sorted(beat.partitions)),
            "stalled": _safe(beat.stalled), "progress_at": repr(beat.progress_at),
            "ttl_ms": int(ttl * 1000),  # how long ago it beat: ttl_ms - PTTL (``lua.START``)
        }

        pairs = [x for item in fields.items() for x in item]
        self._call(lambda: self._heartbeat(
            keys=[key, self.keys.workers, self.keys.workers_last],
            args=[worker_id, int(ttl * 1000), _dump(fields), *pairs]))

    def remove_worker(self, worker_id: str) -> None:
        """A clean exit: the worker disappears at once instead of turning dead."""
        worker_id = _safe(worker_id)

        def run() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(self.keys.worker(worker_id))
            pipe.zrem(self.keys.workers, worker_id)
            pipe.hdel(self.keys.workers_last, worker_id)
            pipe.execute()
        self._call(run)

    def workers(self, late_after: float, now: float | None = None) -> builtins.list[WorkerInfo]:
        """Every known worker: alive, late (heartbeat older than ``late_after`` s), stalled (the
        heartbeat says its runner makes no progress) or dead (key gone). Workers dead for
        ``DEAD_WORKER_KEEP_SECONDS`` are forgotten. The ``VIEW`` script without tasks or rates."""
        return self.view(None, 0, 0, late_after, now).workers

    def view(self, state: TaskState | None, limit: int, seconds: int, late_after: float,
             now: float | None = None) -> View:
        """What a dashboard refresh shows, in one round trip (the ``VIEW`` script): the newest
        ``limit`` tasks without history, the counts, tasks finished per second over ``seconds``,
        the workers (as ``workers``) and the reconciler's counters."""
        t = self.clock() if now is None else now
        index = self.keys.index if state is None else self.keys.state_index(state)
        keys = [index, self.keys.counts, self.keys.workers, self.keys.workers_last,
                self.keys.repairs, *(self.keys.rate(s) for s in range(int(t) - seconds, int(t)))]
        args = [max(0, limit), self.keys.task(""), self.keys.worker(""),
                repr(t - DEAD_WORKER_KEEP_SECONDS), *_BRIEF]
        tasks, counts, rates, flat, repairs = self._call(lambda: self._view(keys=keys, args=args))
        return View(records.brief_tasks(tasks[::2], tasks[1::2]),
                    records.counts(records.pairs(counts)), records.rates(rates),
                    records.workers(flat, t, late_after), records.repairs(records.pairs(repairs)))

    # ------------------------------------------------------------------ registry
    def publish_specs(self, specs: Sequence[dict[str, Any]]) -> None:
        if specs:
            mapping = {s["name"]: _dump(s) for s in specs}
            self._call(lambda: self.r.hset(self.keys.registry, mapping=mapping))

    def published_specs(self) -> builtins.list[dict[str, Any]]:
        return records.specs(self._call(lambda: self.r.hgetall(self.keys.registry)))


def _error_code(exc: redis.ResponseError) -> tuple[str, str]:
    """The Redis error code (``WRONGTYPE``, ``OOM``...) of a reply error and its full text. redis-py
    strips the code from the text of errors it has a class for (keeping it as ``status_code``) and
    prefixes the failing command to an error inside a pipeline."""
    text = str(exc)
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code.upper(), text if text.startswith(code) else f"{code} {text}"
    _, sep, rest = text.rpartition("caused error: ")
    return (rest if sep else text).lstrip("-").split(" ", 1)[0].upper(), text
