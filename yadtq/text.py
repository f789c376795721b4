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


def literal(text: object, limit: int | None = None, *, keep_newlines: bool = False) -> str:
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
