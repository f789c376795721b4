"""The ``yadtq`` CLI over the fake client: output, ``--json``, exit codes, terminal safety."""

from __future__ import annotations

import importlib.metadata
import io
import json
import re
import shlex
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from yadtq import cli
from yadtq.builtins import register_builtins
from yadtq.client import Client
from yadtq.errors import (
    DecodeError,
    InvalidTask,
    ServiceUnavailable,
    StoreError,
    TaskFinished,
    TaskNotFound,
)
from yadtq.models import Beat, Outcome, TaskState
from yadtq.registry import Registry
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope

HOSTILE = "[red]x[/red] \x1b[2J \x1b]52;c;aGVsbG8=\x07 \x9b31m \u202eevil\n"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def client(fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> Client:
    reg = Registry()
    register_builtins(reg)

    @reg.task("ECHO")
    def echo(text: str) -> str:
        return text

    return Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                  kafka_ping=fake_broker.ping, registry=reg)


def run(client: Client | None, *argv: str, stdin: io.StringIO | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), client=client, stdin=stdin or io.StringIO(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def finish(client: Client, task_id: str, state: TaskState, result: Any = None,
           error: str | None = None, worker: str = "w1") -> None:
    task = client.get(task_id)
    client.store.start(worker, [Envelope(task.id, task.name, task.args, task.created_at)])
    assert client.store.finish(worker, [Outcome(task_id, 1, state, result=result, error=error)])


# ---------------------------------------------------------------- submit
def test_submit_prints_only_the_id(client: Client, fake_broker: FakeBroker,
                                   fake_settings: Settings) -> None:
    code, out, err = run(client, "submit", "ADD", "2", "3")
    assert (code, err) == (0, "")
    task_id = out.strip()
    assert out == task_id + "\n" and len(task_id) == 32
    assert client.get(task_id).args == (2, 3)
    assert len(fake_broker.messages(fake_settings.topic)) == 1


def test_submit_keeps_each_shell_word_one_argument(client: Client) -> None:
    for word in ["two words", "it's", 'say "hi"', "back\\slash", ""]:
        code, out, _ = run(client, "submit", "ECHO", word)
        assert code == 0
        assert client.get(out.strip()).args == (word,)


@pytest.mark.parametrize("word", ["café au lait", "line\nbreak", "tab\there"])
def test_submit_keeps_non_ascii_and_control_characters_in_quoted_words(client: Client,
                                                                       word: str) -> None:
    code, out, _ = run(client, "submit", "ECHO", word)
    assert code == 0
    assert client.get(out.strip()).args == (word,)


@pytest.mark.parametrize("argv, why", [
    (["submit", "POW", "2", "3"], "unknown task 'POW'"),
    (["submit", "ADD", "2"], "ADD takes 2 arguments, got 1"),
    (["submit", "ADD", "x", "3"], "'x' is not a number"),
    (["submit", "ADD", "nan", "3"], "NaN and infinity are refused"),
])
def test_invalid_input_exits_2(client: Client, fake_broker: FakeBroker, fake_settings: Settings,
                               argv: list[str], why: str) -> None:
    code, out, err = run(client, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("yadtq: ") and why in err
    assert fake_broker.messages(fake_settings.topic) == [] and client.total() == 0


def test_kafka_down_exits_1(client: Client, fake_broker: FakeBroker) -> None:
    fake_broker.available = False
    code, out, err = run(client, "submit", "ADD", "1", "2")
    assert (code, out) == (1, "")
    assert "task not enqueued" in err
    assert client.counts()[TaskState.FAILED] == 1


def test_submit_wait_times_out_with_exit_6(client: Client) -> None:
    code, out, err = run(client, "submit", "--wait", "0.1", "ADD", "1", "2")
    assert (code, out) == (6, "") and "still queued after 0.1 s" in err


def test_bad_usage_exits_2(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(client)[0] == 2
    assert run(client, "tasks", "--state", "lost")[0] == 2
    assert run(client, "tasks", "--limit", "-1")[:2] == (2, "")
    capsys.readouterr()


# ---------------------------------------------------------------- view / tasks
def test_view_unknown_or_malformed_id_exits_3(client: Client) -> None:
    code, out, err = run(client, "view", "0" * 32)
    assert (code, out) == (3, "") and f"no task with id {'0' * 32}" in err
    code, _, err = run(client, "view", "not-an-id")
    assert code == 3 and "is not a task id" in err
    assert run(client, "retry", "f" * 32)[0] == 3


def test_view_text_and_json(client: Client) -> None:
    task_id = run(client, "submit", "ADD", "2", "3")[1].strip()
    finish(client, task_id, TaskState.COMPLETED, result=5)
    code, out, _ = run(client, "view", task_id)
    assert code == 0
    lines = {line[:10].strip(): line[11:] for line in out.splitlines() if not line.startswith(" ")}
    assert (lines["id:"], lines["task:"], lines["args:"], lines["state:"], lines["result:"]) == \
        (task_id, "ADD", "2 3", "completed", "5")
    assert (lines["error:"], lines["attempts:"], lines["worker:"]) == ("", "1", "w1")
    history = [line.split(None, 2)[2] for line in out.splitlines() if line.startswith("  ")]
    assert history == ["queued       attempt 0", "in-progress  attempt 1 by w1",
                       "completed    attempt 1 by w1"]
    data = json.loads(run(client, "view", "--json", task_id)[1])
    assert (data["id"], data["name"], data["args"], data["state"], data["result"]) == \
        (task_id, "ADD", [2, 3], "completed", 5)
    assert [h["state"] for h in data["history"]] == ["queued", "in-progress", "completed"]


def test_tasks_text_filter_and_json(client: Client) -> None:
    assert run(client, "tasks") == (0, "no tasks\n", "")
    ids = [run(client, "submit", "ADD", str(i), "1")[1].strip() for i in range(3)]
    time.sleep(0.01)
    finish(client, ids[0], TaskState.FAILED, error="boom")
    code, out, _ = run(client, "tasks")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "TASK", "ARGS", "STATE", "RESULT/ERROR",
                                              "WORKER", "TRY", "AGE"]
    assert {line.split()[0] for line in lines[1:]} == set(ids)
    code, out, _ = run(client, "tasks", "--state", "failed")
    assert [line.split()[:5] for line in out.splitlines()[1:]] == \
        [[ids[0], "ADD", "0", "1", "failed"]]
    assert "boom" in out
    data = json.loads(run(client, "tasks", "--json", "--state", "queued")[1])
    assert sorted(d["id"] for d in data) == sorted(ids[1:])
    assert len(json.loads(run(client, "tasks", "--json", "--limit", "1", "--offset", "1")[1])) == 1


def test_retry(client: Client) -> None:
    task_id = run(client, "submit", "DIV", "1", "0")[1].strip()
    code, _, err = run(client, "retry", task_id)
    assert code == 2 and "only failed tasks can be retried" in err
    finish(client, task_id, TaskState.FAILED, error="division by zero")
    assert run(client, "retry", task_id) == (0, task_id + "\n", "")
    assert client.get(task_id).state is TaskState.QUEUED


# ---------------------------------------------------------------- workers / stats
def test_workers_text_and_json(client: Client) -> None:
    assert run(client, "workers") == (0, "no workers\n", "")
    client.store.heartbeat(Beat("host-7", "host", 7, time.time() - 90, "abc", 3, 1), ttl=10)
    code, out, _ = run(client, "workers")
    assert code == 0
    *row, uptime = out.splitlines()[1].split()
    assert row == ["host-7", "alive", "abc", "3", "1"] and uptime in ("1m30s", "1m31s")
    (w,) = json.loads(run(client, "workers", "--json")[1])
    assert (w["id"], w["status"], w["current_task"], w["done"], w["failed"], w["pid"]) == \
        ("host-7", "alive", "abc", 3, 1, 7)


def test_stats_text_and_json(client: Client, fake_broker: FakeBroker) -> None:
    task_id = run(client, "submit", "ADD", "1", "2")[1].strip()
    run(client, "submit", "ADD", "1", "2")
    finish(client, task_id, TaskState.COMPLETED, result=3)
    code, out, _ = run(client, "stats")
    assert code == 0
    assert out.splitlines()[:5] == ["scheduled    0", "queued       1", "in-progress  0",
                                    "completed    1", "failed       0"]
    assert "redis: ok" in out and "kafka: ok" in out
    fake_broker.available = False
    data = json.loads(run(client, "stats", "--json")[1])
    assert data["counts"] == {"scheduled": 0, "queued": 1, "in-progress": 0, "completed": 1,
                              "failed": 0, "cancelled": 0}
    assert (data["redis_ok"], data["kafka_ok"]) == (True, False)
    assert data["kafka_error"] == "Kafka unreachable (fake broker is down)"
    assert run(client, "stats")[1].splitlines()[-1] == "kafka: Kafka unreachable (fake broker is down)"


# ---------------------------------------------------------------- reset
def test_reset_without_yes_on_a_pipe_exits_4_and_keeps_tasks(client: Client) -> None:
    run(client, "submit", "ADD", "1", "2")
    code, out, err = run(client, "reset", stdin=io.StringIO("y\n"))
    assert (code, out) == (4, "") and "--yes" in err
    assert client.total() == 1


def test_reset_asks_on_a_terminal(client: Client, fake_settings: Settings) -> None:
    run(client, "submit", "ADD", "1", "2")
    run(client, "submit", "ADD", "3", "4")
    code, out, err = run(client, "reset", stdin=Tty("n\n"))
    assert code == 4 and "nothing was deleted" in err
    assert f"Delete all 2 tasks under '{fake_settings.key_prefix}:'?" in out
    assert client.total() == 2
    assert run(client, "reset", stdin=Tty(""))[0] == 4 and client.total() == 2
    code, out, _ = run(client, "reset", stdin=Tty("Y\n"))
    assert code == 0 and out.endswith("deleted 2 tasks\n")
    assert client.total() == 0


def test_reset_yes(client: Client) -> None:
    run(client, "submit", "ADD", "1", "2")
    assert run(client, "reset", "--yes") == (0, "deleted 1 tasks\n", "")
    assert client.total() == 0


# ---------------------------------------------------------------- terminal safety
def test_hostile_results_and_errors_never_reach_the_terminal_raw(client: Client) -> None:
    done = run(client, "submit", "ECHO", "hi")[1].strip()
    bad = run(client, "submit", "ECHO", "hi")[1].strip()
    finish(client, done, TaskState.COMPLETED, result=HOSTILE, worker="w\x1b[2J")
    finish(client, bad, TaskState.FAILED, error=HOSTILE)
    client.store.heartbeat(Beat("evil\x1b]0;x\x07", "h", 1, time.time(), "t\x1b[5m", 0, 0), ttl=10)
    outputs = []
    for argv in (["tasks"], ["tasks", "--json"], ["view", done], ["view", bad],
                 ["view", "--json", done], ["view", "--json", bad], ["workers"],
                 ["workers", "--json"], ["retry", done], ["view", "\x1b[2J"]):
        code, out, err = run(client, *argv)
        outputs.append((argv, code, out + err))
    for argv, _code, text in outputs:
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in text, (argv, raw)
    view_text = outputs[2][2]
    assert "[red]x[/red] \\x1b[2J \\x1b]52;c;aGVsbG8=\\x07 \\x9b31m \\u202eevil\\n" in view_text
    assert json.loads(outputs[4][2])["result"] == HOSTILE
    assert json.loads(outputs[5][2])["error"] == HOSTILE


# ---------------------------------------------------------------- exit codes, --version, completion
def test_every_exit_code_has_one_name_and_one_meaning() -> None:
    names = {n: getattr(cli, n) for n in dir(cli)
             if n.startswith("EXIT_") and isinstance(getattr(cli, n), int)}
    assert sorted(names.values()) == list(range(9)) == sorted(cli.EXIT_MEANINGS)
    assert {code for _kind, code in cli.EXIT_CODES} <= set(cli.EXIT_MEANINGS)


@pytest.mark.parametrize(("exc", "code"), [
    (cli.CliError("x", cli.EXIT_DECLINED), cli.EXIT_DECLINED),
    (InvalidTask("x"), cli.EXIT_INVALID),
    (TaskNotFound("x"), cli.EXIT_NOT_FOUND),
    (TaskFinished("x"), cli.EXIT_FINISHED),
    (ServiceUnavailable("x"), cli.EXIT_UNAVAILABLE),
    (StoreError("Redis refused: OOM"), cli.EXIT_REFUSED),
    (DecodeError("x"), cli.EXIT_UNAVAILABLE),
    (ValueError("x"), cli.EXIT_INVALID),
    (PermissionError("x"), cli.EXIT_INVALID),
    (ModuleNotFoundError("x"), cli.EXIT_INVALID),
    (RuntimeError("x"), None),
])
def test_exit_code_mapping(exc: BaseException, code: int | None) -> None:
    assert cli.exit_code(exc) == code


def test_an_unexpected_error_is_not_swallowed(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(client, "counts", boom)
    with pytest.raises(RuntimeError, match="bug"):
        run(client, "stats")


def test_submit_wait_on_a_failed_task_exits_5(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    real_submit = client.submit_text

    def submit_and_fail(text: str, **kw: Any) -> str:
        task_id = real_submit(text, **kw)
        finish(client, task_id, TaskState.FAILED, error="division by zero")
        return task_id

    monkeypatch.setattr(client, "submit_text", submit_and_fail)
    code, out, err = run(client, "submit", "DIV", "1", "0", "--wait", "5")
    assert (code, out) == (cli.EXIT_TASK_FAILED, "") and "failed: division by zero" in err


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    import yadtq

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"yadtq {importlib.metadata.version('yadtq')}\n"
    assert yadtq.__version__ == importlib.metadata.version("yadtq")


@pytest.mark.parametrize("shell", cli.SHELLS)
def test_completion_scripts_name_every_command(shell: str) -> None:
    code, out, err = run(None, "completion", shell)  # needs no client, no services
    assert (code, err) == (0, "")
    words = {w.lstrip("-") for w in re.findall(r"[\w-]+", out)}  # fish writes -l json, not --json
    assert {"yadtq", "state", "json", "wait", "kafka-bootstrap", "queued"} <= words
    for command in cli.COMMANDS:
        assert command.name in out
    assert "--kafka-sasl-password " not in out and "--kafka-sasl-password'" not in out


@pytest.mark.parametrize(("words", "expected"), [
    (["su"], ["submit"]),
    (["tasks", "--state", ""], ["scheduled", "queued", "in-progress", "completed", "failed",
                                "cancelled"]),
    (["completion", ""], ["bash", "zsh", "fish"]),
    (["--redis-u"], ["--redis-url"]),
])
def test_bash_completion_completes(words: list[str], expected: list[str], tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.fail("bash is needed to check the bash completion script")
    script = tmp_path / "yadtq.bash"
    script.write_text(run(None, "completion", "bash")[1], encoding="utf-8")
    line = " ".join(["yadtq", *words])
    comp_words = " ".join(shlex.quote(w) for w in ["yadtq", *words])
    probe = (f"source {shlex.quote(str(script))}; COMP_WORDS=({comp_words}); "
             f"COMP_CWORD={len(words)}; COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}; "
             "_shtab_yadtq; printf '%s\\n' \"${COMPREPLY[@]}\"")
    proc = subprocess.run([bash, "--norc", "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected


# ---------------------------------------------------------------- self-healing: what it reports
def malformed(client: Client, **fields: str) -> str:
    """A submitted task whose stored hash then had ``fields`` overwritten."""
    task_id = run(client, "submit", "ADD", "1", "2")[1].strip()
    client.store.r.hset(client.store.keys.task(task_id), mapping=fields)
    return task_id


def test_tasks_show_a_malformed_task_as_an_invalid_row(client: Client) -> None:
    good = run(client, "submit", "ADD", "3", "4")[1].strip()
    bad = malformed(client, attempt="x")
    code, out, err = run(client, "tasks")
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows[bad].split()[4:6] == ["invalid", "attempt"]
    assert "attempt 'x' is not a number" in rows[bad]
    assert rows[good].split()[4] == "queued"
    data = {d["id"]: d for d in json.loads(run(client, "tasks", "--json")[1])}
    assert (data[bad]["state"], data[bad]["problem"]) == ("invalid", "attempt 'x' is not a number")
    assert (data[good]["state"], data[good]["problem"]) == ("queued", None)


def test_view_shows_the_problem_and_exits_0(client: Client) -> None:
    bad = malformed(client, state="exploded", name=HOSTILE)
    code, out, err = run(client, "view", bad)
    assert (code, err) == (0, "")
    lines = {line[:10].strip(): line[11:] for line in out.splitlines() if not line.startswith(" ")}
    assert lines["state:"] == "invalid"
    assert lines["problem:"].startswith("name ") and "unknown state 'exploded'" in lines["problem:"]
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    data = json.loads(run(client, "view", "--json", bad)[1])
    assert data["state"] == "invalid" and "unknown state 'exploded'" in data["problem"]


def test_a_key_of_the_wrong_type_is_an_invalid_task_not_a_traceback(client: Client) -> None:
    task_id = run(client, "submit", "ADD", "1", "2")[1].strip()
    key = client.store.keys.task(task_id)
    client.store.r.delete(key)
    client.store.r.set(key, "not a hash")
    code, out, err = run(client, "view", task_id)
    assert (code, err) == (0, "")
    assert "state:     invalid" in out and "not a task record" in out
    assert run(client, "tasks")[0] == 0


def test_submit_wait_on_an_invalid_task_exits_5(client: Client,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_submit = client.submit_text

    def submit_and_break(text: str, **kw: Any) -> str:
        task_id = real_submit(text, **kw)
        client.store.r.hset(client.store.keys.task(task_id), "attempt", "x")
        return task_id

    monkeypatch.setattr(client, "submit_text", submit_and_break)
    code, out, err = run(client, "submit", "ADD", "1", "2", "--wait", "5")
    assert (code, out) == (cli.EXIT_TASK_FAILED, "")
    assert "is invalid: attempt 'x' is not a number" in err


def test_workers_show_a_stalled_worker_and_why(client: Client) -> None:
    why = "task abc (SLEEP) is 40 s over its time limit of 10 s and has not stopped"
    client.store.heartbeat(Beat("host-7", "host", 7, time.time() - 90, "abc", 3, 1, stalled=why),
                           ttl=10)
    client.store.heartbeat(Beat("host-8", "host", 8, time.time() - 90, None, 0, 0), ttl=10)
    code, out, _ = run(client, "workers")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[-2:] == ["STALLED", "BECAUSE"]
    rows = {line.split()[0]: line for line in lines}
    assert rows["host-7"].split()[1] == "stalled" and rows["host-7"].endswith(why)
    assert rows["host-8"].split()[1] == "alive" and rows["host-8"].split()[-1] != "stopped"
    data = {w["id"]: w for w in json.loads(run(client, "workers", "--json")[1])}
    assert (data["host-7"]["status"], data["host-7"]["stalled"]) == ("stalled", why)
    assert (data["host-8"]["status"], data["host-8"]["stalled"]) == ("alive", None)


def test_stats_print_the_repair_counters(client: Client) -> None:
    out = run(client, "stats")[1]
    assert "repair runs: 0" in out and "last repair run: never" in out
    assert json.loads(run(client, "stats", "--json")[1])["repairs"] == {
        "runs": 0, "resent_queued": 0, "requeued_in_progress": 0, "last_run_at": None,
        "last_leader": None, "last_repaired": 0}
    client.store.record_repairs("node-a-1", 2, 1)
    client.store.record_repairs("node-b-2", 0, 4)
    code, out, _ = run(client, "stats")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("repair runs: 2")
    assert lines[start + 1:start + 3] == ["re-sent queued: 2", "re-queued in-progress: 5"]
    assert re.fullmatch(r"last repair run: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z by "
                        r"node-b-2 \(4 repaired\)", lines[start + 3])
    repairs = json.loads(run(client, "stats", "--json")[1])["repairs"]
    assert (repairs["runs"], repairs["resent_queued"], repairs["requeued_in_progress"],
            repairs["last_leader"], repairs["last_repaired"]) == (2, 2, 5, "node-b-2", 4)
    assert abs(repairs["last_run_at"] - time.time()) < 60


def test_redis_refusing_exits_7_with_its_words(client: Client,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise StoreError("Redis refused: OOM command not allowed when used memory > 'maxmemory'.")

    monkeypatch.setattr(client.store, "create", refuse)
    code, out, err = run(client, "submit", "ADD", "1", "2")  # Kafka took it: still an error
    assert (code, out) == (cli.EXIT_REFUSED, "")
    assert err == "yadtq: Redis refused: OOM command not allowed when used memory > 'maxmemory'.\n"
    monkeypatch.setattr(client.store, "reset", refuse)
    assert run(client, "reset", "--yes")[0] == cli.EXIT_REFUSED


# ---------------------------------------------------------------- delayed submits
def test_submit_in_and_at_schedule_the_task(client: Client, fake_broker: FakeBroker) -> None:
    code, out, err = run(client, "submit", "ADD", "2", "3", "--in", "30s")
    assert (code, err) == (0, "")
    task = client.get(out.strip())
    assert task.state is TaskState.SCHEDULED and task.due_at is not None
    assert 29.9 < task.due_at - task.created_at < 31 and task.args == (2, 3)
    code, out, _ = run(client, "submit", "--in", "5m", "SUB", "5", "-3")
    assert code == 0 and client.get(out.strip()).args == (5, -3)
    at = datetime.now() + timedelta(hours=2)  # naive: local time
    code, out, _ = run(client, "submit", "ADD", "1", "1", "--at", at.isoformat(timespec="seconds"))
    assert code == 0
    assert client.get(out.strip()).due_at == pytest.approx(at.timestamp(), abs=1)
    assert fake_broker.messages(client.settings.topic) == []
    listed = run(client, "tasks", "--state", "scheduled")[1]
    assert listed.count("scheduled") == 3 and "due in 1h59m" in listed
    view = run(client, "view", client.list(TaskState.SCHEDULED)[0].id)[1]
    assert "\ndue:" in view and "due in" in view
    data = json.loads(run(client, "view", "--json", client.list()[0].id)[1])
    assert data["state"] == "scheduled" and data["due_at"] > time.time()


@pytest.mark.parametrize(("argv", "reason"), [
    (["--in", "-5s"], "is not a duration"), (["--in", "soon"], "is not a duration"),
    (["--in", "nan"], "is not a duration"), (["--in", "500d"], "days"),
    (["--at", "next week"], "ISO 8601"), (["--in", "5s", "--at", "2030-01-01T00:00"], "not both"),
])
def test_submit_refuses_bad_delays_with_exit_2(client: Client, argv: list[str], reason: str) -> None:
    code, out, err = run(client, "submit", "ADD", "2", "3", *argv)
    assert (code, out) == (2, "") and reason in err and err.startswith("yadtq: ")
    assert client.list() == []


# ---------------------------------------------------------------- cancel
def test_cancel_a_queued_task(client: Client) -> None:
    task_id = client.submit("ADD", [1, 2])
    code, out, err = run(client, "cancel", task_id)
    assert (code, err) == (0, "")
    assert out == f"cancelled {task_id}: it was queued; it will not start\n"
    assert client.get(task_id).state is TaskState.CANCELLED
    code, out, _ = run(client, "tasks", "--state", "cancelled")
    assert code == 0 and task_id in out and "cancelled" in out
    code, out, _ = run(client, "view", task_id)
    assert "state:     cancelled" in out and "cancelled before it started" in out


def test_cancel_a_running_task_asks_its_worker(client: Client) -> None:
    task_id = client.submit("ADD", [1, 2])
    task = client.get(task_id)
    client.store.start("w1", [Envelope(task.id, task.name, task.args, task.created_at)])
    code, out, err = run(client, "cancel", task_id.upper())
    assert (code, err) == (0, "")
    assert out == f"cancelling {task_id}: it is running; its worker interrupts it\n"
    assert client.get(task_id).state is TaskState.IN_PROGRESS  # until its worker writes it


@pytest.mark.parametrize("state", [TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED])
def test_cancel_a_finished_task_exits_8_and_changes_nothing(client: Client,
                                                            state: TaskState) -> None:
    task_id = client.submit("ADD", [1, 2])
    if state is TaskState.CANCELLED:
        client.cancel(task_id)
    else:
        finish(client, task_id, state, result=3)
    before = client.get(task_id)
    code, out, err = run(client, "cancel", task_id)
    assert (code, out) == (cli.EXIT_FINISHED, "")
    assert err == (f"yadtq: task {task_id} is already {state.value}: only queued, scheduled or "
                   "running tasks can be cancelled; nothing changed\n")
    assert client.get(task_id) == before


@pytest.mark.parametrize("task_id", ["0" * 32, "nope!"])
def test_cancel_an_unknown_id_exits_3(client: Client, task_id: str) -> None:
    code, out, err = run(client, "cancel", task_id)
    assert (code, out) == (cli.EXIT_NOT_FOUND, "") and err.startswith("yadtq: ")


def test_submit_wait_on_a_cancelled_task_exits_5(client: Client,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real_submit = client.submit_text

    def submit_and_cancel(text: str, **kw: Any) -> str:
        task_id = real_submit(text, **kw)
        client.cancel(task_id)
        return task_id

    monkeypatch.setattr(client, "submit_text", submit_and_cancel)
    code, out, err = run(client, "submit", "ADD", "1", "2", "--wait", "5")
    assert (code, out) == (cli.EXIT_TASK_FAILED, "") and "was cancelled" in err


def test_wait_prints_the_result_of_a_task_finished_meanwhile(client: Client) -> None:
    task_id = client.submit("ADD", [2, 3])
    threading.Timer(0.3, lambda: finish(client, task_id, TaskState.COMPLETED, result=5)).start()
    code, out, err = run(client, "wait", task_id, "--timeout", "5")
    assert (code, out, err) == (0, "5\n", "")
    code, out, _ = run(client, "wait", task_id, "--json")  # already final: at once
    assert code == 0 and json.loads(out)["result"] == 5 and json.loads(out)["state"] == "completed"


def test_wait_exit_codes_failed_cancelled_timed_out_unknown_and_bad_input(client: Client) -> None:
    failed, cancelled, pending = (client.submit("ADD", [1, i]) for i in range(3))
    finish(client, failed, TaskState.FAILED, error="boom [b]x[/b]")
    client.cancel(cancelled)
    code, out, err = run(client, "wait", failed)
    assert (code, out) == (cli.EXIT_TASK_FAILED, "") and "failed: boom [b]x[/b]" in err
    code, out, err = run(client, "wait", failed, "--json")  # the task as JSON, and still exit 5
    assert code == cli.EXIT_TASK_FAILED and json.loads(out)["error"] == "boom [b]x[/b]"
    assert run(client, "wait", cancelled)[0] == cli.EXIT_TASK_FAILED
    code, out, err = run(client, "wait", pending, "--timeout", "0.2")
    assert (code, out) == (cli.EXIT_TIMED_OUT, "") and err.strip()
    assert run(client, "wait", "0" * 32, "--timeout", "1")[0] == cli.EXIT_NOT_FOUND
    code, _, err = run(client, "wait", "not-an-id")  # as view: no such task
    assert code == cli.EXIT_NOT_FOUND and "is not a task id" in err
    assert run(client, "wait", pending, "--timeout", "-1")[0] == cli.EXIT_INVALID
