"""Settings: ``YADTQ_*`` variables, flags on top, secrets never shown."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from worker.main import build_parser as worker_parser
from yadtq.cli import build_parser as cli_parser
from yadtq.settings import Settings, add_arguments, redact_url

SECRET = "hunter2-Zq9"


def parser(only: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p, only)
    return p


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.topic, s.dead_letter_topic, s.group, s.key_prefix) == \
        ("yadtq.tasks", "yadtq.dead-letter", "yadtq-workers", "yadtq")
    assert s.heartbeat_ttl == 3.0


def test_from_env_reads_typed_values() -> None:
    s = Settings.from_env({
        "YADTQ_KAFKA_BOOTSTRAP": "k1:9092,k2:9092", "YADTQ_PARTITIONS": "7",
        "YADTQ_HEARTBEAT_INTERVAL": "0.25", "YADTQ_LOG_ARGS": "yes", "YADTQ_TOPIC": "t.x",
        "YADTQ_KAFKA_SASL_MECHANISM": "PLAIN", "YADTQ_KEY_PREFIX": "yadtq:blue",
        "YADTQ_REDIS_URL": "rediss://h:6380/2", "YADTQ_SESSION_TIMEOUT_MS": "", "OTHER": "x",
    })
    assert s.kafka_bootstrap == "k1:9092,k2:9092"
    assert s.partitions == 7 and type(s.partitions) is int
    assert s.heartbeat_interval == 0.25 and s.heartbeat_ttl == 0.75
    assert s.log_args is True
    assert (s.topic, s.kafka_sasl_mechanism, s.key_prefix) == ("t.x", "PLAIN", "yadtq:blue")
    assert s.redis_url == "rediss://h:6380/2"
    assert s.session_timeout_ms == 6000  # an empty variable means "not set"


@pytest.mark.parametrize("raw, value", [("1", True), ("TRUE", True), ("on", True), ("0", False),
                                        ("False", False), ("no", False), ("OFF", False)])
def test_boolean_variables(raw: str, value: bool) -> None:
    assert Settings.from_env({"YADTQ_LOG_ARGS": raw}).log_args is value


@pytest.mark.parametrize("env, message", [
    ({"YADTQ_PARTITIONS": "twelve"}, "YADTQ_PARTITIONS: cannot read 'twelve' as int"),
    ({"YADTQ_PARTITIONS": "1.5"}, "YADTQ_PARTITIONS: cannot read '1.5' as int"),
    ({"YADTQ_HEARTBEAT_INTERVAL": "1s"}, "YADTQ_HEARTBEAT_INTERVAL: cannot read '1s' as float"),
    ({"YADTQ_LOG_ARGS": "maybe"}, "YADTQ_LOG_ARGS: cannot read 'maybe' as bool"),
    ({"YADTQ_PARTITIONS": "0"}, "partitions must be at least 1"),
    ({"YADTQ_HEARTBEAT_INTERVAL": "-1"}, "heartbeat_interval must be a positive number"),
    ({"YADTQ_DEFAULT_MAX_ATTEMPTS": "0"}, "default_max_attempts must be at least 1"),
    ({"YADTQ_MAX_POLL_RECORDS": "0"}, "max_poll_records must be at least 1"),
    ({"YADTQ_REDIS_URL": "http://h:6379"}, "redis_url must start with redis://"),
])
def test_bad_values_give_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Settings.from_env(env)
    assert str(info.value) == message or str(info.value).startswith(message)


@pytest.mark.parametrize("env", [
    {"YADTQ_HEARTBEAT_INTERVAL": "nan"}, {"YADTQ_HEARTBEAT_INTERVAL": "inf"},
    {"YADTQ_DEFAULT_TIME_LIMIT": "0"}, {"YADTQ_DEFAULT_TIME_LIMIT": "-5"},
    {"YADTQ_DEFAULT_TIME_LIMIT": "nan"},
])
def test_non_finite_or_non_positive_durations_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Settings.from_env(env)


def test_flags_override_the_environment() -> None:
    env = {"YADTQ_PARTITIONS": "9", "YADTQ_TOPIC": "env.topic", "YADTQ_REDIS_URL": "redis://e/0"}
    ns = parser().parse_args(["--partitions", "3", "--redis-url", "redis://flag:1/0",
                              "--log-args", "--heartbeat-interval", "0.5"])
    s = Settings.from_args(ns, env)
    assert (s.partitions, s.topic, s.redis_url) == (3, "env.topic", "redis://flag:1/0")
    assert (s.log_args, s.heartbeat_interval) == (True, 0.5)
    assert Settings.from_args(parser().parse_args([]), env).partitions == 9


def test_flags_are_checked_like_the_environment() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--partitions", "many"])
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        Settings.from_args(parser().parse_args(["--partitions", "0"]), {})


def test_the_sasl_password_has_no_flag() -> None:
    text = parser().format_help()
    assert "--kafka-sasl-password-file" in text
    assert "--kafka-sasl-password " not in text and "--kafka-sasl-password\n" not in text


@pytest.mark.parametrize("make, rest", [(parser, []), (cli_parser, ["stats"]),
                                        (worker_parser, [])])
def test_a_sasl_password_on_the_command_line_is_refused(make: object, rest: list[str]) -> None:
    make().parse_args(rest)  # type: ignore[operator]  # the rest alone is fine
    with pytest.raises(SystemExit):
        make().parse_args(["--kafka-sasl-password", SECRET, *rest])  # type: ignore[operator]


def test_only_limits_the_flags() -> None:
    text = parser(("topic", "group")).format_help()
    assert "--topic" in text and "--group" in text and "--redis-url" not in text


def test_help_describes_each_flag_with_its_variable() -> None:
    text = " ".join(parser().format_help().split())
    assert "Kafka topic the tasks go through. [env YADTQ_TOPIC; default 'yadtq.tasks']" in text


def test_with_changes_and_validates() -> None:
    s = Settings().with_(partitions=2)
    assert s.partitions == 2
    with pytest.raises(ValueError):
        s.with_(partitions=-1)


# ---------------------------------------------------------------- secrets
@pytest.mark.parametrize("url, shown", [
    (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
    (f"redis://user:{SECRET}@h:6379/0", "redis://user:***@h:6379/0"),
    (f"rediss://default:{SECRET}@cache.example.com:6380/1", "rediss://default:***@cache.example.com:6380/1"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("unix:///run/redis.sock", "unix:///run/redis.sock"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", [f"redis://:ab@{SECRET}@h:6379/0",
                                 f"redis://h:6379/0?password={SECRET}"])
def test_redact_url_hides_every_password_redis_accepts(url: str) -> None:
    import redis.connection

    assert SECRET in str(redis.connection.parse_url(url).get("password"))
    assert SECRET not in redact_url(url)


def test_redacted_hides_the_secrets() -> None:
    s = Settings(redis_url=f"redis://app:{SECRET}@h:6379/0", kafka_sasl_password=SECRET,
                 kafka_sasl_username="svc")
    shown = s.redacted()
    assert shown["redis_url"] == "redis://app:***@h:6379/0"
    assert shown["kafka_sasl_password"] == "***"
    assert shown["kafka_sasl_username"] == "svc"
    assert SECRET not in repr(shown)
    assert set(shown) == set(Settings.__dataclass_fields__)
    assert Settings().redacted()["kafka_sasl_password"] is None


def test_help_never_shows_a_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("YADTQ_REDIS_URL", f"redis://:{SECRET}@h:6379/0")
    monkeypatch.setenv("YADTQ_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("YADTQ_KAFKA_SASL_USERNAME", "svc-" + SECRET)
    texts = [cli_parser().format_help(), worker_parser().format_help(), parser().format_help()]
    with pytest.raises(SystemExit):
        cli_parser().parse_args(["--help"])
    texts.append(capsys.readouterr().out)
    assert "--redis-url" in texts[-1]
    for text in texts:
        assert SECRET not in text


def test_password_files_are_read(tmp_path: Path) -> None:
    redis_file = tmp_path / "redis.pw"
    redis_file.write_text(f"  {SECRET}\n", encoding="utf-8")
    sasl_file = tmp_path / "sasl.pw"
    sasl_file.write_text("from-file\n", encoding="utf-8")
    s = Settings.from_env({"YADTQ_REDIS_PASSWORD_FILE": str(redis_file),
                           "YADTQ_KAFKA_SASL_PASSWORD_FILE": str(sasl_file),
                           "YADTQ_KAFKA_SASL_PASSWORD": "from-env"})
    assert s.redis_password() == SECRET
    assert s.sasl_password() == "from-file"
    assert SECRET not in repr(s.redacted())


def test_password_file_edge_cases(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    assert Settings(redis_password_file=str(empty)).redis_password() is None
    assert Settings(kafka_sasl_password="env").sasl_password() == "env"
    assert Settings().redis_password() is None and Settings().sasl_password() is None
    with pytest.raises(OSError):
        Settings(redis_password_file=str(tmp_path / "missing")).redis_password()


def test_sentinel_addresses_are_parsed_and_checked() -> None:
    s = Settings.from_env({"YADTQ_REDIS_SENTINELS": "10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
                           "YADTQ_REDIS_SERVICE": "main"})
    assert s.sentinel_addresses() == [("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381)]
    assert s.redis_service == "main"
    assert Settings().sentinel_addresses() == []
    for bad in ["10.0.0.1", "host:", ":26379", "host:port", "host:70000", " , "]:
        with pytest.raises(ValueError, match="redis_sentinels"):
            Settings.from_env({"YADTQ_REDIS_SENTINELS": bad})
    with pytest.raises(ValueError, match="not unix://"):
        Settings(redis_url="unix:///run/redis.sock", redis_sentinels="h:1").validated()


def test_a_sentinel_client_takes_the_database_and_user_from_the_url() -> None:
    from yadtq.store import connect

    r = connect(Settings(redis_url="redis://alice:pw@ignored:1/3", redis_sentinels="127.0.0.1:1"))
    pool = r.connection_pool
    assert (pool.service_name, pool.connection_kwargs["db"]) == ("yadtq", 3)
    assert pool.connection_kwargs["username"] == "alice" and pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["decode_responses"] is True
