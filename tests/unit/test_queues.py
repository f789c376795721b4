"""Named queues over fakeredis (real Lua) and the in-memory Kafka: names, the wire field, the
stored field, routing of every path that sends a task, and workers that consume only their queues.
Hostile inputs first."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.polling import eventually
from worker.repair import Reconciler
from worker.worker import Worker
from yadtq.broker_types import SLOT_STRIDE, Record, dead_letter_body, slot, unslot
from yadtq.builtins import register_builtins
from yadtq.client import Client
from yadtq.errors import DecodeError, InvalidTask, ServiceUnavailable
from yadtq.keys import DEFAULT_QUEUE, check_queue, queue_topic, topic_queue
from yadtq.models import TaskState
from yadtq.records import task as task_from
from yadtq.registry import Registry, TaskSpec
from yadtq.schedules import ScheduleError, Schedules, periodic
from yadtq.settings import Settings, add_arguments
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope, decode

BAD_QUEUES = ["", "a.b", "a b", "x" * 65, "émails", "a/b", "a:b", "*", "a\nb", "..", "a\x00"]
ID = "0123456789abcdef0123456789abcdef"


# ------------------------------------------------------------------ names and topics
@pytest.mark.parametrize("name", BAD_QUEUES)
def test_a_bad_queue_name_is_refused_with_a_reason(name: str) -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        check_queue(name)


@pytest.mark.parametrize("name", [None, 3, b"emails", ["emails"]])
def test_a_queue_name_that_is_not_text_is_refused(name: Any) -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        check_queue(name)


def test_each_queue_has_its_own_topic_and_default_keeps_the_tasks_topic() -> None:
    assert queue_topic("yadtq.tasks", DEFAULT_QUEUE) == "yadtq.tasks"
    assert queue_topic("yadtq.tasks", "emails") == "yadtq.tasks.emails"
    assert topic_queue("yadtq.tasks", "yadtq.tasks.emails") == "emails"
    assert topic_queue("yadtq.tasks", "yadtq.tasks") == DEFAULT_QUEUE
    for other in ("yadtq.dead-letter", "yadtq.tasksx.emails", "yadtq.tasks.default",
                  "yadtq.tasks.a.b", "yadtq.tasks."):
        assert topic_queue("yadtq.tasks", other) is None
    with pytest.raises(ValueError):
        queue_topic("yadtq.tasks", "a.b")


def test_slots_number_the_partitions_of_several_topics_apart() -> None:
    assert slot(0, 5) == 5 and unslot(5) == (0, 5)  # one queue: the partitions' own numbers
    assert unslot(slot(3, 11)) == (3, 11)
    with pytest.raises(ValueError):
        slot(1, SLOT_STRIDE)
    body = json.loads(dead_letter_body(Record(slot(2, 7), 4, b"x", "t.q"), "bad", "w"))
    assert (body["topic"], body["partition"]) == ("t.q", 7)


# ------------------------------------------------------------------ settings
def test_queues_setting_from_env_and_flag_and_refused_when_bad() -> None:
    assert Settings().queue_list() == ("default",)
    assert Settings.from_env({"YADTQ_QUEUES": " emails, default ,emails"}).queue_list() == \
        ("emails", "default")
    for bad in ("a.b", ",", "default,x y"):
        with pytest.raises(ValueError, match="queues"):
            Settings.from_env({"YADTQ_QUEUES": bad})
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert "YADTQ_QUEUES" in parser.format_help()
    assert Settings.from_args(parser.parse_args(["--queues", "default,emails"]), {}).queue_list() \
        == ("default", "emails")


# ------------------------------------------------------------------ wire
def test_a_default_queue_message_is_the_same_bytes_as_before_queues() -> None:
    raw = Envelope(ID, "ADD", (1, 2), 1.0).encode()
    assert b"queue" not in raw
    assert decode(raw).queue == DEFAULT_QUEUE


def test_a_named_queue_travels_in_the_message() -> None:
    env = Envelope(ID, "ADD", (1, 2), 1.0, "emails")
    assert decode(env.encode()) == env


def test_an_old_message_without_the_field_decodes_as_default() -> None:
    raw = json.dumps({"v": 1, "id": ID, "name": "ADD", "args": [1], "created_at": 1.0}).encode()
    assert decode(raw).queue == "default"


@pytest.mark.parametrize("value", [*BAD_QUEUES, None, 7, ["emails"], {"q": 1}, True])
def test_a_message_with_a_bad_queue_is_refused_with_one_reason(value: Any) -> None:
    raw = json.dumps({"v": 1, "id": ID, "name": "ADD", "args": [1], "created_at": 1.0,
                      "queue": value}).encode()
    with pytest.raises(DecodeError, match="queue"):
        decode(raw)
    with pytest.raises(DecodeError):
        Envelope(ID, "ADD", (), 1.0, value).encode()


def test_a_stored_record_with_a_bad_queue_reads_with_a_problem() -> None:
    base = {"id": ID, "name": "ADD", "args": "[]", "state": "queued", "attempt": "0",
            "created_at": "1.0"}
    assert task_from(ID, base).queue == DEFAULT_QUEUE
    assert task_from(ID, {**base, "queue": "emails"}).queue == "emails"
    bad = task_from(ID, {**base, "queue": "a.b"})
    assert bad.queue == DEFAULT_QUEUE and bad.problem and "queue" in bad.problem


# ------------------------------------------------------------------ declaring
def test_task_decorator_refuses_a_bad_queue_at_declaration() -> None:
    reg = Registry()
    with pytest.raises(ValueError, match="invalid queue name"):
        reg.task("SEND", queue="a.b")
    spec = reg.register(lambda: None, "SEND", queue="emails")
    assert TaskSpec.from_public(spec.to_public()).queue == "emails"
    with pytest.raises(ValueError):
        TaskSpec.from_public({**spec.to_public(), "queue": "a b"})


def test_periodic_refuses_a_bad_queue_and_takes_the_tasks_own() -> None:
    reg = Registry()
    reg.register(lambda: None, "SEND", queue="emails")
    reg.register(lambda: None, "PING")
    schedules = Schedules()
    with pytest.raises(ScheduleError, match="queue"):
        periodic("SEND", every=60, queue="a.b", schedules=schedules)
    periodic("SEND", every=60, schedules=schedules)
    periodic("PING", every=60, schedules=schedules)
    periodic("PING", every=60, name="PING2", queue="urgent", schedules=schedules)
    routed = {s.name: s.queue for s in schedules.routed(reg)}
    assert routed == {"SEND": "emails", "PING": "default", "PING2": "urgent"}


# ------------------------------------------------------------------ routing
@pytest.fixture
def reg() -> Registry:
    reg = Registry()
    register_builtins(reg)

    @reg.task("SEND", queue="emails")
    def send(to: str) -> str:
        return f"sent {to}"

    return reg


@pytest.fixture
def client(fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker,
           reg: Registry) -> Client:
    return Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                  kafka_ping=fake_broker.ping, registry=reg)


def topic_ids(broker: FakeBroker, topic: str) -> list[str]:
    return [decode(m).id for m in broker.messages(topic)]


@pytest.mark.parametrize("name", BAD_QUEUES)
def test_submit_to_a_bad_queue_records_and_sends_nothing(client: Client, fake_broker: FakeBroker,
                                                          name: str) -> None:
    with pytest.raises(InvalidTask, match="invalid queue name"):
        client.submit("ADD", [1, 2], queue=name)
    with pytest.raises(InvalidTask):
        client.submit_many([("ADD", [1, 2])], queue=name, delay=30)
    assert client.total() == 0 and fake_broker.topics == {}


def test_submit_routes_by_queue_and_records_it(client: Client, fake_broker: FakeBroker) -> None:
    base = client.settings.topic
    plain = client.submit("ADD", [1, 2])
    named = client.submit("ADD", [1, 2], queue="emails")
    own = client.submit("SEND", ["a@b"])  # @task(queue="emails")
    overridden = client.submit("SEND", ["a@b"], queue="default")
    assert topic_ids(fake_broker, base) == [plain, overridden] or \
        sorted(topic_ids(fake_broker, base)) == sorted([plain, overridden])
    assert sorted(topic_ids(fake_broker, f"{base}.emails")) == sorted([named, own])
    assert [client.get(i).queue for i in (plain, named, own, overridden)] == \
        ["default", "emails", "emails", "default"]
    assert decode(fake_broker.messages(f"{base}.emails")[0]).queue == "emails"


def test_background_submit_routes_by_queue(client: Client, fake_broker: FakeBroker) -> None:
    task_id = client.submit("ADD", [1, 2], queue="bulk", wait=False)
    client.flush()
    assert topic_ids(fake_broker, f"{client.settings.topic}.bulk") == [task_id]


def test_the_scheduler_sends_a_due_task_to_its_queue(client: Client, fake_broker: FakeBroker,
                                                     fake_store: RedisStore) -> None:
    from worker.scheduler import Scheduler
    task_id = client.submit("ADD", [1, 2], queue="emails", delay=0.05)
    time.sleep(0.1)
    outbox = _outbox(client.settings, fake_broker)
    sched = Scheduler(client.settings, client.due, outbox, "s1", _event())
    eventually(lambda: bool(sched.tick() and topic_ids(fake_broker, f"{client.settings.topic}"
                                                                    ".emails")), timeout=5)
    assert topic_ids(fake_broker, f"{client.settings.topic}.emails") == [task_id]
    assert fake_broker.messages(client.settings.topic) == []


def test_retry_sends_to_the_tasks_queue(client: Client, fake_broker: FakeBroker,
                                        fake_store: RedisStore) -> None:
    task_id = client.submit("ADD", [1, 2], queue="emails")
    fake_store.transition(task_id, TaskState.QUEUED, TaskState.FAILED, note="test", error="x")
    client.retry(task_id)
    assert topic_ids(fake_broker, f"{client.settings.topic}.emails") == [task_id, task_id]


def test_the_reconciler_resends_a_stranded_task_to_its_queue(
        client: Client, fake_broker: FakeBroker, fake_store: RedisStore) -> None:
    settings = client.settings.with_(repair_after=1.0)
    envelope = Envelope("f" * 32, "ADD", (1, 2), time.time(), "emails")
    fake_store.create([envelope])  # recorded, never sent: its client died before the send
    rec = Reconciler(settings, fake_store, fake_broker.offsets, _outbox(settings, fake_broker),
                     "w1", _event())
    done = rec.run_once(now=time.time() + 100)
    assert done is not None and done.resent_queued == 1
    assert topic_ids(fake_broker, f"{settings.topic}.emails") == [envelope.id]
    assert fake_broker.messages(settings.topic) == []


def _event() -> Any:
    import threading
    return threading.Event()


def _outbox(settings: Settings, broker: FakeBroker) -> Any:
    from worker.outbox import Outbox
    return Outbox(settings, broker.producer, "w1")


def test_the_kafka_producer_refuses_a_bad_queue_before_any_topic() -> None:
    """The real producer's routing without a broker: ``encode`` refuses first."""
    from yadtq.broker import TaskProducer

    producer = TaskProducer.__new__(TaskProducer)
    producer.settings = Settings()
    producer._ready = {producer.settings.topic}
    fut = producer._send_one(None, Envelope(ID, "ADD", (), 1.0, "a.b"))
    assert isinstance(fut, DecodeError) and producer._ready == {producer.settings.topic}


