"""A screen kept fresh by two loops in thread workers: data refreshes and service health checks.

Each loop runs one request at a time and schedules the next one only after the last finished
(``set_timer``), so a slow Redis or Kafka never stacks requests. While another screen (a dialog,
the detail view) is on top, both loops hold back and catch up when this screen is shown again.
Results come back as typed messages; widgets are only touched on the UI thread.
"""

from __future__ import annotations

from textual import work
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from yadtq.errors import ServiceUnavailable
from yadtq.models import TaskState
from yadtq.registry import TaskSpec
from yadtq_tui.data import Context, Snapshot, fetch_snapshot
from yadtq_tui.messages import HealthChecked, PollFailed, SnapshotReady

SPECS_EVERY = 20
"""Re-read the known task names every this many refreshes (workers may publish new ones)."""


class LiveScreen(Screen[None]):
    """Base of the dashboard: subclasses implement ``apply_snapshot`` and ``show_services``."""

    def __init__(self, context: Context, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.context = context
        self.service = context.service
        self.redis_error: str | None = None
        """Why the last Redis read failed, while it is unreachable."""
        self.kafka_error: str | None = None
        """Why the last Kafka check failed, while it is unreachable."""
        self.redis_up: bool | None = None
        self.kafka_up: bool | None = None
        self.polls = 0
        """Refreshes applied so far."""
        self._poll_timer: Timer | None = None
        self._health_timer: Timer | None = None
        self._poll_due = False
        self._health_due = False
        self._fetches = 0
        self._have_specs = False

    # ------------------------------------------------------------------ hooks
    @property
    def state_filter_now(self) -> TaskState | None:
        """The state the next refresh lists (None = all)."""
        return None

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Show ``snap`` (UI thread)."""
        raise NotImplementedError

    def show_services(self) -> None:
        """Show the current ``redis_error`` / ``kafka_error`` state."""

    def show_specs(self, specs: tuple[TaskSpec, ...]) -> None:
        """Show the known tasks (also called when Redis is away: the local ones)."""

    # ------------------------------------------------------------------ refresh loop
    def poll_now(self) -> None:
        """Refresh at once (or as soon as the screen on top closes)."""
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        if self.app.screen is not self:
            self._poll_due = True
            return
        self._poll_due = False
        self._fetches += 1
        with_specs = not self._have_specs or self._fetches % SPECS_EVERY == 0
        self._fetch(self.state_filter_now, with_specs)

    def _schedule_poll(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(self.context.poll_interval, self.poll_now, name="poll")

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False, description="refresh")
    def _fetch(self, state_filter: TaskState | None, with_specs: bool) -> None:
        worker = get_current_worker()
        try:
            snapshot = fetch_snapshot(self.service, state_filter, self.context.page_size,
                                      with_specs=with_specs)
        except ServiceUnavailable as exc:
            # task_specs() falls back to the local registry when Redis is away
            specs: tuple[TaskSpec, ...] | None = (
                tuple(self.service.task_specs()) if with_specs else None)
            if not worker.is_cancelled:
                self.post_message(PollFailed(str(exc), specs))
            return
        if not worker.is_cancelled:
            self.post_message(SnapshotReady(snapshot))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Show a refresh's data (Redis works); schedule the next refresh."""
        self._schedule_poll()
        self.set_redis(None)
        if message.snapshot.state_filter != self.state_filter_now:
            return  # read before the filter changed
        self.polls += 1
        self._have_specs = self._have_specs or message.snapshot.specs is not None
        self.apply_snapshot(message.snapshot)

    def on_poll_failed(self, message: PollFailed) -> None:
        """Keep the last data, say why, and try again later."""
        self._schedule_poll()
        self.set_redis(message.error)
        if message.specs is not None:
            self._have_specs = True
            self.show_specs(message.specs)

    def on_screen_resume(self) -> None:
        """The screen on top closed: run the refresh and health check that were held back."""
        if self._poll_due:
            self.poll_now()
        if self._health_due:
            self.check_health_now()

    # ------------------------------------------------------------------ health loop
    def check_health_now(self) -> None:
        """Ping Redis and Kafka at once (or as soon as the screen on top closes)."""
        if self._health_timer is not None:
            self._health_timer.stop()
            self._health_timer = None
        if self.app.screen is not self:
            self._health_due = True
            return
        self._health_due = False
        self._check_health()

    @work(thread=True, exclusive=True, group="health", exit_on_error=False,
          description="health check")
    def _check_health(self) -> None:
        health = self.service.health()
        if not get_current_worker().is_cancelled:
            self.post_message(HealthChecked(health))

    def on_health_checked(self, message: HealthChecked) -> None:
        """Record each service's state; schedule the next check."""
        self._schedule_health()
        health = message.health
        self.set_redis(None if health.redis_ok else health.redis_error or "unreachable")
        self.set_kafka(None if health.kafka_ok else health.kafka_error or "unreachable")

    def _schedule_health(self) -> None:
        if self._health_timer is not None:
            self._health_timer.stop()
        self._health_timer = self.set_timer(self.context.health_interval, self.check_health_now,
                                            name="health")

    def set_redis(self, error: str | None) -> None:
        """Redis works (None) or not (why); says so when it comes back."""
        if error is None and self.redis_error is not None:
            self.notify("Redis is reachable again.", title="Reconnected", markup=False)
        changed = (error, error is None) != (self.redis_error, self.redis_up)
        self.redis_error, self.redis_up = error, error is None
        if changed:
            self.show_services()

    def set_kafka(self, error: str | None) -> None:
        """Kafka works (None) or not (why); says so when it comes back."""
        if error is None and self.kafka_error is not None:
            self.notify("Kafka is reachable again.", title="Reconnected", markup=False)
        changed = (error, error is None) != (self.kafka_error, self.kafka_up)
        self.kafka_error, self.kafka_up = error, error is None
        if changed:
            self.show_services()

    # ------------------------------------------------------------------ failures
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Unexpected errors in any worker: say so, and keep both loops alive."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        self.notify(f"{event.worker.description} failed: {type(error).__name__}: {error}",
                    severity="error", title="Unexpected error", markup=False)
        if event.worker.group == "poll":
            self._schedule_poll()
        elif event.worker.group == "health":
            self._schedule_health()
