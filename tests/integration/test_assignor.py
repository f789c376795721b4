"""Each worker gets its share of each priority level's topic on the real Kafka, with each client:
kafka-python's workers use the group's own assignor (``yadtq.assign``), confluent-kafka's use
librdkafka's round-robin (it takes no custom assignor). The plan itself:
tests/unit/test_priorities.py."""

from __future__ import annotations

from collections import Counter

from tests.conftest import WorkerProcs
from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from tests.polling import wait_until
from yadtq import Client
from yadtq.broker_types import unslot
from yadtq.keys import topic_rank


def test_every_worker_gets_its_share_of_each_level(real_client: Client,
                                                   workers: WorkerProcs) -> None:
    """Cooperative-sticky balances only the total per worker, so one could hold every partition
    of ``low`` and none of ``normal`` (seen with librdkafka's: a third worker got all six of
    ``low``); each level's topic is split between the workers."""
    n = real_client.settings.partitions
    workers.start(1, "--worker-id", "w1")
    workers.wait_alive(1)
    wait_until(lambda: sum(len(w.partitions) for w in real_client.workers()) == 3 * n, 60,
               "the first worker to hold every partition of the three levels")
    workers.start(1, "--worker-id", "w2")

    def shares() -> dict[str, Counter[int]]:
        return {w.id: Counter(topic_rank(unslot(s)[0]) for s in w.partitions)
                for w in real_client.workers() if w.status != "dead"}

    def balanced() -> bool:
        got = shares()
        return len(got) == 2 and all(c == Counter({0: n // 2, 1: n // 2, 2: n // 2})
                                     for c in got.values())
    wait_until(balanced, 90, "each worker to hold half of each level's partitions", interval=0.5)
