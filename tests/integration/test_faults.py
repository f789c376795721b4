"""The fault suite, small version (the large one is `make chaos`), with each Kafka client."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.chaos import Chaos
from tests.integration.clients import client_settings_factory, kafka_client  # noqa: F401 - fixtures
from yadtq import Settings

pytestmark = pytest.mark.integration


def test_faults_lose_nothing(real_settings: Settings, tmp_path: Path) -> None:
    chaos = Chaos(real_settings, tmp_path, n_short=600, n_long=6, outage=4.0, seed=7)
    report = chaos.run(("kill", "stop", "redis", "kafka", "term", "redis9", "client9"), gap=1.5,
                       timeout=150)
    summary = report.summary()
    print(summary)
    assert report.tasks_submitted > 300, summary
    assert (report.lost, report.stuck, report.wrong) == (0, 0, 0), (summary, chaos.pool.logs())
    assert report.refused_marked_failed <= report.submits_refused, summary
    assert len(report.recovery_seconds) == 2, summary  # the SIGKILLed and the SIGSTOPped task
    assert sum(report.faults.values()) == 7, summary
