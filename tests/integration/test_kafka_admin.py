"""The Kafka adapter's admin client on the real broker: topics created once with the settings'
partitions and durability, the health probe up and down, offsets and lag."""

from __future__ import annotations

import time

import pytest

from yadtq import Client, Settings
from yadtq.broker import KafkaAdmin, ensure_topics
from yadtq.broker_types import LagReader, kafka_offsets, kafka_ping
from yadtq.errors import ServiceUnavailable

pytestmark = pytest.mark.integration


def test_topics_are_created_once_with_the_settings(real_settings: Settings) -> None:
    settings = real_settings.with_(partitions=5)
    ensure_topics(settings, timeout=30)
    ensure_topics(settings, timeout=30)  # a second time: found, checked, not created again
    admin = KafkaAdmin(settings)
    try:
        assert {settings.topic, settings.dead_letter_topic} <= admin.list_topics()
        assert admin.partitions() == 5
        assert len(admin.describe_topics([settings.dead_letter_topic])[0]["partitions"]) == 1
        isr = admin.min_isr([settings.topic])
        assert isr == {settings.topic: 1}  # one broker: automatic min ISR 1
        assert admin.live_brokers() == 1
        assert admin.end_offsets(5) == {p: 0 for p in range(5)} and admin.committed() == {}
    finally:
        admin.close()


def test_the_health_probe_answers_up_and_fails_fast_when_down(real_settings: Settings) -> None:
    kafka_ping(real_settings)
    down = real_settings.with_(kafka_bootstrap="127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="Kafka unreachable at 127.0.0.1:1"):
        kafka_ping(down)
    assert time.monotonic() - started < 30  # bounded by the probe's 3 s timeouts, not hanging


def test_lag_counts_what_the_group_has_not_committed(real_client: Client) -> None:
    settings = real_client.settings
    for i in range(7):
        real_client.submit("ADD", [i, 1])
    reader = LagReader(settings, kafka_offsets)
    try:
        assert sum(reader.read().values()) == 7
    finally:
        reader.close()
