"""Topic durability from the settings and the cluster size, and the warnings for weaker topics."""

from __future__ import annotations

import pytest

from yadtq.settings import Settings
from yadtq.topics import Durability, durability, weaknesses


@pytest.mark.parametrize(("brokers", "rf", "isr"), [(1, 1, 1), (2, 1, 1), (3, 3, 2), (5, 3, 2)])
def test_automatic_durability_follows_the_live_brokers(brokers: int, rf: int, isr: int) -> None:
    d = durability(Settings(), brokers)
    assert (d.replication_factor, d.min_insync_replicas) == (rf, isr)
    assert f"{brokers} live broker" in d.reason


def test_configured_durability_wins_over_the_cluster_size() -> None:
    d = durability(Settings(replication_factor=2), 5)
    assert (d.replication_factor, d.min_insync_replicas, d.reason) == (2, 1, "YADTQ_REPLICATION_FACTOR")
    d = durability(Settings(replication_factor=3, min_insync_replicas=3), 1)
    assert (d.replication_factor, d.min_insync_replicas) == (3, 3)
    assert durability(Settings(min_insync_replicas=1), 3).min_insync_replicas == 1


@pytest.mark.parametrize("env", [{"YADTQ_REPLICATION_FACTOR": "0"},
                                 {"YADTQ_MIN_INSYNC_REPLICAS": "0"},
                                 {"YADTQ_REPLICATION_FACTOR": "2", "YADTQ_MIN_INSYNC_REPLICAS": "3"}])
def test_impossible_durability_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="replication_factor|min_insync_replicas"):
        Settings.from_env(env)


def test_a_weaker_topic_is_named_with_what_to_do() -> None:
    wanted = Durability(3, 2, "automatic")
    assert weaknesses("t", 3, 2, wanted) == []
    assert weaknesses("t", 3, None, wanted) == []
    found = weaknesses("t", 1, 1, wanted)
    assert len(found) == 2
    assert "replication factor 1, configured 3" in found[0]
    assert "kafka-reassign-partitions" in found[0]
    assert "min.insync.replicas 1, configured 2" in found[1]
    assert "--add-config min.insync.replicas=2" in found[1]
    assert weaknesses("t", 5, 3, wanted) == []  # stronger than configured is fine
