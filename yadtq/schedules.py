"""Periodic tasks: a schedule runs a registered task with fixed arguments once per period.

Declare them next to your tasks, in a module the workers load (``--tasks``)::

    from datetime import timedelta
    from yadtq import periodic, task

    @task()
    def report() -> str: ...

    periodic("report", cron="0 * * * *")                           # at the top of every hour (UTC)
    periodic("ADD", every=timedelta(minutes=5), args=[2, 3], name="add-every-5m")
    periodic("report", cron="30 8 * * 1-5", tz="Europe/Paris", name="weekday-report")

A schedule is a 5-field cron expression (evaluated in ``tz``, UTC by default, with Debian cron's
daylight-saving rules, by ``cronsim``) or a fixed interval in whole seconds (periods aligned to
the Unix epoch, so ``every=3600`` starts at the top of each hour). Its *period* is the time of one
run; the task created for it has an id derived from (schedule name, period start), which is how
the workers make sure each period runs once however many of them schedule (``worker.periodic``).

This module has no I/O: declarations, the period arithmetic, and the JSON form the workers
publish to Redis (``to_public`` / ``from_public``, a total decoder).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from yadtq.errors import InvalidTask
from yadtq.keys import DEFAULT_QUEUE, check_queue
from yadtq.registry import Registry
from yadtq.wire import NAME_RE, check_args

SCHEDULE_VERSION = 1
"""Version of the published JSON form of a schedule."""
MAX_WALK = 10_000
"""Most cron times stepped through to find one period start (a schedule firing every minute
needs 120 for the two hours walked back over a daylight-saving change)."""
_DST_MARGIN = timedelta(hours=2, seconds=1)


class ScheduleError(ValueError):
    """A schedule that cannot be declared, or a published one that cannot be read."""


@dataclass(frozen=True)
class Schedule:
    """One periodic task: ``task`` with ``args``, by ``cron`` or ``every`` seconds (one of them)."""

    name: str
    task: str
    args: tuple[Any, ...] = ()
    cron: str | None = None
    every: int | None = None
    tz: str = "UTC"
    queue: str | None = None
    """The queue its tasks go to; None: the task's own (``Schedules.routed``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            raise ScheduleError(f"invalid schedule name {str(self.name)[:70]!r}: 1-64 letters, "
                                "digits, '_', '.', '-', starting with a letter or '_'")
        if not isinstance(self.task, str) or not NAME_RE.fullmatch(self.task):
            raise ScheduleError(f"schedule {self.name}: invalid task name {str(self.task)[:70]!r}")
        try:
            check_args(self.args)
        except ValueError as exc:
            raise ScheduleError(f"schedule {self.name}: {exc}") from None
        if (self.cron is None) == (self.every is None):
            raise ScheduleError(f"schedule {self.name}: give exactly one of cron= or every=")
        if self.every is not None and (type(self.every) is not int or self.every < 1):
            raise ScheduleError(f"schedule {self.name}: every must be a whole number of seconds "
                                f">= 1, got {self.every!r}")
        _zone(self.tz, self.name)
        if self.queue is not None:
            try:
                check_queue(self.queue)
            except ValueError as exc:
                raise ScheduleError(f"schedule {self.name}: {exc}") from None
        if self.cron is not None:
            _check_cron(self.cron, self.name, self.tz)

    # ------------------------------------------------------------------ periods
    def period_start(self, now: float) -> int | None:
        """Start (epoch s) of the latest period at or before ``now``; None if there is none."""
        if self.every is not None:
            return math.floor(now / self.every) * self.every
        assert self.cron is not None  # __post_init__: one of them
        zone = _zone(self.tz, self.name)
        end = math.floor(now)
        try:  # a first guess going back, then forward (cronsim's DST rules are defined forward)
            guess = next(CronSim(self.cron, datetime.fromtimestamp(end + 1, zone), reverse=True))
        except StopIteration:
            return None
        best: int | None = None
        it = CronSim(self.cron, guess - _DST_MARGIN)
        for _ in range(MAX_WALK):
            try:
                at = int(next(it).timestamp())
            except StopIteration:
                break
            if at > end:
                break
            best = at
        return best

    def next_after(self, now: float) -> int | None:
        """The first period start strictly after ``now``; None if there is none."""
        if self.every is not None:
            return (math.floor(now / self.every) + 1) * self.every
        assert self.cron is not None
        # walked forward from before ``now``, as period_start: a start inside the repeated hour
        # of a fall-back would be read as its first occurrence, and give a time before ``now``
        it = CronSim(self.cron, datetime.fromtimestamp(math.floor(now), _zone(self.tz, self.name))
                     - _DST_MARGIN)
        for _ in range(MAX_WALK):
            try:
                at = int(next(it).timestamp())
            except StopIteration:
                return None
            if at > now:
                return at
        return None

    def task_id(self, period: int) -> str:
        """The id of this schedule's task for ``period``: the same on every worker, 32 hex."""
        return task_id_for(self.name, period)

    @property
    def expression(self) -> str:
        """What the schedule says, for people: ``cron 0 * * * * (UTC)`` or ``every 5m``."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.tz})"
        assert self.every is not None
        return f"every {format_every(self.every)}"

    # ------------------------------------------------------------------ published form
    def to_public(self) -> dict[str, Any]:
        """What workers publish to Redis (``<prefix>:schedules``) for the CLI and the dashboard."""
        return {"v": SCHEDULE_VERSION, "name": self.name, "task": self.task,
                "args": list(self.args), "cron": self.cron, "every": self.every, "tz": self.tz,
                "queue": self.queue}

    @classmethod
    def from_public(cls, raw: str) -> Schedule:
        """Read a published schedule; ``ScheduleError`` with one reason for anything malformed."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ScheduleError("not JSON") from None
        if not isinstance(data, dict):
            raise ScheduleError(f"not a JSON object but {type(data).__name__}")
        if data.get("v") != SCHEDULE_VERSION:
            raise ScheduleError(f"unknown version {str(data.get('v'))[:20]!r} "
                                f"(this version reads {SCHEDULE_VERSION})")
        args, cron, every, tz = data.get("args", []), data.get("cron"), data.get("every"), \
            data.get("tz", "UTC")
        if not isinstance(args, list):
            raise ScheduleError("args is not a list")
        if cron is not None and not isinstance(cron, str):
            raise ScheduleError("cron is not a string")
        if not isinstance(tz, str):
            raise ScheduleError("tz is not a string")
        return cls(data.get("name"), data.get("task"), tuple(args), cron, every, tz,  # type: ignore[arg-type]
                   data.get("queue"))