# ------------------------------------------------------------------ workers
def worker(settings: Settings, store: RedisStore, broker: FakeBroker, reg: Registry, wid: str,
           queues: str) -> Worker:
    return Worker(settings.with_(queues=queues), reg, store=store, consumer_factory=broker.consumer,
                  producer_factory=broker.producer, offsets_factory=broker.offsets, worker_id=wid,
                  repair=False, schedule=False)


def test_workers_run_only_their_queues(client: Client, fake_broker: FakeBroker,
                                       fake_store: RedisStore, reg: Registry) -> None:
    plain = [client.submit("ADD", [i, 1]) for i in range(6)]
    mails = [client.submit("SEND", [f"to{i}"]) for i in range(6)]
    w_default = worker(client.settings, fake_store, fake_broker, reg, "wd", "default")
    w_default.run(idle_exit=0.3)
    assert {client.get(i).state for i in plain} == {TaskState.COMPLETED}
    assert {client.get(i).state for i in mails} == {TaskState.QUEUED}  # never delivered to it
    w_mail = worker(client.settings, fake_store, fake_broker, reg, "we", "emails")
    w_mail.run(idle_exit=0.3)
    assert {client.get(i).state for i in mails} == {TaskState.COMPLETED}
    assert {client.get(i).worker for i in mails} == {"we"}
    assert {client.get(i).worker for i in plain} == {"wd"}


