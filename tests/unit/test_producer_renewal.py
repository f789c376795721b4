"""``TaskProducer`` replaces its kafka-python producer after a delivery timed out (kafka-python's
idempotent producer stayed stuck after an expired batch on the real cluster, tests/cluster)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

import yadtq.broker as broker
from yadtq.settings import Settings
from yadtq.wire import Envelope


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error

    def add_errback(self, fn: Any) -> None:
        if self.error is not None:
            fn(self.error)


class _FakeKafkaProducer:
    """Stands in for kafka.KafkaProducer: ``stuck`` ones time out every delivery."""

    made: list[_FakeKafkaProducer] = []
    stuck_next = False

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.stuck = _FakeKafkaProducer.stuck_next
        self.sent: list[bytes] = []
        self.closed = threading.Event()
        _FakeKafkaProducer.made.append(self)

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> _Future:
        self.sent.append(value)
        return _Future(KafkaTimeoutError("Expiring 1 record(s): 10001 ms has passed") if self.stuck
                       else None)

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        self.closed.set()


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[_FakeKafkaProducer]:
    _FakeKafkaProducer.made = []
    _FakeKafkaProducer.stuck_next = True
    monkeypatch.setattr(broker, "KafkaProducer", _FakeKafkaProducer)
    return _FakeKafkaProducer


def _env(i: int) -> Envelope:
    return Envelope(f"{i:032x}", "ADD", (i, 1), time.time())


def test_the_producer_is_idempotent_with_acks_all(fake_kafka: type[_FakeKafkaProducer]) -> None:
    broker.TaskProducer(Settings())
    config = fake_kafka.made[0].config
    assert (config["acks"], config["enable_idempotence"]) == ("all", True)
    assert config["max_in_flight_requests_per_connection"] <= 5  # what idempotence allows
    assert "retries" not in config  # kafka-python's default: retry until the delivery timeout


def test_a_timed_out_delivery_renews_the_producer(fake_kafka: type[_FakeKafkaProducer]) -> None:
    producer = broker.TaskProducer(Settings())
    first = fake_kafka.made[0]
    errors = producer.send([_env(1)])
    assert isinstance(errors[0], broker.ServiceUnavailable) and "KafkaTimeoutError" in str(errors[0])
    fake_kafka.stuck_next = False
    assert producer.send([_env(2)]) == [None]  # through a new producer
    assert len(fake_kafka.made) == 2 and fake_kafka.made[1].sent
    assert first.closed.wait(5), "the stuck producer is closed (in the background)"
    assert producer.send([_env(3)]) == [None]
    assert len(fake_kafka.made) == 2  # a working producer is kept


def test_an_unconfirmed_send_that_timed_out_renews_it_too(fake_kafka: type[_FakeKafkaProducer]) -> None:
    producer = broker.TaskProducer(Settings())
    failed: list[tuple[str, Exception]] = []
    producer.send_async([_env(1)], lambda env, exc: failed.append((env.id, exc)))
    assert [i for i, _ in failed] == [f"{1:032x}"]
    fake_kafka.stuck_next = False
    producer.send_async([_env(2)], lambda env, exc: failed.append((env.id, exc)))
    assert len(failed) == 1 and len(fake_kafka.made) == 2


def test_other_failures_keep_the_producer(fake_kafka: type[_FakeKafkaProducer],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kafka.stuck_next = False
    producer = broker.TaskProducer(Settings())
    monkeypatch.setattr(_Future, "get", lambda self, timeout: (_ for _ in ()).throw(
        broker.KAFKA_FAILURES[0]("refused")))
    assert producer.send([_env(1)])[0] is not None
    monkeypatch.undo()
    monkeypatch.setattr(broker, "KafkaProducer", _FakeKafkaProducer)
    assert producer.send([_env(2)]) == [None]
    assert len(fake_kafka.made) == 1
