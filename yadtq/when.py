"""When a task should run: a delay (``30``, ``"30s"``, ``"5m"``) or an ETA (a ``datetime``, an ISO
text), checked and turned into a due time. No I/O; every bad input is ``InvalidTask`` with one
clear reason (never a stray ``ValueError`` or ``OverflowError``)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from yadtq.errors import InvalidTask

MAX_DELAY_SECONDS = 366 * 86400.0
"""Longest delay, and farthest ETA from now: a year and a day (further is a mistake)."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)", re.ASCII)
DURATION_HELP = "a number of seconds or a duration such as 30s, 5m, 2h, 1d"


@dataclass(frozen=True)
class When:
    """A due time: ``seconds`` after Redis's clock now (``relative``) or an epoch time."""

    seconds: float
    relative: bool


def parse_duration(text: str) -> float:
    """``"30"``/``"30s"``/``"5m"``/``"2h"``/``"1d"`` -> seconds (``1m30s`` is not accepted)."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if not match:
        raise InvalidTask(f"{text[:40]!r} is not a duration: use {DURATION_HELP}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_at(text: str) -> datetime:
    """An ISO 8601 date and time (``2026-12-01T09:00``, ``2026-12-01 09:00:30+01:00``); without an
    offset it is local time."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidTask(f"{text[:40]!r} is not a date and time: use ISO 8601, e.g. "
                          "2026-12-01T09:00 (local) or 2026-12-01T09:00+00:00") from None


def split_text(text: str) -> tuple[str, str | None, str | None]:
    """A command line's trailing ``in DURATION`` or ``at DATETIME`` taken off: ``"ADD 2 3 in 30s"``
    -> ``("ADD 2 3", "30s", None)``. Quote a last-but-one argument meant literally (``'in'``)."""
    words = text.rstrip().rsplit(None, 2)
    if len(words) == 3 and words[1].lower() in ("in", "at"):
        rest = text.rstrip()[: -len(words[2])].rstrip()[: -len(words[1])].rstrip()
        return (rest, words[2], None) if words[1].lower() == "in" else (rest, None, words[2])
    return text, None, None


_TRAILING = ("--wait", "--in", "--at", "--queue", "--priority")


def split_submit_words(words: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``yadtq submit``'s words without a trailing ``--wait SECONDS`` (a float), ``--in DURATION``,
    ``--at TIME``, ``--queue NAME`` or ``--priority LEVEL`` (texts), and those options (the
    task's words are otherwise literal)."""
    found: dict[str, Any] = {}
    while len(words) >= 2 and words[-2] in _TRAILING and words[-2] not in found:
        found[words[-2]], words = words[-1], words[:-2]
    if "--wait" in found:
        try:
            found["--wait"] = float(found["--wait"])
        except ValueError:
            raise InvalidTask(f"--wait needs a number of seconds, got {found['--wait'][:40]!r}") \
                from None
    return (words[1:] if words and words[0] == "--" else words), found


def due(delay: Any = None, eta: Any = None, now: float | None = None) -> When | None:
    """The due time for ``delay`` (seconds: a number, a ``timedelta`` or a duration text) or
    ``eta`` (an aware ``datetime``, a naive one meaning local time, or an ISO text), at most one
    of them; None when the task is due now or in the past (it goes to Kafka at once)."""
    if delay is not None and eta is not None:
        raise InvalidTask("give a delay or an ETA, not both")
    if delay is not None:
        seconds = _seconds(delay)
        return When(seconds, relative=True) if seconds > 0 else None
    if eta is not None:
        at = parse_at(eta) if isinstance(eta, str) else eta
        if not isinstance(at, datetime):
            raise InvalidTask(f"eta must be a datetime or an ISO 8601 text, not {type(eta).__name__}")
        try:
            epoch = at.timestamp()  # naive: local time
        except (OverflowError, OSError, ValueError):
            raise InvalidTask(f"eta {at!r} is not a time this system can represent") from None
        t = time.time() if now is None else now
        if epoch - t > MAX_DELAY_SECONDS:
            raise InvalidTask(f"eta {at.isoformat()} is more than {MAX_DELAY_SECONDS / 86400:g} days "
                              "away")
        return When(epoch, relative=False) if epoch > t else None
    return None


def _seconds(delay: Any) -> float:
    if isinstance(delay, bool):
        raise InvalidTask("delay must be a number of seconds, not true/false")
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, str):
        seconds = parse_duration(delay)
    elif isinstance(delay, int | float):
        try:
            seconds = float(delay)
        except OverflowError:
            raise InvalidTask("delay is too large") from None
    else:
        raise InvalidTask(f"delay must be a number of seconds, not {type(delay).__name__}")
    if not math.isfinite(seconds):
        raise InvalidTask("delay must be a finite number of seconds")
    if seconds < 0:
        raise InvalidTask(f"delay must not be negative (got {seconds:g} s)")
    if seconds > MAX_DELAY_SECONDS:
        raise InvalidTask(f"delay of {seconds:g} s is more than {MAX_DELAY_SECONDS / 86400:g} days")
    return seconds
