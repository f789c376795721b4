"""The core's formatting (``yadtq.text``) as the dashboard uses it. No Textual import.

Everything that comes from a task (its name, arguments, result, error, worker id) is data, not
markup and not terminal control: ``clean`` makes control characters and escape sequences visible
(``\\x1b[2J`` is shown as the eight characters ``\\x1b[2J``), and ``literal`` wraps the result in a
``rich.text.Text`` so that ``[red]x[/red]`` is shown as written instead of being parsed as markup.
The ``format_*`` names are the core's functions; ``format_value`` keeps line breaks, so the detail
view can show a multi-line result (``literal`` decides whether they stay).
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text

from yadtq.text import format_args, format_count, format_duration, format_rate
from yadtq.text import format_timestamp as format_time
from yadtq.text import format_value as _format_value
from yadtq.text import safe_text as clean

__all__ = ["clean", "format_args", "format_count", "format_duration", "format_rate", "format_time",
           "format_value", "literal"]


def literal(value: object, style: str | Style = "", limit: int | None = None, *,
            keep_newlines: bool = False) -> Text:
    """A ``Text`` showing ``value`` literally: never parsed as markup, controls escaped."""
    return Text(clean(value, limit, keep_newlines=keep_newlines), style=style, end="")


def format_value(value: Any) -> str:
    """A result or argument for display (``yadtq.text.format_value``), line breaks kept."""
    return _format_value(value, keep_newlines=True)
