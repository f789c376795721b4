"""A worker's first join of its group on the real broker, polled as the worker polls (short
timeouts): kafka-python 3.0.12 dropped the assignment of a leader whose SyncGroup answer came
after its ``poll`` had timed out, when its metadata changed during the join (new topics, as at a
first start), so the member held nothing, stopped heartbeating and stalled the group for
``session_timeout_ms`` (``yadtq.kafka_conn.finish_pending_join``). Without the work-around this
test found no partitions after 10 s in 6 tries of 6 (1 ms polls right after the topics are made);
with it, 0.11 s. A worker polls for 20-200 ms, and about a third of the starts of two workers on
new topics stalled so."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from yadtq import broker
from yadtq.keys import PRIORITIES
from yadtq.settings import Settings

pytestmark = pytest.mark.integration


def first_assignment_seconds(settings: Settings, limit: float = 10.0) -> float | None:
    broker.ensure_topics(settings)
    for level in PRIORITIES:  # made right before the consumer, as at a worker's first start
        broker.ensure_topics(settings.with_(topic=settings.queue_topic("default", level)))
    consumer = broker.TaskConsumer(settings, "join-test")
    try:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            consumer.poll(timeout_ms=1)
            if consumer.assignment():
                return time.monotonic() - start
        return None
    finally:
        consumer.close()


@pytest.mark.parametrize("trial", range(3))
def test_a_new_member_polled_briefly_gets_its_partitions(
        settings_factory: Callable[..., Settings], trial: int) -> None:
    settings = settings_factory()
    seconds = first_assignment_seconds(settings)
    assert seconds is not None and seconds < 3.0, f"no partitions after {seconds or 10} s"

