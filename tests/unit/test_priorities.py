"""Priorities over fakeredis (real Lua) and the in-memory Kafka: the levels' names and topics,
the wire and stored fields, every path that re-sends a task keeping its level, the worker's
pause-and-turn rule (``worker.priority``) and the per-topic balanced assignment
(``yadtq.assign``). Hostile inputs first. The real-broker run: tests/integration/test_priorities.py."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.unit.test_queues import _event, _outbox, client, reg, topic_ids, worker  # noqa: F401
from worker.priority import TURN_EVERY, PriorityGate, level_of
from worker.repair import Reconciler
from worker.state import WorkQueue
from yadtq import assign
from yadtq.broker_types import Record, slot
from yadtq.client import Client
from yadtq.errors import DecodeError, InvalidTask
from yadtq.keys import PRIORITIES, check_priority, queue_topic, topic_queue, topic_route
from yadtq.models import TaskState
from yadtq.records import task as task_from
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.wire import Envelope, decode

BAD_LEVELS: list[Any] = ["", "HIGH", "urgent", "high ", None, 1, ["high"], "normal\x00"]
ID = "0123456789abcdef0123456789abcdef"


# ------------------------------------------------------------------ names, topics, wire, records
@pytest.mark.parametrize("level", BAD_LEVELS)
def test_a_bad_level_is_refused_with_a_reason(level: Any) -> None:
    with pytest.raises(ValueError, match="invalid priority .*one of high, normal, low"):
        check_priority(level)


def test_each_level_but_normal_has_a_topic_of_its_own_and_maps_back() -> None:
    base = "yadtq.tasks"
    assert queue_topic(base, "default") == base  # normal: the topics as before priorities
    assert queue_topic(base, "emails") == f"{base}.emails"
    assert queue_topic(base, "default", "high") == f"{base}.default.high"
    assert queue_topic(base, "emails", "low") == f"{base}.emails.low"
    for q in ("default", "emails"):
        for p in PRIORITIES:
            assert topic_route(base, queue_topic(base, q, p)) == (q, p)
            assert topic_queue(base, queue_topic(base, q, p)) == q
    for other in ("yadtq.tasksx", f"{base}.a.normal", f"{base}.a.b.high", f"{base}.a.urgent",
                  "yadtq.dead-letter", f"{base}..high"):
        assert topic_route(base, other) is None, other


def test_worker_topics_keep_the_first_queues_slots_and_rank_each_level() -> None:
    s = Settings(queues="default,emails")
    topics = s.worker_topics()
    assert topics[0] == s.topic  # slots 0..n-1 as before priorities
    assert topics == [s.topic, f"{s.topic}.default.high", f"{s.topic}.default.low",
                      f"{s.topic}.emails", f"{s.topic}.emails.high", f"{s.topic}.emails.low"]
    assert [level_of(slot(i, 3)) for i in range(6)] == [1, 0, 2, 1, 0, 2]


def test_a_queue_whose_level_topic_is_the_dead_letter_topic_is_refused() -> None:
    s = Settings(dead_letter_topic="yadtq.tasks.jobs.high")
    with pytest.raises(ValueError, match="dead-letter topic"):
        s.queue_topic("jobs")
    with pytest.raises(ValueError, match="queues: .*dead-letter"):
        s.with_(queues="default,jobs").queue_list()


def test_a_normal_message_is_the_same_bytes_as_before_priorities() -> None:
    env = Envelope(ID, "ADD", (1, 2), 1.5)
    assert b"priority" not in env.encode()
    assert decode(env.encode()).priority == "normal"
    high = Envelope(ID, "ADD", (1, 2), 1.5, "emails", "high")
    assert decode(high.encode()) == high


@pytest.mark.parametrize("level", BAD_LEVELS[:-1] + ["normal"])
def test_a_message_with_a_bad_or_spelled_out_normal_level_is_refused(level: Any) -> None:
    raw = Envelope(ID, "ADD", (1, 2), 1.5).encode()[:-1] + \
        b',"priority":' + __import__("json").dumps(level).encode() + b"}"
    if level == "normal":  # written out although never written: still a valid level
        assert decode(raw).priority == "normal"
        return
    with pytest.raises(DecodeError, match="priority"):
        decode(raw)


def test_a_stored_record_with_a_bad_level_reads_with_a_problem() -> None:
    t = task_from(ID, {"name": "ADD", "args": "[1,2]", "state": "queued", "attempt": "0",
                       "created_at": "1", "priority": "urgent"})
    assert t.priority == "normal" and t.problem and "priority" in t.problem


# ------------------------------------------------------------------ every path keeps the level
@pytest.mark.parametrize("level", [lv for lv in BAD_LEVELS if lv is not None])  # None: the task's
def test_submit_with_a_bad_level_records_and_sends_nothing(client: Client,  # noqa: F811
                                                           fake_broker: FakeBroker,
                                                           level: Any) -> None:
    with pytest.raises(InvalidTask, match="invalid priority"):
        client.submit("ADD", [1, 2], priority=level)
    with pytest.raises(InvalidTask, match="invalid priority"):
        client.submit_many([("ADD", [1, 2])], priority=level, delay=30)
    assert client.total() == 0 and fake_broker.topics == {}


def test_submit_routes_by_level_and_records_it(client: Client,  # noqa: F811
                                               fake_broker: FakeBroker) -> None:
    base = client.settings.topic
    ids = {p: client.submit("ADD", [1, 2], priority=p) for p in PRIORITIES}
    late = client.submit("ADD", [1, 2], priority="low", wait=False)
    client.flush()
    assert topic_ids(fake_broker, base) == [ids["normal"]]
    assert topic_ids(fake_broker, f"{base}.default.high") == [ids["high"]]
    assert sorted(topic_ids(fake_broker, f"{base}.default.low")) == sorted([ids["low"], late])
    assert {p: client.get(i).priority for p, i in ids.items()} == {p: p for p in PRIORITIES}


def test_retry_scheduler_and_reconciler_keep_the_level(client: Client,  # noqa: F811
                                                       fake_broker: FakeBroker,
                                                       fake_store: RedisStore) -> None:
    base = client.settings.topic
    failed = client.submit("ADD", [1, 2], queue="emails", priority="high")
    fake_store.transition(failed, TaskState.QUEUED, TaskState.FAILED, note="test", error="x")
    client.retry(failed)
    assert topic_ids(fake_broker, f"{base}.emails.high") == [failed, failed]

    later = client.submit("ADD", [1, 2], priority="low", delay=0.05)
    time.sleep(0.1)
    claim = client.due.claim("me", 10.0, 100, 30.0)
    assert claim is not None and [(d.envelope.id, d.envelope.priority) for d in claim.tasks] == \
        [(later, "low")]

    settings = client.settings.with_(repair_after=1.0)
    stranded = Envelope("f" * 32, "ADD", (1, 2), time.time(), "default", "high")
    fake_store.create([stranded])  # recorded, never sent: its client died before the send
    rec = Reconciler(settings, fake_store, fake_broker.offsets, _outbox(settings, fake_broker),
                     "w1", _event())
    done = rec.run_once(now=time.time() + 100)
    assert done is not None and done.resent_queued == 1
    assert topic_ids(fake_broker, f"{base}.default.high") == [stranded.id]


def test_a_worker_recreating_a_lost_record_keeps_queue_and_level(
        client: Client, fake_broker: FakeBroker, fake_store: RedisStore,  # noqa: F811
        fake_redis: Any, reg: Any) -> None:  # noqa: F811
    task_id = client.submit("ADD", [1, 2], queue="emails", priority="low")
    fake_redis.delete(fake_store.keys.task(task_id))  # the record is lost, the message not
    worker(client.settings, fake_store, fake_broker, reg, "w", "emails").run(idle_exit=0.3)
    t = client.get(task_id)
    assert (t.state, t.queue, t.priority) == (TaskState.COMPLETED, "emails", "low")


# ------------------------------------------------------------------ the worker's rule
class _Slots:
    """A consumer as the gate sees it: its slots and, if given, their lags."""

    def __init__(self, slots: set[int], lags: dict[int, int] | None = None) -> None:
        self.slots, self.lag = slots, lags
        self.checks = 0

    def assignment(self) -> set[int]:
        return set(self.slots)

    def lags(self, partitions: set[int]) -> dict[int, int] | None:
        self.checks += 1
        return None if self.lag is None else {p: self.lag.get(p, 0) for p in partitions}


def test_the_gate_holds_lower_levels_while_a_higher_one_has_a_backlog() -> None:
    gate = PriorityGate(max_batches=3, max_wait=60.0)
    hi, no, lo = slot(1, 0), slot(0, 0), slot(2, 0)
    assigned = _Slots({hi, no, lo})  # lags unknown (the confluent client): blind turns
    assert gate.hold(assigned, 0.0) == set()  # nothing known: every level is polled
    gate.saw([hi, no, lo])
    held = [gate.hold(assigned, 0.0) for _ in range(3)]
    assert held == [{no, lo}] * 3 and not gate.turn  # high has a backlog
    gate.saw([hi])
    assert gate.hold(assigned, 0.0) == {hi, lo} and gate.turn  # normal's turn after 3 polls
    gate.saw([no])
    assert gate.hold(assigned, 0.0) == {hi, no} and gate.turn  # then low's, held 4 polls
    gate.saw([])  # low had nothing: no backlog known there
    assert gate.hold(assigned, 0.0) == {no, lo} and not gate.turn  # high still first
    gate.saw([])  # high drained: normal has a backlog known, low is held
    assert gate.hold(assigned, 0.0) == {lo}
    gate.saw([])  # normal drained too: every level polled
    assert gate.hold(assigned, 0.0) == set()
    assert gate.turns == 2


def test_the_gate_gives_a_held_level_its_turn_after_max_wait_even_when_polls_are_rare() -> None:
    gate = PriorityGate(max_batches=1000, max_wait=5.0)
    hi, lo = slot(1, 0), slot(2, 0)
    gate.hold(_Slots({hi, lo}), 0.0)
    gate.saw([hi])
    assert gate.hold(_Slots({hi, lo}), 1.0) == {lo}
    gate.saw([hi])
    assert gate.hold(_Slots({hi, lo}), 4.9) == {lo}
    gate.saw([hi])
    assert gate.hold(_Slots({hi, lo}), 6.1) == {hi} and gate.turn


def test_with_lags_known_a_hidden_high_backlog_is_found_and_an_empty_level_gets_no_turn() -> None:
    gate = PriorityGate(max_batches=2, max_wait=60.0)
    hi, no, lo = slot(1, 0), slot(0, 0), slot(2, 0)
    c = _Slots({hi, no, lo}, {hi: 5, no: 100})
    assert gate.hold(c, 0.0) == set() and c.checks == 0  # no backlog known: no check either
    gate.saw([no])  # normal filled the poll; high's messages were fetched behind it
    assert gate.hold(c, 1.0) == {no, lo} and c.checks == 1  # the check found high waiting
    gate.saw([hi])
    assert gate.hold(c, 1.1) == {no, lo} and c.checks == 1  # checks at most every 0.25 s
    gate.saw([hi])
    assert gate.hold(c, 1.2) == {hi, lo} and gate.turn  # normal has a backlog: its turn
    c.lag = {no: 100}  # high drained; low never had anything
    gate.saw([no])
    for t in (2.0, 2.1, 2.2, 2.3, 2.4, 2.5):
        assert gate.hold(c, t) == {lo} and not gate.turn  # no turn for an empty level
        gate.saw([no])
    assert gate.turns == 1


def test_the_runner_queue_takes_higher_levels_first_and_serves_a_lower_one_in_turn() -> None:
    q = WorkQueue()
    rec = lambda index, off: (None, Record(slot(index, 0), off, b""), False)  # noqa: E731
    q.split([rec(0, 0), rec(2, 0), rec(0, 1)])  # normal and low in one poll: split by level
    q.split([rec(1, 0), rec(1, 1)])  # high, polled later
    assert q.queued == 5 and q.top_level() == 0
    assert [it[1].offset for it in q.get()] == [0, 1]  # the high unit, before the normal one
    for i in range(2, 40):
        q.put([rec(0, i)])
    levels = []
    for _ in range(TURN_EVERY + 2):
        unit = q.get()
        assert isinstance(unit, list)
        levels.append(level_of(unit[0][1].partition))
    assert levels.index(2) <= TURN_EVERY  # the low one waited its turn, not the whole backlog
    assert levels.count(2) == 1 and q.top_level() == 1
    assert q.clear() == 40 - 2 - TURN_EVERY - 1 + 1 and q.queued == 0


def test_a_worker_runs_the_high_tasks_before_the_normal_backlog(
        client: Client, fake_broker: FakeBroker, fake_store: RedisStore,  # noqa: F811
        reg: Any) -> None:  # noqa: F811
    settings = client.settings.with_(concurrency=1, max_poll_records=1, priority_max_batches=4)
    normal = [client.submit("ADD", [i, 0]) for i in range(40)]
    high = [client.submit("ADD", [i, 1], priority="high") for i in range(10)]
    low = [client.submit("ADD", [i, 2], priority="low") for i in range(5)]
    worker(settings, fake_store, fake_broker, reg, "w", "default").run(idle_exit=0.3)
    order = sorted(normal + high + low, key=lambda i: client.get(i).history[-1].at)
    assert {client.get(i).state for i in order} == {TaskState.COMPLETED}
    rank = {i: n for n, i in enumerate(order)}
    assert max(rank[i] for i in high) < 25  # highs came before most of the normal backlog
    assert min(rank[i] for i in low) < max(rank[i] for i in normal)  # low was not starved


# ------------------------------------------------------------------ the assignment
def _shares(out: dict[str, dict[str, list[int]]], topic: str) -> list[int]:
    return [len(t.get(topic, [])) for t in out.values()]


def test_the_case_cooperative_sticky_gets_wrong_is_balanced_per_topic() -> None:
    """A held every partition of the high topic; B joins holding nothing. Total balance alone
    could leave A with all of ``high``; per topic, each gets its share of every level."""
    topics = ["t", "t.high", "t.low"]
    parts = {t: list(range(4)) for t in topics}
    owned = {"A": [("t.high", p) for p in range(4)] + [("t", 0), ("t", 1)],
             "B": [("t", 2), ("t", 3)] + [("t.low", p) for p in range(4)]}
    out = assign.plan({"A": topics, "B": topics}, parts, owned)
    assert all(_shares(out, t) == [2, 2] for t in topics)
    assert out["A"]["t"] == [0, 1] and out["B"]["t"] == [2, 3]  # nothing needless moves
    first = assign.cooperative(out, owned)
    assert first["B"]["t.high"] == [] and len(first["A"]["t.high"]) == 2  # moved next round


def test_plan_is_balanced_sticky_and_deterministic_on_random_groups() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        members = [f"m{i}" for i in range(rnd.randint(1, 6))]
        topics = [f"t{i}" for i in range(rnd.randint(1, 5))]
        parts = {t: list(range(rnd.randint(0, 13))) for t in topics}
        subs = {m: [t for t in topics if rnd.random() < 0.8] or [topics[0]] for m in members}
        owned: dict[str, list[tuple[str, int]]] = {m: [] for m in members}
        for t in topics:
            for p in parts[t]:
                if rnd.random() < 0.6:
                    owned[rnd.choice(members)].append((t, p))
        out = assign.plan(subs, parts, owned)
        for t in topics:  # every partition once, shares within one of each other
            got = sorted(p for m in members for p in out[m].get(t, []))
            subscribed = [m for m in members if t in subs[m]]
            assert got == (parts[t] if subscribed else [])
            shares = [len(out[m].get(t, [])) for m in subscribed]
            assert not shares or max(shares) - min(shares) <= 1
            assert all(not out[m].get(t) for m in members if t not in subs[m])
        if all(set(s) == set(topics) for s in subs.values()):
            totals = [sum(len(v) for v in out[m].values()) for m in members]
            assert max(totals) - min(totals) <= 1
        again = {m: [(t, p) for t, ps in out[m].items() for p in ps] for m in members}
        assert assign.plan(subs, parts, again) == out  # a stable group moves nothing
        assert assign.cooperative(out, again) == out


def test_a_member_joining_moves_only_what_it_takes() -> None:
    topics = ["t", "t.high", "t.low"]
    parts = {t: list(range(12)) for t in topics}
    two = assign.plan({"A": topics, "B": topics}, parts, {})
    owned = {m: [(t, p) for t, ps in two[m].items() for p in ps] for m in two}
    three = assign.plan({"A": topics, "B": topics, "C": topics}, parts, {**owned, "C": []})
    moved = sum(1 for m in ("A", "B") for t in topics for p in two[m][t] if p not in three[m][t])
    assert moved == 12 and all(_shares(three, t) == [4, 4, 4] for t in topics)


def test_the_cli_shows_the_level(client: Client) -> None:  # noqa: F811
    import io

    from yadtq.cli_output import print_task, task_json

    task = client.get(client.submit("ADD", [1, 2], priority="high"))
    assert task_json(task)["priority"] == "high"
    out = io.StringIO()
    print_task(task, out)
    assert "priority:  high" in out.getvalue()


def test_a_task_declares_its_own_level_and_a_submit_may_name_another(
        fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> None:
    from yadtq.registry import Registry, TaskSpec

    own_reg = Registry()

    @own_reg.task("PING", priority="high")
    def ping() -> str:
        return "pong"

    with pytest.raises(ValueError, match="invalid priority"):
        own_reg.task("BAD", priority="urgent")
    c = Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
               kafka_ping=fake_broker.ping, registry=own_reg)
    own, overridden = c.submit("PING"), c.submit("PING", priority="normal")
    assert (c.get(own).priority, c.get(overridden).priority) == ("high", "normal")
    assert topic_ids(fake_broker, f"{fake_settings.topic}.default.high") == [own]
    spec = own_reg.get("PING")
    assert spec is not None and TaskSpec.from_public(spec.to_public()).priority == "high"
    with pytest.raises(ValueError, match="invalid priority"):
        TaskSpec.from_public({**spec.to_public(), "priority": "urgent"})
    assert TaskSpec.from_public({k: v for k, v in spec.to_public().items()
                                 if k != "priority"}).priority == "normal"  # an older worker's


def test_a_poll_that_was_not_full_holds_nothing_back() -> None:
    """A trickle (each poll takes all there is) pauses no level: the confluent client pays a new
    fetch for every pause and resume."""
    gate = PriorityGate(max_batches=3, max_wait=60.0)
    hi, no, lo = slot(1, 0), slot(0, 0), slot(2, 0)
    assigned = _Slots({hi, no, lo})  # lags unknown (the confluent client)
    for _ in range(5):
        assert gate.hold(assigned, 0.0) == set()
        gate.saw([hi, no], full=False)
    assert gate.hold(assigned, 0.0) == set()
    gate.saw([hi], full=True)  # a full poll: high has more behind it
    assert gate.hold(assigned, 0.0) == {no, lo}
