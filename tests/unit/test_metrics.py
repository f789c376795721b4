"""``yadtq_consumer_lag`` on ``FakeBroker``: one sample per queue, priority level and partition of
every topic the worker consumes; none for a topic that does not exist, none when Kafka cannot say."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import generate_latest

from worker.metrics import Metrics
from yadtq.errors import ServiceUnavailable
from yadtq.settings import Settings
from yadtq.testing import FakeBroker

LAG = "yadtq_consumer_lag"


def lag_samples(metrics: Metrics) -> dict[tuple[str, str, int], float]:
    """(queue, priority, partition) -> lag, from one collection of the registry."""
    return {(s.labels["queue"], s.labels["priority"], int(s.labels["partition"])): s.value
            for family in metrics.registry.collect() if family.name == LAG
            for s in family.samples}


def fill(broker: FakeBroker, topic: str, n: int) -> None:
    """``n`` messages without a key: partitions 0, 1, 2, 3, 0... in turn."""
    for i in range(n):
        broker.append(topic, f"m{i}".encode())


@pytest.fixture
def two_queues(fake_settings: Settings) -> Settings:
    return fake_settings.with_(queues="default,emails")


def test_every_queue_and_priority_of_the_worker_has_its_lag(two_queues: Settings,
                                                             fake_broker: FakeBroker) -> None:
    s = two_queues
    fill(fake_broker, s.queue_topic("default"), 3)  # the tasks topic itself
    fill(fake_broker, s.queue_topic("default", "high"), 2)
    fill(fake_broker, s.queue_topic("emails"), 5)
    fill(fake_broker, s.queue_topic("emails", "high"), 1)
    fill(fake_broker, s.queue_topic("other"), 7)  # a queue this worker does not consume
    fill(fake_broker, s.dead_letter_topic, 2)
    metrics = Metrics()
    metrics.watch_lag(s, fake_broker.offsets)

    assert lag_samples(metrics) == {
        **{("default", "normal", p): lag for p, lag in enumerate([1, 1, 1, 0])},
        **{("default", "high", p): lag for p, lag in enumerate([1, 1, 0, 0])},
        **{("emails", "normal", p): lag for p, lag in enumerate([2, 1, 1, 1])},
        **{("emails", "high", p): lag for p, lag in enumerate([1, 0, 0, 0])},
    }  # no low-priority topic exists yet: no sample for one, nor for "other" or the dead letters
    assert set(fake_broker.topics) == {s.queue_topic("default"), s.queue_topic("default", "high"),
                                       s.queue_topic("emails"), s.queue_topic("emails", "high"),
                                       s.queue_topic("other"), s.dead_letter_topic}  # none made

    consumer = fake_broker.consumer(s, "w1")  # subscribes to (so makes) the low topics too
    emails = s.queue_topic("emails")
    consumer.commit({r.partition: r.offset + 1 for r in consumer.poll(100) if r.topic == emails})
    after = lag_samples(metrics)
    assert {k: v for k, v in after.items() if k[0] == "emails"} == {
        **{("emails", "normal", p): 0 for p in range(4)},
        **{("emails", "high", p): lag for p, lag in enumerate([1, 0, 0, 0])},
        **{("emails", "low", p): 0 for p in range(4)},
    }
    assert after[("default", "normal", 0)] == 1 and after[("default", "low", 3)] == 0
    assert len(after) == 2 * 3 * 4

    text = generate_latest(metrics.registry).decode()
    assert 'yadtq_consumer_lag{partition="0",priority="high",queue="emails"} 1.0' in text
    assert "aggregate with max" in text  # the help says how to sum workers up


def test_a_queue_whose_topic_does_not_exist_has_no_sample_and_no_error(
        fake_settings: Settings, fake_broker: FakeBroker, caplog: pytest.LogCaptureFixture) -> None:
    s = fake_settings.with_(queues="default,never-used")
    fill(fake_broker, s.queue_topic("default"), 2)
    metrics = Metrics()
    metrics.watch_lag(s, fake_broker.offsets)
    with caplog.at_level(logging.WARNING):
        samples = lag_samples(metrics)
    assert samples == {("default", "normal", p): lag for p, lag in enumerate([1, 1, 0, 0])}
    assert not caplog.records
    assert set(fake_broker.topics) == {s.queue_topic("default")}  # reading made no topic

    nothing = Settings(key_prefix="yadtq:unit", queues="nobody")  # no topic of the worker exists
    empty = Metrics()
    empty.watch_lag(nothing, fake_broker.offsets)
    assert lag_samples(empty) == {}
    assert not caplog.records


def test_a_read_failure_gives_no_sample_and_a_warning(two_queues: Settings,
                                                      fake_broker: FakeBroker,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    fill(fake_broker, two_queues.queue_topic("emails", "high"), 1)
    metrics = Metrics()
    metrics.watch_lag(two_queues, fake_broker.offsets)
    assert lag_samples(metrics) == {("emails", "high", p): lag
                                    for p, lag in enumerate([1, 0, 0, 0])}
    fake_broker.available = False
    with caplog.at_level(logging.WARNING, logger="yadtq.worker"):
        assert lag_samples(metrics) == {}
        text = generate_latest(metrics.registry).decode()  # the rest is still served
    assert "yadtq_tasks_in_flight" in text and "yadtq_consumer_lag{" not in text
    assert any("consumer lag not read" in r.getMessage() for r in caplog.records)
    fake_broker.available = True  # a new offsets reader is made at the next scrape
    assert lag_samples(metrics)[("emails", "high", 0)] == 1


class HalfBroken:
    """Offsets whose second end-offsets read fails, once (the next reader made reads all)."""

    failures = 1

    def __init__(self, broker: FakeBroker, settings: Settings) -> None:
        self.inner = broker.offsets(settings)
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def end_offsets(self, partitions: int, topic: str | None = None) -> dict[int, int]:
        self.reads += 1
        if self.reads == 2 and HalfBroken.failures:
            HalfBroken.failures -= 1
            raise ServiceUnavailable("Kafka: list offsets timed out")
        return self.inner.end_offsets(partitions, topic)


def test_a_failure_on_one_topic_gives_no_sample_at_all(two_queues: Settings,
                                                       fake_broker: FakeBroker,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HalfBroken, "failures", 1)
    fill(fake_broker, two_queues.queue_topic("default"), 4)
    fill(fake_broker, two_queues.queue_topic("emails"), 4)
    metrics = Metrics()
    metrics.watch_lag(two_queues, lambda s: HalfBroken(fake_broker, s))  # type: ignore[arg-type,return-value]
    assert lag_samples(metrics) == {}  # not the first topic's samples alone
    assert len(lag_samples(metrics)) == 8  # a new reader: both topics, 4 partitions each
