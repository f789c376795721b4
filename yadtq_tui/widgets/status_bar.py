"""The top bar: service connections, consumer lag, tasks per state, throughput and the
reconciler's repairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from yadtq.keys import DEFAULT_QUEUE
from yadtq.models import STATES, RepairStats, TaskState
from yadtq_tui.data import rate
from yadtq_tui.text import format_count, format_rate, format_time
from yadtq_tui.widgets.text_line import TextLine


class ServiceLight(Static):
    """``Redis ●`` coloured by class: ``-up``, ``-down`` or ``-unknown``."""

    def __init__(self, service: str, *, id: str | None = None) -> None:
        super().__init__(Text(f"{service} ?"), id=id, classes="service -unknown")
        self.service = service

    def set_up(self, up: bool | None) -> None:
        """Show the service as reachable (True), unreachable (False) or not yet known (None)."""
        word = "?" if up is None else ("up" if up else "DOWN")
        self.update(Text(f"{self.service} {'●' if up else '○'} {word}"))
        self.set_class(up is True, "-up")
        self.set_class(up is False, "-down")
        self.set_class(up is None, "-unknown")


class StatusBar(Vertical):
    """Redis and Kafka state and throughput (a sparkline of the last minute and a rate) on the
    first line, tasks per state and the reconciler's repairs (once it made some) on the second."""

    def compose(self) -> ComposeResult:
        """The parts of the bar."""
        with Horizontal(id="status-services"):
            yield Static(Text("YADTQ"), id="app-title")
            yield ServiceLight("Redis", id="redis-light")
            yield ServiceLight("Kafka", id="kafka-light")
            yield TextLine(id="lag")
            yield Static(Text(""), id="status-fill")
            yield Static(Text("finished per second, last minute"), id="throughput-label")
            yield Sparkline([0] * 60, id="throughput")
            yield TextLine("0/s", id="rate")
        with Horizontal(id="status-counts"):
            for state in STATES:
                yield TextLine(f"{state.value} -", id=f"count-{state.value}",
                               classes=f"count state-{state.value}")
            yield TextLine("total -", id="count-total", classes="count")
            yield TextLine(id="repairs")

    def show_counts(self, counts: Mapping[TaskState, int]) -> None:
        """Tasks per state (from the counters)."""
        for state in STATES:
            self.query_one(f"#count-{state.value}", TextLine).show(
                f"{state.value} {format_count(counts.get(state, 0))}")
        total = sum(counts.values())
        self.query_one("#count-total", TextLine).show(f"total {format_count(total)}")

    def show_repairs(self, repairs: RepairStats, tz: tzinfo | None = None) -> None:
        """``repaired N`` once the reconciler re-sent or re-queued a task; its tooltip says which
        kinds, how many rounds ran, and when and by whom the last one (timestamps in ``tz``)."""
        widget = self.query_one("#repairs", TextLine)
        repaired = repairs.resent_queued + repairs.requeued_in_progress
        widget.set_class(repaired > 0, "-visible")
        if repaired <= 0:
            return
        widget.show(f"⟲ repaired {format_count(repaired)}")
        tooltip = repairs_text(repairs, tz)
        if str(widget.tooltip) != tooltip:
            widget.tooltip = Text(tooltip)

    def show_throughput(self, per_second: Sequence[int]) -> None:
        """Tasks finished per second over the last minute (oldest first)."""
        sparkline = self.query_one("#throughput", Sparkline)
        data = [float(v) for v in per_second] or [0.0]
        if list(sparkline.data or []) != data:
            sparkline.data = data
        self.query_one("#rate", TextLine).show(format_rate(rate(per_second)))

    def show_lag(self, lag: int | None, queues: Sequence[tuple[str, int]] = ()) -> None:
        """``lag N``: messages the workers have not committed yet (hidden while unknown); with
        named queues, per queue: ``lag 12 · default 10 · emails 2``."""
        widget = self.query_one("#lag", TextLine)
        widget.set_class(lag is not None, "-visible")
        widget.set_class(bool(lag), "-behind")
        if lag is not None:
            widget.show(lag_text(lag, queues))
            if widget.tooltip is None:
                widget.tooltip = Text("Messages of the tasks topics that the workers' consumer "
                                      "group has not committed yet (all partitions), in all and "
                                      "per queue.")

    def show_services(self, redis_up: bool | None, kafka_up: bool | None) -> None:
        """Connection state of each service."""
        self.query_one("#redis-light", ServiceLight).set_up(redis_up)
        self.query_one("#kafka-light", ServiceLight).set_up(kafka_up)


def lag_text(lag: int, queues: Sequence[tuple[str, int]] = ()) -> str:
    """``lag 12``, or with queues other than ``default``: ``lag 12 · default 10 · emails 2``."""
    text = f"lag {format_count(lag)}"
    if any(name != DEFAULT_QUEUE for name, _ in queues):
        text += "".join(f" · {name} {format_count(n)}" for name, n in queues)
    return text


def repairs_text(repairs: RepairStats, tz: tzinfo | None = None) -> str:
    """What the reconciler did, in a sentence or two (the ``repaired N`` tooltip)."""
    text = (f"The workers' reconciler re-sent {format_count(repairs.resent_queued)} queued "
            f"task{'s' if repairs.resent_queued != 1 else ''} that had no message and re-queued "
            f"{format_count(repairs.requeued_in_progress)} in-progress "
            f"task{'s' if repairs.requeued_in_progress != 1 else ''} of dead workers, in "
            f"{format_count(repairs.runs)} round{'s' if repairs.runs != 1 else ''}.")
    if repairs.last_run_at is not None:
        text += (f" Last round at {format_time(repairs.last_run_at, tz)}"
                 f"{f' by {repairs.last_leader}' if repairs.last_leader else ''}: "
                 f"{format_count(repairs.last_repaired)} repaired.")
    return text
