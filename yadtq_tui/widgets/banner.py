"""The disconnection banner shown above the data while Redis or Kafka is unreachable, or while
refreshes fail for another reason."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from yadtq_tui.text import clean


class Banner(Static):
    """Hidden unless a service is down; its lines are literal text (service errors included)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text(""), id=id)
        self.lines: tuple[str, ...] = ()

    def show_problems(self, redis_error: str | None, kafka_error: str | None, *,
                      have_data: bool = True, refresh_error: str | None = None) -> None:
        """Show one line per unreachable service, and one for a failing refresh that an
        unreachable Redis does not explain; hide the banner when all is fine."""
        lines = []
        shown = "showing last data" if have_data else "no data yet"
        if redis_error:
            lines.append(f"⚠ {_about('Redis', redis_error)} — {shown}, retrying")
        if kafka_error:
            lines.append(f"⚠ {_about('Kafka', kafka_error)} — submits and retries are refused "
                         "until it is back")
        if refresh_error and not redis_error:
            lines.append(f"⚠ Could not refresh: {clean(refresh_error, 140)} — {shown}, retrying")
        self.lines = tuple(lines)
        self.update(Text("\n".join(lines)))
        self.set_class(bool(lines), "-visible")


def _about(service: str, error: str) -> str:
    """``Redis unreachable: <why>``, without saying "Redis unreachable" twice."""
    text = clean(error, 140)
    return text if text.startswith(service) else f"{service} unreachable: {text}"
