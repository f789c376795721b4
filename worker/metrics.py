"""Prometheus metrics of one worker process (``yadtq-worker --metrics-port 9464``).

The only module that imports ``prometheus_client``. Counters are kept whether or not they are
served (an increment costs about a microsecond); ``serve`` starts prometheus_client's HTTP server
on its own thread. Names follow Prometheus conventions:

- ``yadtq_tasks_total{name,state}``: tasks this worker finished, by task name and final state
- ``yadtq_attempt_seconds{name}``: histogram of attempt durations (every attempt, retries included)
- ``yadtq_retries_total{name}``: failed attempts that were retried
- ``yadtq_fenced_outcomes_total``: outcomes discarded because a newer attempt owned the task
- ``yadtq_dead_lettered_total``: messages this worker put on the dead-letter topic
- ``yadtq_repairs_total{kind}``: tasks this worker's reconciler rounds repaired
  (``resent_queued``, ``requeued_in_progress``)
- ``yadtq_tasks_in_flight``: tasks running in this worker now
- ``yadtq_consumer_renewals_total{reason}``: Kafka consumers this worker replaced (``stalled``: it
  stopped delivering what waited, ``worker.stall``; ``join``: its group join never finished)
- ``yadtq_consumer_lag{queue,priority,partition}``: the group's lag (end offset minus committed
  offset) on each Kafka partition of every topic this worker consumes: each of its queues
  (``--queues``) at each priority level. Read from Kafka at scrape time; a topic not made yet (a
  queue or level never used) has no sample, and none at all when Kafka cannot say. The same for
  every worker of the group, so aggregate it with ``max``, not ``sum``
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.interfaces import OffsetsFactory
from yadtq.broker_types import LagReader
from yadtq.errors import YadtqError
from yadtq.keys import PRIORITIES
from yadtq.settings import Settings

log = logging.getLogger("yadtq.worker")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           60.0, 300.0)
"""Attempt durations: from a 1 ms ``ADD`` to the default 5-minute time limit."""


class Metrics:
    """The worker's counters, and the HTTP endpoint that serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks = Counter("yadtq_tasks", "Tasks finished by this worker, by name and final state",
                             ["name", "state"], registry=r)
        self.attempt_seconds = Histogram("yadtq_attempt_seconds", "Duration of task attempts",
                                         ["name"], buckets=BUCKETS, registry=r)
        self.retries = Counter("yadtq_retries", "Failed attempts that were retried", ["name"],
                               registry=r)
        self.fenced = Counter("yadtq_fenced_outcomes",
                              "Outcomes discarded: a newer attempt owned the task", registry=r)
        self.dead_lettered = Counter("yadtq_dead_lettered",
                                     "Messages put on the dead-letter topic", registry=r)
        self.repairs = Counter("yadtq_repairs", "Tasks repaired by this worker's reconciler rounds",
                               ["kind"], registry=r)
        self.in_flight = Gauge("yadtq_tasks_in_flight", "Tasks running in this worker now",
                               registry=r)
        self.renewals = Counter("yadtq_consumer_renewals",
                                "Kafka consumers this worker replaced, by reason", ["reason"],
                                registry=r)
        self.server: object | None = None
        # the labelled children, kept: ``labels()`` takes a lock and builds a key on every call
        self._finished: dict[tuple[str, str], Any] = {}
        self._attempts: dict[str, Any] = {}

    def finished(self, name: str, state: str) -> None:
        key = (name, state)
        child = self._finished.get(key)
        if child is None:
            child = self._finished[key] = self.tasks.labels(name, state)
        child.inc()

    def attempt(self, name: str, seconds: float) -> None:
        child = self._attempts.get(name)
        if child is None:
            child = self._attempts[name] = self.attempt_seconds.labels(name)
        child.observe(seconds)

    def retried(self, name: str) -> None:
        self.retries.labels(name).inc()

    def repaired(self, resent_queued: int, requeued_in_progress: int) -> None:
        self.repairs.labels("resent_queued").inc(resent_queued)
        self.repairs.labels("requeued_in_progress").inc(requeued_in_progress)

    def running(self, count: Callable[[], int]) -> None:
        """``count()`` is read at each scrape for ``yadtq_tasks_in_flight``."""
        self.in_flight.set_function(count)

    def watch_lag(self, settings: Settings, offsets_factory: OffsetsFactory) -> None:
        """Adds ``yadtq_consumer_lag``, read from Kafka at each scrape."""
        self.registry.register(LagCollector(settings, offsets_factory))

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serves ``/metrics`` (text format) on ``host:port`` from a daemon thread."""
        self.server, _ = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, port)


class LagCollector(Collector):
    """The group's lag per queue, priority level and partition of the worker's topics, read at
    each scrape (``LagReader.by_topic``: the reader behind the client's and dashboard's lag)."""

    LABELS = ("queue", "priority", "partition")
    HELP = ("Messages of this worker's queues not yet committed by the group, per queue, priority "
            "and Kafka partition (the same on every worker: aggregate with max, not sum)")

    def __init__(self, settings: Settings, factory: OffsetsFactory) -> None:
        self._routes = {settings.queue_topic(q, level): (q, level)
                        for q in settings.queue_list() for level in PRIORITIES}
        self._reader = LagReader(settings, factory)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("yadtq_consumer_lag", self.HELP, labels=self.LABELS)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            lags = self._reader.by_topic(self._routes)
        except YadtqError as exc:
            log.warning("metrics: consumer lag not read: %s", exc)
            return  # no sample rather than a wrong one
        family = GaugeMetricFamily("yadtq_consumer_lag", self.HELP, labels=self.LABELS)
        for topic, (queue, level) in self._routes.items():
            for partition, behind in lags.get(topic, {}).items():
                family.add_metric([queue, level, str(partition)], behind)
        yield family
