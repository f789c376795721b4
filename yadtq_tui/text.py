"""Turning task data into literal, terminal-safe text. No Textual import.

Everything that comes from a task (its name, arguments, result, error, worker id) is data, not
markup and not terminal control: ``clean`` makes control characters and escape sequences visible
(``\\x1b[2J`` is shown as the eight characters ``\\x1b[2J``), and ``literal`` wraps the result in a
``rich.text.Text`` so that ``[red]x[/red]`` is shown as written instead of being parsed as markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from rich.style import Style
from rich.text import Text

from yadtq.text import literal as core_literal


def clean(value: object, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """``value`` as a string with every control character shown as a visible escape (the core's
    ``yadtq.text.literal``, shared with the CLI)."""
    return core_literal(value, limit, keep_newlines=keep_newlines)


def literal(value: object, style: str | Style = "", limit: int | None = None, *,
            keep_newlines: bool = False) -> Text:
    """A ``Text`` showing ``value`` literally: never parsed as markup, controls escaped."""
    return Text(clean(value, limit, keep_newlines=keep_newlines), style=style, end="")


def format_value(value: Any) -> str:
    """A result or argument for display: strings as they are, everything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)


def format_arg(value: Any) -> str:
    """One argument as it would be typed: ``2``, ``abc``, ``"two words"``."""
    if isinstance(value, str):
        if value and not any(ch.isspace() or ch in "\"'\\" for ch in value):
            return value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    return format_value(value)


def format_args(args: Iterable[Any]) -> str:
    """The arguments of a task, space-separated, as they would be typed in the form."""
    return " ".join(format_arg(a) for a in args)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h03m``, ``3d04h``."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_time(epoch: float, tz: tzinfo | None = None) -> str:
    """``2024-11-28 15:00:00.123`` in ``tz`` (the local zone when None)."""
    when = datetime.fromtimestamp(epoch, tz) if tz is not None else datetime.fromtimestamp(epoch)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


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