def test_a_worker_of_several_queues_runs_them_all_and_commits_each(
        client: Client, fake_broker: FakeBroker, fake_store: RedisStore, reg: Registry) -> None:
    ids = [client.submit("ADD", [i, 1], queue=q) for i in range(4) for q in ("default", "a", "b")]
    w = worker(client.settings, fake_store, fake_broker, reg, "w", "default,a,b")
    w.run(idle_exit=0.3)
    assert {client.get(i).state for i in ids} == {TaskState.COMPLETED}
    group = fake_broker.groups[client.settings.group]
    for q in ("a", "b"):
        topic = f"{client.settings.topic}.{q}"
        ends = {p: len(m) for p, m in enumerate(fake_broker.topics[topic]) if m}
        assert {p: group.queues[topic][p] for p in ends} == ends
    assert sum(group.committed.values()) == 4


def test_a_worker_restarted_with_other_queues_picks_up_only_those(
        client: Client, fake_broker: FakeBroker, fake_store: RedisStore, reg: Registry) -> None:
    first = [client.submit("ADD", [i, 1], queue="a") for i in range(3)]
    worker(client.settings, fake_store, fake_broker, reg, "w", "a").run(idle_exit=0.3)
    second = [client.submit("ADD", [i, 1], queue="a") for i in range(3)]
    other = [client.submit("ADD", [i, 1], queue="b") for i in range(3)]
    worker(client.settings, fake_store, fake_broker, reg, "w", "b").run(idle_exit=0.3)
    assert {client.get(i).state for i in first + other} == {TaskState.COMPLETED}
    assert {client.get(i).state for i in second} == {TaskState.QUEUED}
    worker(client.settings, fake_store, fake_broker, reg, "w", "b,a").run(idle_exit=0.3)
    assert {client.get(i).state for i in second} == {TaskState.COMPLETED}
    assert all(client.get(i).attempt == 1 for i in first + second + other)  # none ran twice


