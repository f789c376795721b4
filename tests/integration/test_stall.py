"""A Kafka consumer that silently stops fetching one partition, on the real Kafka and Redis: the
worker must notice (its lag stays while nothing comes and the worker idles) and join with a new
consumer, so every task completes once (``worker/stall.py``).

kafka-python 3.0.12 did exactly this after a pause (``tests/integration/test_paused_fetch.py``); here
the real consumer is made to do it on purpose: the partition stays paused underneath while the
worker believes it resumed it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import worker.worker as worker_module
from tests.polling import eventually
from worker.interfaces import kafka_consumer
from worker.worker import Worker
from yadtq import Client
from yadtq.broker import ensure_topics
from yadtq.models import TaskState
from yadtq.registry import default_registry
from yadtq.settings import Settings

pytestmark = pytest.mark.integration


class Withholding:
    """The real consumer, except that ``partition`` never delivers: paused as soon as it is
    assigned and kept paused through every resume (the worker does not know). What the poll that
    assigned it brought of it is taken back (a seek to the first such offset), as if never fetched,
    so its messages stay waiting after the consumer's position."""

    def __init__(self, real: Any, partition: int) -> None:
        self.real, self.partition, self.kept = real, partition, False

    def poll(self, timeout_ms: int, max_records: int | None = None) -> Any:
        records = self.real.poll(timeout_ms, max_records)
        if not self.kept and self.partition in self.real.assignment():
            self.real.pause({self.partition})
            self.kept = True
        held = [r.offset for r in records if r.partition == self.partition]
        if held:
            self.real.seek(self.partition, min(held))
        return [r for r in records if r.partition != self.partition]

    def resume(self, partitions: set[int]) -> None:
        self.real.resume(partitions - {self.partition})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_consumer_that_stops_fetching_a_partition_is_renewed(
        real_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "STALL_CHECK_SECONDS", 1.0)
    settings = real_settings.with_(partitions=2, commit_after=0.2)
    ensure_topics(settings)
    made: list[Any] = []

    def factory(settings: Settings, wid: str, revoked: Any, assigned: Any) -> Any:
        consumer = kafka_consumer(settings, wid, revoked, assigned)
        made.append(consumer if made else Withholding(consumer, 1))
        return made[-1]

    client = Client(settings)
    w = Worker(settings, default_registry, consumer_factory=factory, worker_id="stall-test")
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        ids = client.submit_many([("ADD", [i, 1]) for i in range(40)])
        start = time.monotonic()
        assert eventually(lambda: all(t is not None and t.state is TaskState.COMPLETED
                                      for t in map(client.get, ids)), timeout=60)
        took = time.monotonic() - start
        assert len(made) == 2, f"consumers made: {len(made)}"
        assert isinstance(made[0], Withholding) and made[0].kept  # the first one did withhold
        assert [client.get(i).attempt for i in ids] == [1] * 40
        assert took < 30, took
    finally:
        w.request_stop()
        thread.join(30)
        client.close()
    assert not thread.is_alive()
