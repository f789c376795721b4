"""Run a test module with each Kafka client: import ``kafka_client`` and ``client_settings_factory``
into it. The fixture ``settings_factory`` (the conftest's fresh settings) then carries
``kafka_client``, so the test's client and the workers it starts (``Settings.to_env``) use that
client. With CI=true a missing confluent-kafka fails instead of skipping (the dev extra installs it)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import pytest

from yadtq.settings import KAFKA_CLIENTS, Settings


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest) -> str:
    """Every test here runs with each Kafka client (``YADTQ_KAFKA_CLIENT``); with CI=true a
    missing confluent-kafka fails instead of skipping (the dev extra installs it)."""
    client = str(request.param)
    if client == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("confluent-kafka is not installed (pip install -e '.[dev]')")
        pytest.skip("confluent-kafka not installed")
    return client


@pytest.fixture(name="settings_factory")
def client_settings_factory(settings_factory: Callable[..., Settings],
                            kafka_client: str) -> Callable[..., Settings]:
    """The conftest's fresh settings, on this test's Kafka client (workers inherit it)."""
    def make(**overrides: object) -> Settings:
        return settings_factory(**{"kafka_client": kafka_client, **overrides})
    return make
