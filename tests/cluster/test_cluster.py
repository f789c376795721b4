"""YADTQ on a real 3-node Kafka cluster: durable topics, a broker down at start-up, and the
partition leaders' broker SIGKILLed under load with workers on two other "machines".

Each test gets a fresh topic, group and key prefix; a killed node is started again before the
next test. The broker-kill test writes what it measured to ``.local/cluster-results/`` and prints it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import ROOT, Cluster, host_env
from tests.conftest import WorkerProcs
from tests.polling import eventually
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.models import TaskState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
RESULTS = ROOT / ".local" / "cluster-results"


def wait_until(pred: Callable[[], object], timeout: float, message: Callable[[], object]) -> None:
    """Until ``pred()`` is truthy; after ``timeout`` seconds fail with ``message()``."""
    if not eventually(pred, timeout, interval=0.2):
        raise AssertionError(f"timed out after {timeout}s: {message()}")


def admin_call(cluster: Cluster, call: Callable[[Any], Any], timeout: float = 30.0) -> Any:
    """``call(admin)`` on a fresh admin client, again while a request fails (a request the client
    sends to a broker that just died fails instead of going to another one)."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        admin = None
        try:
            admin = cluster.admin()
            return call(admin)
        except (KafkaError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            if admin is not None:
                admin.close()


def describe(cluster: Cluster, topic: str) -> list[dict[str, Any]]:
    described = admin_call(cluster, lambda a: a.describe_topics([topic]))
    return sorted(described[0]["partitions"], key=lambda p: p["partition_index"])


def min_isr(cluster: Cluster, topic: str) -> int:
    from kafka.admin import ConfigResource, ConfigResourceType

    found = admin_call(cluster, lambda a: a.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, ["min.insync.replicas"])]))
    return int(found["topic"][topic]["min.insync.replicas"]["value"])


def test_topics_are_created_replicated_3_with_min_isr_2(
        cluster: Cluster, cluster_settings: Callable[..., Settings],
        caplog: pytest.LogCaptureFixture) -> None:
    settings = cluster_settings()
    with caplog.at_level(logging.INFO, logger="yadtq.topics"):
        ensure_topics(settings)
    for topic in (settings.topic, settings.dead_letter_topic):
        partitions = describe(cluster, topic)
        assert {len(p["replica_nodes"]) for p in partitions} == {3}, partitions
        assert min_isr(cluster, topic) == 2
    assert len(describe(cluster, settings.topic)) == settings.partitions
    assert "replication factor 3 (automatic: the cluster has 3 live brokers)" in caplog.text
    # a second start checks the topics it finds and has nothing to say about them
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="yadtq.topics"):
        ensure_topics(settings)
    assert caplog.text == ""


def test_an_existing_weaker_topic_gets_a_clear_warning(
        cluster: Cluster, cluster_settings: Callable[..., Settings],
        caplog: pytest.LogCaptureFixture) -> None:
    from kafka.admin import NewTopic

    settings = cluster_settings()
    admin = cluster.admin()
    try:
        admin.create_topics([NewTopic(settings.topic, 2, 1,
                                      topic_configs={"min.insync.replicas": "1"})])
    finally:
        admin.close()
    with caplog.at_level(logging.WARNING, logger="yadtq.topics"):
        ensure_topics(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"topic {settings.topic} has replication factor 1, configured 3" in w
               for w in warnings), warnings
    assert any(f"topic {settings.topic} has min.insync.replicas 1, configured 2" in w
               for w in warnings), warnings
    assert not any(settings.dead_letter_topic + " " in w for w in warnings), warnings  # created: fine
    assert {len(p["replica_nodes"]) for p in describe(cluster, settings.topic)} == {1}  # unchanged


def led_by(cluster: Cluster, topic: str, node: int) -> list[int]:
    return [p["partition_index"] for p in describe(cluster, topic) if p["leader_id"] == node]


