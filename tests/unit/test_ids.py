"""Task ids as people type them: the 8-character short id the dashboard and ``yadtq tasks`` show
works in every CLI command that takes an id and in the dashboard's id prompt, for any task in
Redis; a prefix that is too short or that several ids share finds nothing and changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.unit.test_cli import finish, run
from yadtq import ids
from yadtq.builtins import register_builtins
from yadtq.client import Client
from yadtq.errors import InvalidTask, TaskNotFound
from yadtq.models import TaskState
from yadtq.registry import Registry
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope
from yadtq_tui.data import read_task


@pytest.fixture
def client(fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> Client:
    """A client over fakeredis and the in-memory Kafka, with the built-in tasks."""
    registry = Registry()
    register_builtins(registry)
    return Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                  kafka_ping=fake_broker.ping, registry=registry)


def record(store: RedisStore, task_id: str, name: str = "SLEEP", args: tuple[Any, ...] = (5,)) -> str:
    store.create([Envelope(task_id, name, args, time.time())])
    return task_id


def test_a_short_id_works_in_view_wait_cancel_and_retry(client: Client) -> None:
    done = run(client, "submit", "ADD", "2", "3")[1].strip()
    finish(client, done, TaskState.COMPLETED, result=5)
    code, out, _ = run(client, "view", done[:8])
    assert code == 0 and f"id:        {done}" in out
    assert run(client, "wait", done[:8].upper(), "--timeout", "1") == (0, "5\n", "")
    failed = run(client, "submit", "DIV", "1", "0")[1].strip()
    finish(client, failed, TaskState.FAILED, error="division by zero")
    assert run(client, "retry", failed[:6]) == (0, failed + "\n", "")
    queued = run(client, "submit", "ADD", "1", "1")[1].strip()
    code, out, _ = run(client, "cancel", queued[:4] if queued[:4] not in (done[:4], failed[:4])
                       else queued[:10])
    assert code == 0 and out.startswith(f"cancelled {queued}")
    assert client.get(queued).state is TaskState.CANCELLED


def test_a_prefix_two_ids_share_finds_neither_and_cancels_nothing(client: Client) -> None:
    a = record(client.store, "abcd" + "0" * 28)
    b = record(client.store, "abcd" + "1" * 28)
    code, out, err = run(client, "cancel", "abcd")
    assert (code, out) == (2, "")
    assert "abcd is the start of more than one task id" in err and a in err and b in err
    assert client.get(a).state is client.get(b).state is TaskState.QUEUED
    assert run(client, "cancel", "abcd0")[0] == 0  # one more digit: one task
    assert (client.get(a).state, client.get(b).state) == (TaskState.CANCELLED, TaskState.QUEUED)


@pytest.mark.parametrize("typed, code, says", [
    ("abc", 2, "too short to find a task by: give at least 4"),
    ("", 2, None),  # argparse: an empty id is a usage error
    ("ab*", 3, "is not a task id"),  # pattern characters never reach a scan
    ("a?cd", 3, "is not a task id"),
    ("[a-f]", 3, "is not a task id"),
    ("ffff", 3, "no task with an id starting with ffff"),
    ("zzzz", 3, "no task with id zzzz"),  # not hex: looked up as typed
    ("0" * 33, 3, "no task with id"),
])
def test_what_cannot_be_expanded_says_why(client: Client, typed: str, code: int,
                                          says: str | None) -> None:
    record(client.store, "abcd" + "0" * 28)
    got, out, err = run(client, "view", typed)
    assert out == ""
    if says is None:
        assert got != 0
    else:
        assert got == code and says in err


def test_expand_reads_the_index_not_the_keyspace(client: Client) -> None:
    """Only ids in the task index are candidates: a key that merely looks like a task's is not."""
    client.store.r.set(client.store.keys.task("beef" + "0" * 28), "not a task")
    with pytest.raises(TaskNotFound, match="starting with beef"):
        client.expand_id("beef")
    kept = record(client.store, "beef" + "1" * 28)
    assert client.expand_id("BEEF") == kept


def test_expand_scans_the_index_in_pages_and_stops_at_two_matches(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("yadtq.store.ID_SCAN_PAGE", 7)  # many round trips over 60 ids
    for n in range(60):
        record(client.store, "aaaa" + f"{n:04x}" + "e" * 24)
    record(client.store, "bbbb" + "e" * 28)
    calls = 0
    real = client.store.r.zscan

    def zscan(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        assert kwargs.get("count") == 7
        return real(*args, **kwargs)

    monkeypatch.setattr(client.store.r, "zscan", zscan)
    assert client.expand_id("aaaa003b") == "aaaa003b" + "e" * 24
    assert calls > 1  # paged
    with pytest.raises(InvalidTask, match="more than one"):
        client.expand_id("aaaa")
    assert len(client.store.ids_starting("aaaa", most=2)) == 2
    assert len(client.store.ids_starting("aaaa", most=100)) == 60
    with pytest.raises(ValueError):
        client.store.ids_starting("aa*")


def test_the_python_api_looks_ids_up_exactly(client: Client) -> None:
    full = record(client.store, "c0ffee" + "0" * 26)
    with pytest.raises(TaskNotFound):
        client.get(full[:8])
    assert client.get(full).id == full


def test_the_dashboard_prompt_finds_a_task_that_is_not_on_its_page(client: Client) -> None:
    full = record(client.store, "d00d" + "5" * 28)
    found = read_task(client, full[:8])
    assert found.task is not None and found.task.id == full
    record(client.store, "d00d" + "6" * 28)
    shared = read_task(client, "d00d")
    assert shared.task is None and "more than one" in (shared.error or "")
    assert ids.check(" D00D ") == "d00d"