def test_a_message_naming_a_bad_queue_is_dead_lettered_not_a_crash(
        client: Client, fake_broker: FakeBroker, fake_store: RedisStore, reg: Registry) -> None:
    raw = json.dumps({"v": 1, "id": ID, "name": "ADD", "args": [1, 2], "created_at": 1.0,
                      "queue": "../etc"}).encode()
    fake_broker.append(client.settings.topic, raw, ID.encode())
    good = client.submit("ADD", [1, 2])
    w = worker(client.settings, fake_store, fake_broker, reg, "w", "default")
    w.run(idle_exit=0.3)
    assert client.get(good).state is TaskState.COMPLETED
    dead = fake_broker.messages(client.settings.dead_letter_topic)
    assert len(dead) == 1 and b"queue" in (dead[0] or b"")


def test_producer_failure_for_a_new_queue_marks_the_task_failed(
        client: Client, fake_broker: FakeBroker) -> None:
    fake_broker.available = False
    with pytest.raises(ServiceUnavailable):
        client.submit("ADD", [1, 2], queue="emails")
    (task,) = client.list()
    assert task.state is TaskState.FAILED and task.queue == "emails"


# ------------------------------------------------------------------ lag per queue
def test_lag_per_queue_from_committed_and_end_offsets(fake_settings: Settings,
                                                      fake_store: RedisStore,
                                                      fake_broker: FakeBroker, reg: Registry) -> None:
    client = Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                    offsets_factory=fake_broker.offsets, registry=reg)
    client._kafka_ping = fake_broker.ping
    assert client.queue_lag() == {} and client.lag() == 0
    client.submit_many([("ADD", [i, 1]) for i in range(3)])
    client.submit_many([("ADD", [i, 1]) for i in range(5)], queue="emails")
    fake_broker.append(fake_settings.dead_letter_topic, b"x")  # not a queue's topic
    assert client.queue_lag() == {"default": 3, "emails": 5}
    worker(fake_settings, fake_store, fake_broker, reg, "we", "emails").run(idle_exit=0.3)
    assert client.queue_lag() == {"default": 3, "emails": 0}
    health = client.health()
    assert (health.lag, health.queue_lag) == (3, (("default", 3), ("emails", 0)))
    fake_broker.available = False
    assert client.queue_lag() is None and client.health().queue_lag == ()


