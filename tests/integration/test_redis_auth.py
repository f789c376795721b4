"""Password-protected Redis, for real: a redis-server with requirepass started by the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port
from yadtq import Settings
from yadtq.errors import ServiceUnavailable
from yadtq.store import RedisStore
from yadtq.wire import Envelope

pytestmark = pytest.mark.integration
SECRET = "s3cret-pa55word"



@pytest.fixture
def protected_redis(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (make test installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--requirepass", SECRET, "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _envelope() -> Envelope:
    return Envelope("ab" * 16, "ADD", (1, 2), time.time())


def test_password_in_url(protected_redis: int) -> None:
    store = RedisStore(Settings(redis_url=f"redis://:{SECRET}@127.0.0.1:{protected_redis}/0"))
    store.create([_envelope()])
    assert store.get("ab" * 16).args == (1, 2)


def test_password_from_file(protected_redis: int, tmp_path: Path) -> None:
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(SECRET + "\n")
    settings = Settings(redis_url=f"redis://127.0.0.1:{protected_redis}/0",
                        redis_password_file=str(secret_file))
    store = RedisStore(settings)
    store.ping()
    store.create([_envelope()])
    assert store.counts()["queued"] == 1


@pytest.mark.parametrize("url_password", ["", "wrong-password"])
def test_missing_or_wrong_password_is_a_clear_error_without_the_secret(
        protected_redis: int, url_password: str) -> None:
    auth = f":{url_password}@" if url_password else ""
    store = RedisStore(Settings(redis_url=f"redis://{auth}127.0.0.1:{protected_redis}/0"))
    with pytest.raises(ServiceUnavailable) as err:
        store.ping()
    message = str(err.value)
    assert "Redis" in message
    assert SECRET not in message
    if url_password:
        assert url_password not in message
