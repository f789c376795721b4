"""Shared fixtures.

- ``fake_client``: a ``Client`` over fakeredis (the real Lua scripts, in memory) and ``FakeBroker``.
- ``real_settings``: ``Settings`` pointing at the real Kafka and Redis (started by ``make test`` via
  ``scripts/services.sh``), with a fresh key prefix, topic and group per test. When the services are
  missing the test is skipped locally and FAILS when ``CI=true``.
- ``workers``: starts real ``yadtq-worker`` processes for ``real_settings`` and stops them afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import fakeredis
import pytest

from yadtq import Client, Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker

ROOT = Path(__file__).resolve().parent.parent
TEST_TASKS = "tests.tasks_for_tests"


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def base_real_settings() -> Settings:
    return Settings.from_env()


def require_services(settings: Settings) -> None:
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    redis_hostport = settings.redis_url.split("@")[-1].split("//")[-1].split("/")[0]
    rhost, _, rport = redis_hostport.rpartition(":")
    missing = []
    if not _port_open(host or "127.0.0.1", int(port)):
        missing.append(f"Kafka at {settings.kafka_bootstrap}")
    if not _port_open(rhost or "127.0.0.1", int(rport or 6379)):
        missing.append(f"Redis at {redis_hostport}")
    if missing:
        msg = (f"{' and '.join(missing)} not reachable; start them with 'make services' "
               "(make test does this itself)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    """Fresh namespaced settings on the real services."""
    def make(**overrides: object) -> Settings:
        base = base_real_settings()
        require_services(base)
        tag = uuid.uuid4().hex[:10]
        values = dict(key_prefix=f"yadtq:test-{tag}", topic=f"yadtq.test-{tag}",
                      dead_letter_topic=f"yadtq.test-{tag}.dlq", group=f"yadtq-test-{tag}",
                      partitions=6, heartbeat_interval=0.5, session_timeout_ms=5000)
        values.update(overrides)
        return base.with_(**values)
    return make


@pytest.fixture
def real_settings(settings_factory: Callable[..., Settings]) -> Iterator[Settings]:
    settings = settings_factory()
    yield settings
    try:
        RedisStore(settings).reset()
        store = RedisStore(settings)
        for key in list(store.r.scan_iter(match=settings.key_prefix + ":*", count=1000)):
            store.r.unlink(key)
    except Exception:  # best-effort cleanup
        pass


@pytest.fixture
def real_client(real_settings: Settings) -> Iterator[Client]:
    from yadtq.broker import ensure_topics

    ensure_topics(real_settings)
    client = Client(real_settings)
    yield client
    client.close()


class WorkerProcs:
    """Real ``yadtq-worker`` processes started for one test."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a worker (or CLI) process: these settings, then ``extra_env``."""
        env = {**os.environ, **self.settings.to_env(), **(extra_env or {})}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self, n: int = 1, *extra: str,
              env: Mapping[str, str] | None = None) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` workers with the extra command-line arguments ``extra`` and the extra
        environment variables ``env`` (on top of the settings' own)."""
        started = []
        for _ in range(n):
            i = len(self.procs)
            log = open(self.log_dir / f"worker-{i}.log", "wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker.main", "--tasks", TEST_TASKS, *extra],
                env=self.env(env), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            self.procs.append(proc)
            started.append(proc)
        return started

    def wait_alive(self, n: int, timeout: float = 30.0) -> None:
        """Until ``n`` workers have a live heartbeat."""
        client = Client(self.settings)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [w for w in client.workers() if w.status.value == "alive"]
            if len(alive) >= n:
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"worker exited with {p.returncode}: {self.logs()}")
            time.sleep(0.1)
        raise AssertionError(f"{n} workers not alive after {timeout}s: {self.logs()}")

    def logs(self) -> str:
        out = []
        for f in sorted(self.log_dir.glob("worker-*.log")):
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def stop(self, timeout: float = 15.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def workers(real_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(real_settings, tmp_path)
    yield procs
    procs.stop()


@pytest.fixture
def fake_broker() -> FakeBroker:
    return FakeBroker(partitions=4)


@pytest.fixture
def fake_settings() -> Settings:
    return Settings(key_prefix="yadtq:unit", heartbeat_interval=0.2, commit_after=0.0)


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def fake_store(fake_settings: Settings, fake_redis: fakeredis.FakeRedis) -> RedisStore:
    return RedisStore(fake_settings, fake_redis)


@pytest.fixture
def fake_client(fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> Client:
    return Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                  kafka_ping=fake_broker.ping)


@pytest.fixture
def redis_down_client(fake_settings: Settings, fake_broker: FakeBroker) -> Iterator[Client]:
    """A client whose Redis cannot be reached (Kafka, the fake broker, can)."""
    server = fakeredis.FakeServer()
    server.connected = False
    store = RedisStore(fake_settings, fakeredis.FakeRedis(server=server, decode_responses=True))
    client = Client(fake_settings, store=store, producer_factory=fake_broker.producer,
                    kafka_ping=fake_broker.ping)
    yield client
    client.close()
