"""The worker group's per-topic assignor on the real Kafka (kafka-python, the default client:
librdkafka takes no custom assignor, README "Priorities"). The plan itself: tests/unit/test_priorities.py."""

from __future__ import annotations

from collections import Counter

from tests.conftest import WorkerProcs
from tests.polling import wait_until
from yadtq import Client
from yadtq.broker_types import unslot
from yadtq.keys import topic_rank


def test_every_worker_gets_its_share_of_each_level(real_client: Client,
                                                   workers: WorkerProcs) -> None:
    """Cooperative-sticky alone balances the total per worker, so one could hold every partition
    of ``high``; the group's own assignor splits each level's topic between the workers."""
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
