"""Fixtures for the cluster tests: a real 3-node Kafka cluster (KRaft, ``scripts/cluster.sh``) and a
password-protected Redis of their own, both started here, so ``make test`` runs these tests with no
extra step and they share nothing with the other tests' services.

- ``cluster`` (session): three combined broker + controller nodes on 127.0.0.1, 127.0.0.2 and
  127.0.0.3 (ports ``YADTQ_TEST_CLUSTER_PORT`` + 1..3, default 39101-39103; controllers + 101..103),
  state under ``.local/test-cluster`` (``YADTQ_TEST_CLUSTER_DIR``), Kafka's default broker session
  timeout of 9 s (``YADTQ_TEST_CLUSTER_BROKER_SESSION_MS``). A test that killed a node gets it
  back before the next one.
- ``cluster_redis`` (session): redis-server with ``requirepass`` (workers on "other hosts" connect
  from 127.0.0.2/3, which an unprotected Redis refuses) and ``appendfsync everysec``.
- ``cluster_settings``: fresh topic, group and key prefix per test, on both.

When Java/Maven or redis-server are missing, or the cluster does not start, the tests are skipped
locally and FAIL when ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port
from yadtq import Settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.sh"
HOSTSHIM = Path(__file__).resolve().parent / "hostshim"
REDIS_SECRET = "cluster-test-" + uuid.uuid4().hex[:12]


def _unavailable(msg: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)



@dataclass
class Cluster:
    """The running cluster and what the tests do to it."""

    env: dict[str, str]
    hosts: list[str]
    base_port: int
    started_here: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{h}:{self.base_port + n}" for n, h in enumerate(self.hosts, 1))

    def address(self, node: int) -> str:
        return f"{self.hosts[node - 1]}:{self.base_port + node}"

    def run(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, check=False)
        self.log.append(f"$ cluster.sh {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
        return proc

    def kill(self, node: int) -> None:
        """SIGKILL the node (a crash: no controlled shutdown)."""
        proc = self.run("kill", str(node))
        assert proc.returncode == 0, proc.stderr

    def start_node(self, node: int) -> None:
        proc = self.run("start-node", str(node))
        assert proc.returncode == 0, proc.stderr

    def alive(self) -> bool:
        return self.run("status").returncode == 0

    def ensure_all_up(self) -> None:
        if self.alive():
            return
        for node in (1, 2, 3):
            self.run("start-node", str(node))
        assert self.alive(), "\n".join(self.log[-4:])

    def admin(self) -> Any:
        from kafka import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000)


@pytest.fixture(scope="session")
def _cluster_session() -> Iterator[Cluster]:
    if shutil.which("java") is None:
        _unavailable("java is not installed: the cluster tests need OpenJDK 17+ (and Maven once)")
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"] if sys.platform == "linux" else ["127.0.0.1"] * 3
    base = int(os.environ.get("YADTQ_TEST_CLUSTER_PORT", "39100"))
    state = Path(os.environ.get("YADTQ_TEST_CLUSTER_DIR", ROOT / ".local" / "test-cluster"))
    # Kafka's own default failure detection (9 s), not make cluster's quick 3 s: the stall after a
    # broker crash then outlasts the producer's 5 s request timeout, so requests are retried (a
    # producer without idempotence wrote 2 tasks twice in 723 here, and 2 ran twice)
    session_ms = os.environ.get("YADTQ_TEST_CLUSTER_BROKER_SESSION_MS", "9000")
    env = {**os.environ, "YADTQ_CLUSTER_PORT": str(base), "YADTQ_CLUSTER_HOSTS": " ".join(hosts),
           "YADTQ_CLUSTER_DIR": str(state), "YADTQ_CLUSTER_BROKER_SESSION_MS": session_ms,
           "PYTHON": sys.executable}
    cluster = Cluster(env, hosts, base)
    if not cluster.alive():
        cluster.run("stop")
        shutil.rmtree(state, ignore_errors=True)
        proc = cluster.run("start", timeout=600)
        if proc.returncode != 0:
            _unavailable(f"the 3-node Kafka cluster did not start: {proc.stderr[-2000:]}")
        cluster.started_here = True
    yield cluster
    if cluster.started_here:
        cluster.run("stop")


@pytest.fixture
def cluster(_cluster_session: Cluster) -> Iterator[Cluster]:
    _cluster_session.ensure_all_up()
    yield _cluster_session
    _cluster_session.ensure_all_up()


@pytest.fixture(scope="session")
def cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(redis URL without the password, the password file)."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed (make test installs it)")
    assert binary is not None
    data = tmp_path_factory.mktemp("cluster-redis")
    secret = data / "password"
    secret.write_text(REDIS_SECRET + "\n")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "everysec",
                             "--requirepass", REDIS_SECRET, "--dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            _unavailable("the cluster tests' redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0", secret
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def cluster_settings(cluster: Cluster,
                     cluster_redis: tuple[str, Path]) -> Callable[..., Settings]:
    """Fresh settings on the cluster and its Redis: ``make(**overrides)``."""
    url, secret = cluster_redis

    def make(**overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:10]
        values: dict[str, Any] = dict(
            kafka_bootstrap=cluster.bootstrap, redis_url=url, redis_password_file=str(secret),
            key_prefix=f"yadtq:cl-{tag}", topic=f"yadtq.cl-{tag}",
            dead_letter_topic=f"yadtq.cl-{tag}.dlq", group=f"yadtq-cl-{tag}", partitions=6,
            heartbeat_interval=0.5, session_timeout_ms=6000)
        values.update(overrides)
        return Settings.from_env({}).with_(**values)
    return make


def host_env(n: int) -> dict[str, str]:
    """Environment that makes a worker process look like machine ``n`` (source 127.0.0.n)."""
    if sys.platform != "linux":
        return {}
    return {"PYTHONPATH": str(HOSTSHIM), "YADTQ_TEST_SOURCE_ADDRESS": f"127.0.0.{n}",
            "YADTQ_TEST_HOSTNAME": f"machine-{n}"}