@dataclass(frozen=True)
class ScheduleInfo:
    """A published schedule as ``yadtq schedules`` and the dashboard show it."""

    name: str
    schedule: Schedule | None
    """None when the published entry is malformed (``problem`` says why)."""
    problem: str | None = None
    next_run: int | None = None
    """The next period start (epoch s) after the time of the listing."""
    last_period: int | None = None
    """The latest period fired (epoch s), from the marker the scheduler keeps."""
    last_task: str | None = None
    """The id of the task created for ``last_period``."""
    last_state: str | None = None
    """That task's state, ``invalid`` for a malformed record, None if it is gone (reset, expired)."""
    published_at: float | None = None
    """When a worker last published it (epoch s, Redis's clock); None for an entry published
    by a worker older than this field."""
    stale: bool = False
    """Not published for more than ``yadtq.schedule_store.STALE_AFTER``: no running worker
    declares it, so it has no ``next_run`` (it is removed after a day)."""


@dataclass
class Schedules:
    """The schedules of one program (the workers fire them), by name."""

    _by_name: dict[str, Schedule] = field(default_factory=dict)

    def add(self, schedule: Schedule) -> Schedule:
        if schedule.name in self._by_name and self._by_name[schedule.name] != schedule:
            raise ScheduleError(f"schedule {schedule.name!r} is declared twice, differently")
        self._by_name[schedule.name] = schedule
        return schedule

    def all(self) -> list[Schedule]:
        return [self._by_name[n] for n in sorted(self._by_name)]

    def __len__(self) -> int:
        return len(self._by_name)

    def check(self, registry: Registry) -> None:
        """Every schedule names a registered task and its arguments fit it (``ScheduleError``)."""
        for s in self.all():
            try:
                spec, args = registry.validate(s.task, s.args)
            except InvalidTask as exc:
                raise ScheduleError(f"schedule {s.name}: {exc}") from None
            if spec.fn is None:
                raise ScheduleError(f"schedule {s.name}: task {s.task} is not registered here")

    def routed(self, registry: Registry) -> list[Schedule]:
        """Every schedule with its queue set: its own, else its task's (``@task(queue=...)``)."""
        out = []
        for s in self.all():
            spec = registry.get(s.task)
            out.append(s if s.queue is not None else replace(
                s, queue=spec.queue if spec is not None else DEFAULT_QUEUE))
        return out