def test_topics_are_ready_while_partitions_have_no_leader(
        cluster: Cluster, cluster_settings: Callable[..., Settings]) -> None:
    """With replication 1 a dead broker's partitions have no leader at all; starting must not
    wait for them (the other partitions work)."""
    settings = cluster_settings(replication_factor=1, min_insync_replicas=1)
    ensure_topics(settings)
    victim = describe(cluster, settings.topic)[0]["leader_id"]
    cluster.kill(victim)
    wait_until(lambda: all(p["leader_id"] != victim for p in describe(cluster, settings.topic)),
               timeout=60, message=lambda: describe(cluster, settings.topic))
    assert any(p["leader_id"] == -1 for p in describe(cluster, settings.topic))  # leaderless
    t0 = time.monotonic()
    ensure_topics(settings, timeout=20)
    assert time.monotonic() - t0 < 10


def test_a_client_and_a_worker_start_while_a_broker_is_down(
        cluster: Cluster, cluster_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = cluster_settings()
    ensure_topics(settings)
    cluster.kill(1)  # the first bootstrap address: every new client must find another broker
    workers = WorkerProcs(settings, tmp_path)
    client = Client(settings)
    try:
        t0 = time.monotonic()
        workers.start(1, env=host_env(2))
        from yadtq.broker_types import kafka_producer
        kafka_producer(settings).close()  # what the client does first: topics, then a producer
        assert time.monotonic() - t0 < 15
        # submits go through once the controller has moved node 1's partitions (Kafka's 9 s)
        wait_until(lambda: led_by(cluster, settings.topic, 1) == [], timeout=60,
                   message=lambda: describe(cluster, settings.topic))
        ids = [client.submit("ADD", [i, 1]) for i in range(30)]
        wait_until(lambda: client.counts()[TaskState.COMPLETED] == 30, timeout=90,
                   message=lambda: f"{client.counts()} {workers.logs()}")
        assert [client.get(i).result for i in ids] == [i + 1 for i in range(30)]
    finally:
        client.close()
        workers.stop()


def leader_to_kill(cluster: Cluster, topic: str) -> int:
    """The broker that leads the most partitions of ``topic``."""
    leaders = Counter(p["leader_id"] for p in describe(cluster, topic))
    return int(max(sorted(leaders), key=lambda n: leaders[n]))


def group_hosts(cluster: Cluster, group: str) -> set[str]:
    """The addresses the group's members connect from, as the group coordinator saw them."""
    described = admin_call(cluster, lambda a: a.describe_groups([group]))
    return {m["client_host"].lstrip("/") for m in described.get(group, {}).get("members", [])}


class Load:
    """Confirmed ``submit()`` calls from two threads at a steady rate, each outcome with its time."""

    def __init__(self, client: Client, rate: float) -> None:
        self.client, self.interval = client, 2.0 / rate
        self.ok: list[tuple[float, str, int]] = []      # (time acknowledged, id, expected result)
        self.raised: list[tuple[float, str]] = []       # (time, error)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(2)]
        self.lock = threading.Lock()

    def _run(self, k: int) -> None:
        i = k * 1_000_000
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                task_id = self.client.submit("ADD", [i, 1])
                with self.lock:
                    self.ok.append((time.time(), task_id, i + 1))
            except Exception as exc:  # every refusal is counted, whatever it is
                with self.lock:
                    self.raised.append((time.time(), f"{type(exc).__name__}: {exc}"))
            i += 1
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def topic_counts(settings: Settings) -> Counter[str]:
    """How many times each task id is in the tasks topic (read from the start by a fresh consumer)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topic, bootstrap_servers=settings.kafka_bootstrap.split(","),
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=5000, group_id=None)
    try:
        return Counter(m.key.decode() for m in consumer if m.key is not None)
    finally:
        consumer.close()


def longest_gap(times: list[float], start: float, end: float) -> float:
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside, end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def test_the_leaders_broker_is_killed_under_load(
        cluster: Cluster, cluster_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = cluster_settings()
    ensure_topics(settings)
    workers = WorkerProcs(settings, tmp_path)
    workers.start(1, env=host_env(2))
    workers.start(1, env=host_env(3))
    client = Client(settings)
    try:
        workers.wait_alive(2, timeout=60)
        wait_until(lambda: len(group_hosts(cluster, settings.group)) == 2, timeout=60,
                   message=lambda: f"group members: {group_hosts(cluster, settings.group)}")
        hosts = group_hosts(cluster, settings.group)
        wait_until(lambda: all(len(p["isr_nodes"]) == 3 for p in describe(cluster, settings.topic)),
                   timeout=60, message=lambda: describe(cluster, settings.topic))
        if host_env(2):
            assert hosts == {"127.0.0.2", "127.0.0.3"}, hosts  # two "machines", not one host
            assert {w.host for w in client.workers()} == {"machine-2", "machine-3"}
            redis_peers = {c["addr"].rsplit(":", 1)[0] for c in client.store.r.client_list()}
            assert {"127.0.0.2", "127.0.0.3"} <= redis_peers, redis_peers

        with Load(client, rate=60) as load:
            time.sleep(6)
            victim = leader_to_kill(cluster, settings.topic)
            led = led_by(cluster, settings.topic, victim)
            killed_at = time.time()
            cluster.kill(victim)
            # until the submits flow again (the election; longer on a busy machine), then 8 s more
            while time.time() < killed_at + 90:
                with load.lock:
                    flowing = sum(1 for t, _, _ in load.ok if t > killed_at + 1)
                if flowing >= 20:
                    break
                time.sleep(0.5)
            recovered_at = time.time()
            time.sleep(8)
        stopped_at = time.time()

        ok_ids = {task_id: expected for _, task_id, expected in load.ok}

        def all_done() -> bool:
            return all(client.get(i).state is TaskState.COMPLETED for i in ok_ids)
        wait_until(all_done, timeout=120, message=lambda: f"{client.counts()} {workers.logs()}")
        tasks = {i: client.get(i) for i in ok_ids}
        wrong = {i: (t.state, t.result) for i, t in tasks.items() if t.result != ok_ids[i]}
        twice = {i: t.attempt for i, t in tasks.items() if t.attempt != 1}
        finished = [t.updated_at for t in tasks.values()]  # completed: the time it finished
        in_topic = topic_counts(settings)
        missing = [i for i in ok_ids if in_topic[i] == 0]
        duplicated = {i: n for i, n in in_topic.items() if n > 1}
        assert all(p.poll() is None for p in workers.procs), workers.logs()

        pause = longest_gap(finished, killed_at - 1, stopped_at)
        submit_pause = longest_gap([t for t, _, _ in load.ok], killed_at - 1, stopped_at)
        raised_ran = [task_id for task_id in in_topic if task_id not in ok_ids]

        restarted_at = time.monotonic()
        cluster.start_node(victim)

        def rejoined() -> bool:
            return all(victim in p["isr_nodes"] for p in describe(cluster, settings.topic))
        wait_until(rejoined, timeout=90, message=lambda: describe(cluster, settings.topic))
        rejoin_seconds = time.monotonic() - restarted_at

        result = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "killed_node": victim,
            "partitions_it_led": led, "confirmed_submits": len(ok_ids),
            "submits_raised": len(load.raised), "raised_errors": sorted({e[:120] for _, e in load.raised}),
            "raised_but_in_topic": len(raised_ran),
            "completion_pause_seconds": round(pause, 2),
            "submit_pause_seconds": round(submit_pause, 2),
            "submits_flowing_again_after_seconds": round(recovered_at - killed_at, 2),
            "rejoin_isr_seconds_after_start": round(rejoin_seconds, 2),
            "lost": len(missing), "wrong": len(wrong), "run_twice": len(twice),
            "duplicated_in_topic": len(duplicated), "worker_hosts": sorted(hosts),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"broker-kill-{int(time.time())}.json").write_text(json.dumps(result, indent=1))
        print("broker kill:", json.dumps(result))

        assert len(ok_ids) > 100, f"too little load to say anything: {result}"
        assert missing == [] and wrong == {}, result
        assert twice == {}, (twice, result)
        assert duplicated == {}, (duplicated, result)
        assert pause < 60, result
        # after the election the submits and the workers went on
        assert any(t > recovered_at for t in finished), result
    finally:
        client.close()
        workers.stop()
