"""Topic durability from the settings and the cluster size, and the warnings for weaker topics."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from yadtq.errors import ServiceUnavailable
from yadtq.settings import Settings
from yadtq.topics import Durability, TopicSpec, durability, ensure_topics, weaknesses


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


# ---------------------------------------------------------------- ensure_topics with a fake admin
class FakeAdmin:
    """The admin requests ``ensure_topics`` makes, over a dict of topics; ``fail`` calls raise."""

    def __init__(self, topics: dict[str, tuple[int, int, int]], brokers: int = 1,
                 fail: int = 0, race: bool = False) -> None:
        self.topics = topics  # name -> (partitions, replicas, min isr)
        self.brokers, self.fail, self.race = brokers, fail, race
        self.closed = 0

    def _maybe_fail(self) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise ServiceUnavailable("Kafka unreachable (fake)")

    def live_brokers(self) -> int:
        self._maybe_fail()
        return self.brokers

    def list_topics(self) -> set[str]:
        return set(self.topics)

    def create_topics(self, specs: list[TopicSpec]) -> bool:
        for s in specs:
            self.topics[s.name] = (s.partitions, s.replication_factor, s.min_insync_replicas)
        return not self.race  # race: another client made them first

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"name": n, "error_code": 0 if n in self.topics else 3,
                 "partitions": [{"replica_nodes": list(range(self.topics[n][1]))}
                                for _ in range(self.topics[n][0])] if n in self.topics else []}
                for n in names]

    def min_isr(self, names: list[str]) -> dict[str, int]:
        return {n: self.topics[n][2] for n in names if n in self.topics}

    def close(self) -> None:
        self.closed += 1


def test_missing_topics_are_created_with_the_durability_and_existing_ones_checked(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(partitions=4)
    admin = FakeAdmin({}, brokers=3)
    with caplog.at_level(logging.INFO, logger="yadtq.topics"):
        ensure_topics(settings, lambda: admin, timeout=5)
    assert admin.topics == {settings.topic: (4, 3, 2), settings.dead_letter_topic: (1, 3, 2)}
    assert "created" in caplog.text and admin.closed == 1
    caplog.clear()
    weak = FakeAdmin({settings.topic: (4, 1, 1), settings.dead_letter_topic: (1, 3, 2)}, brokers=3)
    with caplog.at_level(logging.WARNING, logger="yadtq.topics"):
        ensure_topics(settings, lambda: weak, timeout=5)
    assert weak.topics[settings.topic] == (4, 1, 1)  # never changed, only warned about
    assert f"topic {settings.topic} has replication factor 1, configured 3" in caplog.text


def test_topics_created_by_a_racing_client_are_checked_as_existing(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings()
    admin = FakeAdmin({}, brokers=3, race=True)
    with caplog.at_level(logging.INFO, logger="yadtq.topics"):
        ensure_topics(settings, lambda: admin, timeout=5)
    assert "created" not in caplog.text and "replication factor" not in caplog.text


def test_failures_are_retried_with_a_new_admin_until_the_deadline() -> None:
    settings = Settings()
    admin = FakeAdmin({}, fail=2)
    opened = []

    def open_admin() -> FakeAdmin:
        opened.append(1)
        return admin

    ensure_topics(settings, open_admin, timeout=10)
    assert len(opened) == 3 and admin.closed == 3
    with pytest.raises(ServiceUnavailable, match="topics not ready .*Kafka unreachable"):
        ensure_topics(settings, lambda: FakeAdmin({}, fail=10**6), timeout=0.5)
