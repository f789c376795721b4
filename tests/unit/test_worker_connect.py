"""A worker started while Kafka is unreachable waits for it instead of exiting."""

from __future__ import annotations

from typing import Any

from worker.worker import Worker
from yadtq import Client, Settings, default_registry
from yadtq.errors import ServiceUnavailable
from yadtq.models import TaskState
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker


def test_worker_waits_for_kafka(fake_client: Client, fake_broker: FakeBroker,
                                fake_settings: Settings, fake_store: RedisStore) -> None:
    task_id = fake_client.submit("ADD", [2, 3])
    attempts = []

    def flaky_factory(*args: Any) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ServiceUnavailable("Kafka unreachable (test)")
        return fake_broker.consumer(*args)

    worker = Worker(fake_settings, default_registry, store=fake_store,
                    consumer_factory=flaky_factory, producer_factory=fake_broker.producer)
    worker.run(idle_exit=0.3)
    assert len(attempts) == 3
    task = fake_client.get(task_id)
    assert task.state is TaskState.COMPLETED and task.result == 5
