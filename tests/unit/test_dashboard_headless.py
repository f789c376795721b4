"""The headless parts of the dashboard: data helpers and the CLI (its text: tests/unit/test_text.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from yadtq.models import TaskState
from yadtq_tui.__main__ import build_parser
from yadtq_tui.data import FILTER_CYCLE, next_filter, rate, resolve_id


def test_filter_cycle_and_helpers() -> None:
    seen = [None]
    for _ in FILTER_CYCLE:
        seen.append(next_filter(seen[-1]))
    assert seen == [None, TaskState.SCHEDULED, TaskState.QUEUED, TaskState.IN_PROGRESS,
                    TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, None]
    assert rate([0] * 50 + [2] * 10) == 2.0
    known = ["abcdef0123456789abcdef0123456789", "abcdff0123456789abcdef0123456789"]
    assert resolve_id("ABCDEF01", known) == known[0]
    assert resolve_id("abcd", known) == "abcd"  # ambiguous: left for Client.get to refuse
    assert resolve_id(" " + known[1] + " ", known) == known[1]


def test_headless_modules_do_not_import_textual() -> None:
    code = ("import sys, yadtq_tui.data, yadtq_tui.text; "
            "sys.exit(1 if 'textual' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_help_documents_flags_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--redis-url", "YADTQ_REDIS_URL", "--kafka-bootstrap", "YADTQ_KAFKA_BOOTSTRAP",
                 "--key-prefix", "--refresh", "--page-size", "--redis-password-file"):
        assert flag in out
    assert "--kafka-sasl-password " not in out  # secrets never on a command line


def test_help_never_prints_secrets() -> None:
    env = {"YADTQ_REDIS_URL": "redis://user:hunter2@127.0.0.1:6379/0",
           "YADTQ_KAFKA_SASL_PASSWORD": "s3cret", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "yadtq_tui", "--help"], env=env,
                         capture_output=True, text=True, check=True)
    assert "hunter2" not in out.stdout + out.stderr
    assert "s3cret" not in out.stdout + out.stderr


def test_bad_arguments_are_refused() -> None:
    out = subprocess.run([sys.executable, "-m", "yadtq_tui", "--page-size", "0"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "--page-size" in out.stderr


def test_the_dashboard_never_shows_the_redis_password() -> None:
    from yadtq import Client, Settings
    settings = Settings(redis_url="rediss://ops:hunter2@redis.internal:6380/0")
    shown = Client(settings).describe()
    assert "hunter2" not in shown and "rediss://ops:***@redis.internal:6380/0" in shown


def test_services_record_which_service_is_down_and_which_came_back() -> None:
    from yadtq.models import Health
    from yadtq_tui.data import Services

    services = Services()
    assert services.refused() is None and services.redis_up is None
    assert services.check(Health(True, False, kafka_error="Kafka unreachable: timeout")) == ([], True)
    assert (services.redis_up, services.kafka_up) == (True, False)
    assert services.redis_error is None and services.kafka_error == "Kafka unreachable: timeout"
    assert services.refused() == "Kafka is unreachable"
    assert services.check(Health(True, False, kafka_error="Kafka unreachable: timeout")) == ([], False)
    assert services.check(Health(False, False)) == ([], True)
    assert services.redis_error == "unreachable" and services.refused() == "Redis is unreachable"
    assert services.check(Health(True, True)) == (["Redis", "Kafka"], True)
    assert services.refused() is None
    assert services.refresh_failed("BUSY") and not services.refresh_failed("BUSY again")
    assert services.refresh_error == "BUSY again"
    assert services.refresh_failed(None) and services.refresh_error is None
