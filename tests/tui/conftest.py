"""Fixtures for the dashboard tests."""

from __future__ import annotations

import pytest

from tests.tui.helpers import FrozenClock
from yadtq import Client, Settings
from yadtq.builtins import register_builtins
from yadtq.registry import Registry
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker


@pytest.fixture
def clock(fake_store: RedisStore) -> FrozenClock:
    """Frozen time for the core (stored timestamps) and the app (ages, uptimes)."""
    return FrozenClock().install(fake_store)


@pytest.fixture
def fake_client(fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> Client:
    """Like the suite's ``fake_client``, with only the built-in tasks registered, whatever other
    tests added to the default registry (the snapshots show the list of known tasks)."""
    registry = Registry()
    register_builtins(registry)
    return Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                  kafka_ping=fake_broker.ping, registry=registry)
