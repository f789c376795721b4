"""TLS and SASL reach the clients through the YADTQ_ settings; secrets never show."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import redis

from yadtq import Settings
from yadtq.broker import client_config
from yadtq.store import RedisStore


def test_kafka_sasl_ssl_settings_reach_kafka_python(tmp_path: Path) -> None:
    secret = tmp_path / "sasl"
    secret.write_text("kafka-secret\n")
    settings = Settings.from_env({
        "YADTQ_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "YADTQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "YADTQ_KAFKA_SASL_USERNAME": "svc", "YADTQ_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "YADTQ_KAFKA_SSL_CAFILE": "/etc/ssl/ca.pem"})
    cfg = client_config(settings)
    assert cfg["security_protocol"] == "SASL_SSL"
    assert cfg["sasl_mechanism"] == "SCRAM-SHA-512"
    assert cfg["sasl_plain_username"] == "svc"
    assert cfg["sasl_plain_password"] == "kafka-secret"
    assert cfg["ssl_cafile"] == "/etc/ssl/ca.pem"


def test_plaintext_kafka_has_no_sasl_keys() -> None:
    cfg = client_config(Settings())
    assert cfg["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in cfg


def test_rediss_url_uses_tls() -> None:
    store = RedisStore(Settings(redis_url="rediss://:pw@redis.example:6380/0"))
    assert store.r.connection_pool.connection_class is redis.SSLConnection


def test_redacted_settings_hide_every_secret() -> None:
    settings = Settings(redis_url="rediss://user:topsecret@host:6380/0", kafka_sasl_password="kpass")
    shown = repr(settings.redacted())
    assert "topsecret" not in shown and "kpass" not in shown
    assert "rediss://user:***@host:6380/0" in shown


@pytest.mark.parametrize("program", ["yadtq", "yadtq-worker"])
def test_help_never_prints_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                        program: str) -> None:
    monkeypatch.setenv("YADTQ_REDIS_URL", "redis://:envsecret@127.0.0.1:6379/0")
    monkeypatch.setenv("YADTQ_KAFKA_SASL_PASSWORD", "envsecret")
    if program == "yadtq":
        from yadtq.cli import build_parser
    else:
        from worker.main import build_parser
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = out.getvalue()
    assert "--redis-url" in text
    assert "envsecret" not in text
    assert "--kafka-sasl-password " not in text  # passwords only from the environment or a file


def test_to_env_round_trips_and_leaves_the_sasl_password_out() -> None:
    settings = Settings(key_prefix="yadtq:x", partitions=7, log_args=True, kafka_sasl_password="pw")
    env = settings.to_env()
    assert "YADTQ_KAFKA_SASL_PASSWORD" not in env
    assert Settings.from_env(env) == settings.with_(kafka_sasl_password=None)
