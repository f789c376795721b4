"""Making text that came from tasks safe to show in a terminal.

Task names, arguments, results and errors are data: ``literal()`` turns every control character
(C0, DEL, C1 — the bytes that start ANSI/OSC escape sequences such as ``ESC [2J`` or ``ESC ]52``) into
a visible escape like ``\\x1b``, so nothing a task carries can move the cursor, clear the screen or
write the clipboard. Markup is a separate concern: the CLI prints plain text, and the dashboard
builds ``rich.text.Text`` objects, which never parse markup.
"""

from __future__ import annotations

import json
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def literal(text: str, limit: int | None = None) -> str:
    """``text`` with control and bidi-override characters made visible; cut to ``limit``."""
    out = _CONTROL.sub(_escape, text)
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 1)] + "…"
    return out


def show_value(value: Any, limit: int | None = None) -> str:
    """A task argument or result as one safe line: strings as they are, the rest as JSON."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return literal(text, limit)


def show_args(args: tuple[Any, ...] | list[Any], limit: int | None = None) -> str:
    """Arguments as they would be typed: ``2 3`` or ``"two words" 3``."""
    parts = []
    for a in args:
        if isinstance(a, str):
            parts.append(json.dumps(a, ensure_ascii=False) if (not a or " " in a) else a)
        else:
            parts.append(json.dumps(a))
    return literal(" ".join(parts), limit)
