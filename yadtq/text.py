"""How task data is shown: one set of formatting functions for the CLI, the worker's logs and the
dashboard (``yadtq_tui.text`` wraps these into ``rich.text.Text``).

Task names, arguments, results and errors are data: ``safe_text()`` turns every control character
(C0, DEL, C1 — the bytes that start ANSI/OSC escape sequences such as ``ESC [2J`` or ``ESC ]52``),
bidi override and lone surrogate into a visible escape like ``\\x1b``, so nothing a task carries can
move the cursor, clear the screen or write the clipboard. Every ``format_*`` function that shows
task data returns safe text. Markup is a separate concern: the CLI prints plain text, and the
dashboard builds ``rich.text.Text`` objects, which never parse markup.

Applying ``safe_text`` again to its own output changes nothing (all escapes are printable), so a
caller may wrap an already formatted value once more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Any

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 controls (ESC, BEL, CR, LF, TAB...), DEL and C1 controls (CSI...)
    "\u061c\u200e\u200f\u2028\u2029"  # bidi marks, line and paragraph separators
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides and isolates ("trojan source")
    "\ufeff\ud800-\udfff]"  # byte order mark, lone surrogates (cannot even be encoded)
)
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
ELLIPSIS = "…"


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if "\ud800" <= ch <= "\udfff":
        return "\ufffd"
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(text: object, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, bidi and surrogate character made visible (``\\x1b``,
    ``\\n``); cut to ``limit`` characters (the last one becomes ``…``). ``keep_newlines`` keeps
    line feeds as real line breaks (multi-line detail text)."""
    value = text if isinstance(text, str) else str(text)
    if limit is not None and len(value) > limit * 4:
        value = value[: limit * 4]  # an escape is at most 6 characters; never escape megabytes
    if keep_newlines:
        out = "\n".join(_UNSAFE.sub(_escape, line) for line in value.split("\n"))
    else:
        out = _UNSAFE.sub(_escape, value)
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 1)] + ELLIPSIS
    return out


def format_value(value: Any, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """A task argument or result, safe to show: ``None`` as nothing, strings as they are,
    everything else as JSON (``repr`` if it is not JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return safe_text(text, limit, keep_newlines=keep_newlines)


def format_arg(value: Any) -> str:
    """One argument as it would be typed (the CLI and the form read it back the same way):
    ``2``, ``abc``, ``"two words"``, ``""``, ``null``. Not yet made safe: see ``format_args``."""
    if isinstance(value, str):
        if value and not any(ch.isspace() or ch in "\"'\\" for ch in value):
            return value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def format_args(args: Iterable[Any], limit: int | None = None) -> str:
    """A task's arguments, space-separated as they would be typed, safe to show: ``2 3``,
    ``"two words" 3``."""
    return safe_text(" ".join(format_arg(a) for a in args), limit)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h03m``, ``3d04h`` (negative durations show as ``0s``)."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_timestamp(epoch: float, tz: tzinfo | None = None, *, zone: bool = False) -> str:
    """``2024-11-28 15:00:00.123`` in ``tz`` (the local zone when None); ``zone`` appends the
    offset: ``Z`` for UTC, else ``+01:00``."""
    when = datetime.fromtimestamp(epoch, tz) if tz is not None else datetime.fromtimestamp(epoch)
    text = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    if zone:
        offset = when.astimezone().utcoffset() if tz is None else when.utcoffset()
        text += _offset(offset or timedelta(0))
    return text


def _offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def format_count(n: int) -> str:
    """``12,345``."""
    return f"{n:,}"


def format_rate(per_second: float) -> str:
    """``0/s``, ``4.2/s``, ``1,234/s``."""
    if per_second >= 100:
        return f"{per_second:,.0f}/s"
    if per_second == 0:
        return "0/s"
    return f"{per_second:.1f}/s"
