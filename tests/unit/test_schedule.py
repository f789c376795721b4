"""Delays, ETAs, the due set and its claim, over fakeredis (the real Lua scripts) and FakeBroker."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.polling import eventually
from worker.outbox import Outbox
from worker.repair import Reconciler
from worker.scheduler import Scheduler
from yadtq.client import Client
from yadtq.due import DueSet
from yadtq.errors import InvalidTask
from yadtq.models import Outcome, TaskState
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker
from yadtq.when import MAX_DELAY_SECONDS, due, parse_duration, split_text
from yadtq.wire import Envelope, decode

S, Q, P, C, F = (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED,
                 TaskState.FAILED)


def sent_ids(broker: FakeBroker, settings: Settings) -> list[str]:
    return [decode(v).id for v in broker.messages(settings.topic)]


# ---------------------------------------------------------------- inputs
@pytest.mark.parametrize(("delay", "reason"), [
    (-1, "negative"), (-0.001, "negative"), (math.nan, "finite"), (math.inf, "finite"),
    (-math.inf, "finite"), (True, "true/false"), ("soon", "not a duration"), ("1m30s", "duration"),
    ("-5s", "duration"), ("", "duration"), (MAX_DELAY_SECONDS + 1, "days"), ("400d", "days"),
    (10**400, "too large"), ([1], "not list"), (timedelta(seconds=-1), "negative"),
])
def test_bad_delays_are_clear_errors(fake_client: Client, fake_broker: FakeBroker, delay: Any,
                                     reason: str) -> None:
    with pytest.raises(InvalidTask) as err:
        fake_client.submit("ADD", [1, 2], delay=delay)
    assert reason.split()[0] in str(err.value) or reason == "not list"
    assert fake_client.list() == [] and fake_broker.messages(fake_client.settings.topic) == []


@pytest.mark.parametrize(("eta", "reason"), [
    ("tomorrow", "ISO 8601"), (12345, "datetime"), (datetime(9999, 12, 31, tzinfo=UTC), "days"),
    ("2026-13-01T09:00", "ISO 8601"),
])
def test_bad_etas_are_clear_errors(fake_client: Client, eta: Any, reason: str) -> None:
    with pytest.raises(InvalidTask, match=reason):
        fake_client.submit("ADD", [1, 2], eta=eta)
    with pytest.raises(InvalidTask, match="not both"):
        fake_client.submit("ADD", [1, 2], delay=5, eta=datetime.now(UTC) + timedelta(minutes=1))
    assert fake_client.list() == []


def test_durations_and_times() -> None:
    assert [parse_duration(t) for t in ("30", "30s", "5m", "2h", "1d", "0.5s", " 1.5 M")] == \
        [30, 30, 300, 7200, 86400, 0.5, 90]
    now = 1_800_000_000.0
    assert due(delay=0, now=now) is None and due(delay="0s", now=now) is None
    assert due(delay=timedelta(minutes=1), now=now) == due(delay=60, now=now)
    aware = datetime.fromtimestamp(now + 60, UTC)
    assert due(eta=aware, now=now) is not None and due(eta=aware, now=now).seconds == now + 60
    naive_local = datetime.fromtimestamp(now + 60)  # naive = local time
    assert due(eta=naive_local, now=now).seconds == pytest.approx(now + 60)  # type: ignore[union-attr]
    assert due(eta=datetime.fromtimestamp(now - 5, UTC), now=now) is None  # past: at once
    assert split_text("ADD 2 3 in 30s") == ("ADD 2 3", "30s", None)
    assert split_text("ADD 2 3 at 2026-12-01T09:00") == ("ADD 2 3", None, "2026-12-01T09:00")
    assert split_text("ADD 'in' 3") == ("ADD 'in' 3", None, None)


# ---------------------------------------------------------------- submitting
def test_a_delayed_task_is_scheduled_not_sent(fake_client: Client, fake_broker: FakeBroker) -> None:
    before = time.time()
    task_id = fake_client.submit("ADD", [2, 3], delay=30)
    eta_id = fake_client.submit("ADD", [1, 1], eta=datetime.now(UTC) + timedelta(hours=1))
    text_id = fake_client.submit_text("ADD 4 4", delay="5m")
    assert fake_broker.messages(fake_client.settings.topic) == []
    task = fake_client.get(task_id)
    assert task.state is S and task.due_at is not None
    assert before + 29 < task.due_at < time.time() + 31
    assert [h.state for h in task.history] == [S]
    assert fake_client.get(eta_id).due_at == pytest.approx(time.time() + 3600, abs=5)
    assert fake_client.get(text_id).due_at == pytest.approx(time.time() + 300, abs=5)
    assert fake_client.counts()[S] == 3 and fake_client.total(S) == 3
    store = fake_client.store
    assert store.r.zcard(store.keys.due) == 3


def test_due_now_or_in_the_past_goes_straight_to_kafka(fake_client: Client,
                                                       fake_broker: FakeBroker) -> None:
    ids = [fake_client.submit("ADD", [1, 2], delay=0),
           fake_client.submit("ADD", [1, 2], eta=datetime.now(UTC) - timedelta(seconds=5)),
           *fake_client.submit_many([("ADD", (1, 1))], delay=timedelta(0))]
    assert sorted(sent_ids(fake_broker, fake_client.settings)) == sorted(ids)
    assert all(fake_client.get(i).state is Q for i in ids)
    assert fake_client.store.r.zcard(fake_client.store.keys.due) == 0


# ---------------------------------------------------------------- the claim
def envs(n: int) -> list[Envelope]:
    return [Envelope(f"{i:032x}", "ADD", (i, 1), time.time()) for i in range(1, n + 1)]


def test_claim_returns_due_tasks_in_due_order_and_nothing_early(fake_store: RedisStore) -> None:
    due_set = DueSet(fake_store)
    a, b, c = envs(3)
    due_set.schedule([c], 1.0, relative=True)  # long enough for a loaded machine's claim
    due_set.schedule([a], 1.2, relative=True)
    due_set.schedule([b], 60, relative=True)
    claim = due_set.claim("me", 2, 10, 30)
    assert claim is not None and claim.tasks == []
    assert claim.next_due is not None and claim.next_due > claim.now
    time.sleep(1.3)
    claim = due_set.claim("me", 2, 10, 30)
    assert claim is not None and [d.envelope.id for d in claim.tasks] == [c.id, a.id]
    assert claim.tasks[0].envelope == c
    assert [fake_store.get(x.id).state for x in (a, b, c)] == [Q, S, Q]  # type: ignore[union-attr]
    assert [h.note for h in fake_store.get(a.id).history] == ["delayed", "due"]  # type: ignore[union-attr]
    assert fake_store.counts()[S] == 1 and fake_store.counts()[Q] == 2
    assert set(fake_store.r.zrange(fake_store.keys.dispatching, 0, -1)) == {a.id, c.id}
    due_set.dispatched([a.id, c.id])
    assert fake_store.r.zcard(fake_store.keys.dispatching) == 0


def test_only_the_lock_holder_claims(fake_store: RedisStore) -> None:
    due_set = DueSet(fake_store)
    due_set.schedule(envs(1), 0.0, relative=True)
    assert due_set.claim("leader", 2, 10, 30) is not None
    assert due_set.claim("other", 2, 10, 30) is None  # the task stays for the leader
    assert 0 < fake_store.r.pttl(fake_store.keys.lock("scheduler")) <= 2000
    fake_store.r.pexpire(fake_store.keys.lock("scheduler"), 1)  # the leader stopped renewing
    time.sleep(0.01)
    claim = due_set.claim("other", 2, 10, 30)
    assert claim is not None and claim.tasks == []  # the leader had claimed it already


def test_claim_drops_ids_no_longer_scheduled_and_reports_malformed(fake_store: RedisStore) -> None:
    due_set = DueSet(fake_store)
    ok, cancelled, gone, bad_name, bad_args, not_hash = envs(6)
    due_set.schedule([ok, cancelled, gone, bad_name, bad_args, not_hash], 0.0, relative=True)
    assert fake_store.transition(cancelled.id, S, F, "cancelled") == 1  # e.g. cancelled meanwhile
    fake_store.r.delete(fake_store.keys.task(gone.id))
    fake_store.r.hdel(fake_store.keys.task(bad_name.id), "name")
    fake_store.r.hset(fake_store.keys.task(bad_args.id), "args", "{not json")
    fake_store.r.delete(fake_store.keys.task(not_hash.id))
    fake_store.r.set(fake_store.keys.task(not_hash.id), "a string")
    fake_store.r.zadd(fake_store.keys.due, {"f" * 32: 0})  # unknown id
    claim = due_set.claim("me", 2, 10, 30)
    assert claim is not None
    assert [d.envelope.id for d in claim.tasks] == [ok.id]
    assert claim.dropped == 3
    assert sorted(i for i, _ in claim.malformed) == sorted([bad_name.id, bad_args.id, not_hash.id])
    reasons = dict(claim.malformed)
    assert reasons[bad_name.id] == "no name or args" and "JSON" in reasons[bad_args.id]
    assert "not a task record" in reasons[not_hash.id]
    assert fake_store.r.zcard(fake_store.keys.due) == 0
    assert fake_store.get(cancelled.id).state is F  # type: ignore[union-attr]  # left as it is


def test_an_expired_lease_is_sent_again_unless_the_task_moved_on(fake_store: RedisStore) -> None:
    due_set = DueSet(fake_store)
    sent, started = envs(2)
    due_set.schedule([sent, started], 0.0, relative=True)
    claim = due_set.claim("dead-leader", 2, 10, 0.1)  # then it died: never acknowledged
    assert claim is not None and len(claim.tasks) == 2
    assert fake_store.start("w", [started]) == [1]  # this one's message did reach a worker
    assert due_set.claim("next", 2, 10, 30) is None  # the dead leader's lock still lives
    fake_store.r.delete(fake_store.keys.lock("scheduler"))
    time.sleep(0.15)
    claim = due_set.claim("next", 2, 10, 30)
    assert claim is not None and [d.envelope.id for d in claim.tasks] == [sent.id]
    assert claim.dropped == 1  # the started one
    assert fake_store.r.zrange(fake_store.keys.dispatching, 0, -1) == [sent.id]


def test_reset_empties_the_due_and_dispatching_sets(fake_store: RedisStore) -> None:
    due_set = DueSet(fake_store)
    a, b = envs(2)
    due_set.schedule([a], 0, relative=True)
    due_set.schedule([b], 60, relative=True)
    assert due_set.claim("me", 2, 10, 30) is not None
    assert fake_store.reset() == 2
    assert fake_store.r.exists(fake_store.keys.due, fake_store.keys.dispatching) == 0
    assert fake_store.counts()[S] == 0


def test_start_skips_a_task_that_is_not_due(fake_store: RedisStore) -> None:
    (env,) = envs(1)
    DueSet(fake_store).schedule([env], 60, relative=True)
    assert fake_store.start("w", [env]) == [-5]
    assert fake_store.get(env.id).state is S  # type: ignore[union-attr]


def test_a_retry_outcome_is_scheduled_with_its_due_time_in_one_script(fake_store: RedisStore) -> None:
    (env,) = envs(1)
    fake_store.create([env])
    assert fake_store.start("w", [env]) == [1]
    before = time.time()
    assert fake_store.finish("w", [Outcome(env.id, 1, S, error="boom", note="retry in 5 s",
                                           delay=5)]) == [True]
    task = fake_store.get(env.id)
    assert task is not None and (task.state, task.error, task.attempt) == (S, "boom", 1)
    assert task.due_at is not None and before + 4.9 < task.due_at < time.time() + 5.1
    assert fake_store.r.zscore(fake_store.keys.due, env.id) == pytest.approx(task.due_at)
    assert fake_store.counts()[S] == 1 and fake_store.counts()[P] == 0
    # a zombie's outcome for an older attempt is fenced, and adds nothing to the due set
    assert fake_store.finish("w", [Outcome(env.id, 0, S, delay=1)]) == [False]


# ---------------------------------------------------------------- the scheduler loop
def test_scheduler_sends_due_tasks_and_acknowledges_them(fake_settings: Settings,
                                                         fake_store: RedisStore,
                                                         fake_broker: FakeBroker,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    due_set = DueSet(fake_store)
    good = envs(3)
    due_set.schedule(good, 0.2, relative=True)
    fake_store.r.zadd(fake_store.keys.due, {"e" * 32: 0})
    fake_store.r.hset(fake_store.keys.task("e" * 32), mapping={"state": "scheduled", "id": "e" * 32})
    stopping = threading.Event()
    outbox = Outbox(fake_settings, fake_broker.producer, "w1")
    sched = Scheduler(fake_settings, due_set, outbox, "w1", stopping)
    sched.start()
    try:
        assert eventually(lambda: len(sent_ids(fake_broker, fake_settings)) == 3, 3)
        assert sorted(sent_ids(fake_broker, fake_settings)) == sorted(e.id for e in good)
        assert fake_store.r.zcard(fake_store.keys.dispatching) == 0
        assert sched.stats.malformed == 1 and sched.thread.is_alive()
        assert "malformed" in caplog.text and "e" * 32 in caplog.text
    finally:
        stopping.set()
        sched.join(2)
    assert fake_store.r.get(fake_store.keys.lock("scheduler")) is None  # released on stop


def test_reconciler_puts_back_a_scheduled_task_lost_from_the_due_set(
        fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> None:
    due_set = DueSet(fake_store)
    lost, kept, leased = envs(3)
    due_set.schedule([lost, kept], 60, relative=True)
    due_set.schedule([leased], 0, relative=True)
    claim = due_set.claim("me", 2, 10, 30)
    assert claim is not None and [d.envelope.id for d in claim.tasks] == [leased.id]
    fake_store.r.zrem(fake_store.keys.due, lost.id)
    rec = Reconciler(fake_settings.with_(repair_after=0.01), fake_store, fake_broker.offsets,
                     Outbox(fake_settings, fake_broker.producer, "w1"), "w1", threading.Event())
    done = rec.run_once(now=time.time() + 3600)
    assert done is not None and done.restored_scheduled == 1
    assert fake_store.r.zscore(fake_store.keys.due, lost.id) == pytest.approx(
        fake_store.get(lost.id).due_at)  # type: ignore[union-attr]
    assert fake_store.r.zcard(fake_store.keys.due) == 2
    # the claimed one (queued, being sent) is not re-sent by the reconciler
    assert done.resent_queued == 0 and fake_broker.messages(fake_settings.topic) == []


def test_a_cancelled_scheduled_task_is_never_sent(fake_client: Client, fake_broker: FakeBroker) -> None:
    waiting = fake_client.submit("ADD", [1, 2], delay=0.2)
    claimed = fake_client.submit("ADD", [3, 4], delay=0.2)
    time.sleep(0.3)
    due_set = fake_client.due
    store = fake_client.store
    store.r.zrem(store.keys.due, claimed)  # claimed by a leader that has not sent it yet:
    store.r.zadd(store.keys.dispatching, {claimed: 0})  # its lease has expired
    assert store.transition(claimed, S, Q, "due") == 1
    fake_client.cancel(waiting)
    fake_client.cancel(claimed)
    assert store.r.zscore(store.keys.due, waiting) is None  # cancel takes it out of the due set
    claim = due_set.claim("me", 2, 10, 30)
    assert claim is not None and claim.tasks == [] and claim.dropped == 1
    assert fake_broker.messages(fake_client.settings.topic) == []
    assert {fake_client.get(i).state for i in (waiting, claimed)} == {TaskState.CANCELLED}