default_schedules = Schedules()
"""The schedules ``periodic`` declares; every worker loaded with them fires them (one at a time)."""


def periodic(task: str, *, cron: str | None = None, every: timedelta | int | None = None,
             args: Sequence[Any] = (), name: str | None = None, tz: str = "UTC",
             schedules: Schedules | None = None, queue: str | None = None) -> Schedule:
    """Declare a periodic task: run ``task`` with ``args`` by the 5-field ``cron`` expression
    (evaluated in the time zone ``tz``) or ``every`` interval (a ``timedelta`` or seconds, whole,
    at least 1 s). ``name`` (default: the task name) identifies the schedule; it must be unique.
    ``queue`` (default: the task's own queue) is where its tasks go.
    An invalid expression, interval, zone, argument or queue raises ``ScheduleError`` here."""
    seconds: int | None = None
    if every is not None:
        total = every.total_seconds() if isinstance(every, timedelta) else every
        if isinstance(total, bool) or not isinstance(total, int | float) \
                or not math.isfinite(total) or total != int(total):
            raise ScheduleError(f"every must be a whole number of seconds, got {every!r}")
        seconds = int(total)
    schedule = Schedule(name or task, task, tuple(args), cron, seconds, tz, queue)
    return (schedules if schedules is not None else default_schedules).add(schedule)


def task_id_for(schedule_name: str, period: int) -> str:
    """32 hex digits from (schedule name, period start): deterministic, so two schedulers racing
    for one period create one task."""
    return hashlib.sha256(f"yadtq-periodic\0{schedule_name}\0{period}".encode()).hexdigest()[:32]


def format_every(seconds: int) -> str:
    """``90`` -> ``1m30s``, ``3600`` -> ``1h``, ``86400`` -> ``1d``."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _zone(tz: str, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(f"schedule {name}: unknown time zone {str(tz)[:70]!r}") from None


def _check_cron(expr: str, name: str, tz: str) -> None:
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise ScheduleError(f"schedule {name}: cron expression {str(expr)[:70]!r} must have 5 "
                            "fields: minute hour day-of-month month day-of-week")
    try:
        it = CronSim(expr, datetime.now(_zone(tz, name)))
        next(it)
    except CronSimError as exc:
        raise ScheduleError(f"schedule {name}: invalid cron expression {expr!r}: {exc}") from None
    except StopIteration:
        raise ScheduleError(f"schedule {name}: cron expression {expr!r} never fires") from None


__all__ = ["Schedule", "ScheduleError", "ScheduleInfo", "Schedules", "default_schedules",
           "format_every", "periodic", "task_id_for"]
