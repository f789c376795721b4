"""The drain with scale-up and a warm stop (``test_self_healing``) once with each Kafka client: with
confluent-kafka it stalled for good before ``ConfluentConsumer`` resumed what it is assigned
(librdkafka keeps a partition's pause through a revoke and a re-assign to the same member)."""

from __future__ import annotations

import pytest

from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from tests.integration.test_self_healing import (
    test_scale_up_and_warm_stop_during_a_drain_run_each_task_once as test_drain_with_rebalances,
)

pytestmark = pytest.mark.integration

__all__ = ["test_drain_with_rebalances"]