def test_dashboard_queue_filter_helpers(client: Client) -> None:
    from yadtq_tui.data import empty_text, fetch_snapshot, next_queue, tasks_title
    from yadtq_tui.widgets.status_bar import lag_text

    assert [next_queue(q, {"b", "a"}) for q in (None, "a", "b", "gone")] == ["a", "b", None, "a"]
    assert next_queue(None, ()) is None
    mails = client.submit_many([("ADD", [i, 1]) for i in range(3)], queue="emails")
    client.submit_many([("ADD", [i, 1]) for i in range(4)])
    snap = fetch_snapshot(client, None, 2, queue="emails")
    assert [t.id for t in snap.tasks] == mails[::-1][:2] and snap.queue_filter == "emails"
    assert tasks_title(snap, None, "emails") == \
        "Tasks · all states · queue emails · newest 2   (f: filter, u: queue)"
    none = fetch_snapshot(client, TaskState.FAILED, 2, queue="emails")
    assert none.tasks == () and "No failed tasks of queue emails" in empty_text(none)
    every = fetch_snapshot(client, None, 100)
    assert len(every.tasks) == 7 and every.queue_filter is None
    assert tasks_title(every, None, None).startswith("Tasks · all states · newest 7 of 7")
    assert lag_text(5, [("default", 5)]) == "lag 5"
    assert lag_text(7, [("default", 5), ("emails", 2)]) == "lag 7 · default 5 · emails 2"


def test_a_queue_whose_topic_would_be_the_dead_letter_topic_is_refused(
        fake_store: RedisStore, fake_broker: FakeBroker, reg: Registry) -> None:
    settings = Settings(key_prefix="yadtq:unit", topic="t", dead_letter_topic="t.dlq")
    with pytest.raises(ValueError, match="dead-letter topic t.dlq"):
        settings.with_(queues="default,dlq")
    client = Client(settings, store=RedisStore(settings, client=fake_store.r),
                    producer_factory=fake_broker.producer, offsets_factory=fake_broker.offsets,
                    registry=reg)
    client._kafka_ping = fake_broker.ping
    with pytest.raises(InvalidTask, match="dead-letter"):
        client.submit("ADD", [1, 2], queue="dlq")
    assert client.total() == 0
    fake_broker.append("t.dlq", b"x")  # named like a queue's topic: not counted as one
    client.submit("ADD", [1, 2], queue="q")
    assert client.queue_lag() == {"q": 1}


def test_the_cli_shows_the_queue(client: Client) -> None:
    import io

    from yadtq.cli_output import print_task, task_json

    task = client.get(client.submit("ADD", [1, 2], queue="emails"))
    assert task_json(task)["queue"] == "emails"
    out = io.StringIO()
    print_task(task, out)
    assert "queue:     emails" in out.getvalue()


def test_lag_per_queue_adds_its_priority_levels(fake_settings: Settings, fake_store: RedisStore,
                                                fake_broker: FakeBroker, reg: Registry) -> None:
    """Each level is a topic of its own: a queue's lag is all of them (it had been the last
    level's alone: 3 normal, 2 high and 1 low task waiting showed as a lag of 1)."""
    client = Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                    offsets_factory=fake_broker.offsets, registry=reg)
    client.submit_many([("ADD", [i, 1]) for i in range(3)])
    for i in range(2):
        client.submit("ADD", [i, 2], priority="high")
    client.submit("ADD", [9, 9], priority="low")
    assert client.queue_lag() == {"default": 6}
