"""The bad-input corpus of tests/unit/test_bad_input_corpus.py, typed into the dashboard's form:
each is refused in place with its reason, the text stays, and Redis and Kafka do not change."""

from __future__ import annotations

import fakeredis
import pytest

from tests.tui.helpers import SIZE, fast_app, form_message, settle, wait_refreshed
from tests.unit.test_bad_input_corpus import TEXT_CORPUS, snapshot
from yadtq import Client
from yadtq.testing import FakeBroker

pytestmark = pytest.mark.tui


async def test_every_bad_input_is_refused_in_place(fake_client: Client, fake_broker: FakeBroker,
                                                   fake_redis: fakeredis.FakeRedis) -> None:
    fake_client.submit("ADD", [1, 2])  # work already queued must stay untouched
    app = fast_app(fake_client)
    refused = 0
    async with app.run_test(size=SIZE) as pilot:
        await wait_refreshed(pilot)
        form_input = app.dashboard.form.input
        for text, why in TEXT_CORPUS:
            before = snapshot(fake_redis, fake_broker)
            form_input.focus()
            form_input.value = text  # set, not typed: some entries are 20,000 characters long
            await pilot.press("enter")
            await settle(pilot)
            message = form_message(app)
            assert message.startswith("✘") and why in message, (text[:40], message)
            assert form_input.value == text, "the typed text stays to be corrected"
            assert snapshot(fake_redis, fake_broker) == before, text[:40]
            refused += 1
    assert refused == len(TEXT_CORPUS)
