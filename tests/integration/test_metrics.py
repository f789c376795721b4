"""``yadtq-worker --metrics-port`` scraped over HTTP from a real worker on the real Kafka and Redis,
and ``--log-format json`` read back line by line."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.helpers import send_raw, wait_ids_final
from tests.polling import wait_until
from tests.ports import free_port
from worker.metrics import Metrics
from yadtq import Client, Settings
from yadtq.broker_types import kafka_offsets
from yadtq.models import TaskState

pytestmark = pytest.mark.integration



def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_worker_serves_its_metrics_and_logs_json(real_settings: Settings, real_client: Client,
                                                   workers: object, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YADTQ_TEST_DIR", str(tmp_path))
    port = free_port()
    [proc] = workers.start(1, "--metrics-port", str(port), "--log-format", "json",  # type: ignore[attr-defined]
                           "--no-supervisor", env={"YADTQ_TEST_DIR": str(tmp_path)})
    workers.wait_alive(1)  # type: ignore[attr-defined]
    adds = [real_client.submit("ADD", [i, 1]) for i in range(20)]
    key = uuid.uuid4().hex
    flaky = real_client.submit("FLAKY", [key, 1])  # fails once, then completes
    boom = real_client.submit("BOOM", ["kaboom \x1b[31m\u2028 [b]markup[/b]"])
    send_raw(real_settings, [b"not json at all"], [0])  # dead-lettered
    wait_ids_final(real_client, [*adds, flaky, boom], timeout=60)
    assert real_client.get(flaky).state == TaskState.COMPLETED  # type: ignore[union-attr]

    def sample(metric: str, **labels: str) -> float | None:
        return scrape(port).get((metric, tuple(sorted(labels.items()))))

    wait_until(lambda: sample("yadtq_dead_lettered_total") == 1, 30, "the dead letter counted")
    assert sample("yadtq_tasks_total", name="ADD", state="completed") == 20
    assert sample("yadtq_tasks_total", name="FLAKY", state="completed") == 1
    assert sample("yadtq_tasks_total", name="BOOM", state="failed") == 1
    assert sample("yadtq_retries_total", name="FLAKY") == 1
    assert sample("yadtq_attempt_seconds_count", name="ADD") == 20
    assert sample("yadtq_attempt_seconds_count", name="FLAKY") == 2  # both attempts
    assert sample("yadtq_attempt_seconds_bucket", name="ADD", le="+Inf") == 20
    assert sample("yadtq_fenced_outcomes_total") == 0
    assert sample("yadtq_tasks_in_flight") == 0
    assert sample("yadtq_repairs_total", kind="resent_queued") is None  # nothing repaired yet
    # lag: every partition of the topic, and 0 once the worker has committed everything
    wait_until(lambda: all(sample("yadtq_consumer_lag", queue="default", priority="normal",
                                  partition=str(p)) == 0
                           for p in range(real_settings.partitions)), 30, "the lag to reach 0")
    lagging = real_client.submit("NAP", [0.0])  # no lag sample is ever negative or missing
    wait_ids_final(real_client, [lagging], timeout=30)
    assert proc.poll() is None

    workers.stop()  # type: ignore[attr-defined]
    lines = (tmp_path / "worker-0.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "worker", "message"} <= r.keys()
                           for r in records)
    started = next(r for r in records if "started" in r["message"])
    assert started["worker"] and started["level"] == "INFO" and started["time"].endswith("+00:00")
    failed = next(r for r in records if r.get("task_id") == boom)
    assert (failed["task"], failed["state"], failed["attempt"]) == ("BOOM", "failed", 1)
    assert "\x1b" not in failed["error"] and "\u2028" not in failed["error"]  # escaped as in text
    assert "[b]markup[/b]" in failed["error"]
    retried = [r for r in records if r.get("task_id") == flaky and r.get("state") == "failed"]
    assert len(retried) == 1 and retried[0]["error"].startswith("RuntimeError: flaky failure 1")


def test_the_lag_covers_every_queue_and_priority_on_the_real_kafka(
        real_settings: Settings, real_client: Client, workers: object) -> None:
    """Per queue, priority and partition, read from the real Kafka: a named queue's high level has
    its lag before a worker runs it, a queue never used has no sample, and the worker serving both
    queues brings every one of its topics to 0."""
    mails = [real_client.submit("ADD", [i, 1], queue="emails", priority="high") for i in range(3)]
    plain = [real_client.submit("ADD", [i, 2]) for i in range(2)]
    metrics = Metrics()  # in this process, before any worker: a lag that does not move
    metrics.watch_lag(real_settings.with_(queues="default,emails,never-used"), kafka_offsets)
    lag: dict[tuple[str, str], dict[int, float]] = {}
    for family in metrics.registry.collect():
        for s in family.samples if family.name == "yadtq_consumer_lag" else ():
            lag.setdefault((s.labels["queue"], s.labels["priority"]), {})[
                int(s.labels["partition"])] = s.value
    # only the topics made so far: the tasks topic and the one emails/high the submits made
    assert set(lag) == {("default", "normal"), ("emails", "high")}
    assert sorted(lag[("emails", "high")]) == list(range(real_settings.partitions))
    assert sum(lag[("emails", "high")].values()) == 3 and sum(lag[("default", "normal")].values()) == 2

    port = free_port()
    workers.start(1, "--queues", "default,emails", "--metrics-port", str(port),  # type: ignore[attr-defined]
                  "--no-supervisor")
    wait_ids_final(real_client, [*mails, *plain], timeout=60)

    def scraped_lag() -> dict[tuple[str, str, str], float]:
        return {(d["queue"], d["priority"], d["partition"]): value
                for (name, labels), value in scrape(port).items()
                if name == "yadtq_consumer_lag" and (d := dict(labels))}

    every = {(q, level, str(p)) for q in ("default", "emails") for level in ("high", "normal", "low")
             for p in range(real_settings.partitions)}  # the worker made all six of its topics
    wait_until(lambda: set(scraped_lag()) == every and not any(scraped_lag().values()), 30,
               "every partition of the worker's topics scraped, at lag 0")


def test_a_taken_metrics_port_is_a_clear_error(real_settings: Settings, workers: object) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [proc] = workers.start(1, "--metrics-port", str(port), "--no-supervisor")  # type: ignore[attr-defined]
        assert proc.wait(timeout=60) == 2
    log = workers.logs()  # type: ignore[attr-defined]
    assert f"--metrics-port {port}: [Errno 98] Address already in use" in log
