"""The store and the client against the real Redis and Kafka: error classes, malformed records,
and what a ``wait=False`` program sends when it ends without ``flush()``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from tests.conftest import ROOT
from yadtq import Settings
from yadtq.errors import StoreError
from yadtq.models import Outcome, TaskState
from yadtq.store import RedisStore
from yadtq.wire import Envelope

pytestmark = pytest.mark.integration


def _end_offsets(settings: Settings) -> int:
    """How many messages the tasks topic holds (sum of its partitions' end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    from yadtq.broker import client_config

    consumer = KafkaConsumer(**client_config(settings))
    try:
        parts = consumer.partitions_for_topic(settings.topic) or set()
        tps = [TopicPartition(settings.topic, p) for p in parts]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_wait_false_tasks_are_all_sent_when_the_program_just_ends(
        settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    script = textwrap.dedent("""
        from yadtq import Client
        client = Client()
        for i in range(20_000):
            client.submit("ADD", [i, 1], wait=False)
        # no flush(), no close(): the exit hook sends them
    """)
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=180, cwd=ROOT)
    store = RedisStore(settings)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts = store.counts()
        assert counts[TaskState.QUEUED] == 20_000, (counts, proc.stderr[-3000:])
        assert _end_offsets(settings) == 20_000
    finally:
        store.reset()


def _env(args: tuple[object, ...] = (2, 3), name: str = "ADD") -> Envelope:
    return Envelope(uuid.uuid4().hex, name, args, time.time())


def test_a_key_of_the_wrong_type_is_refused_for_good_and_read_as_a_problem(
        real_settings: Settings) -> None:
    store = RedisStore(real_settings)
    bad, good = _env(), _env()
    store.create([good])
    store.r.set(store.keys.task(bad.id), "not a hash")
    with pytest.raises(StoreError, match="Redis refused: WRONGTYPE"):
        store.transition(bad.id, TaskState.QUEUED, TaskState.FAILED, "x")
    assert store.start("w1", [bad, good]) == [-3, 1]
    assert store.finish("w1", [Outcome(bad.id, 1, TaskState.COMPLETED, result=1),
                               Outcome(good.id, 1, TaskState.COMPLETED, result=5)]) == [False, True]
    task = store.get(bad.id)
    assert task is not None and task.problem is not None and "WRONGTYPE" in task.problem
    store.r.zadd(store.keys.index, {bad.id: time.time()})
    assert {t.id: bool(t.problem) for t in store.view(None, 10, 5, late_after=2).tasks} == \
        {bad.id: True, good.id: False}
    assert {t.id: bool(t.problem) for t in store.list()} == {bad.id: True, good.id: False}
    store.r.set(store.keys.counts, "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        store.create([_env()])
    store.r.delete(store.keys.counts)


def test_malformed_and_forged_records_on_the_real_redis(real_settings: Settings) -> None:
    store = RedisStore(real_settings)
    malformed, forged, good = _env(), _env(), _env()
    store.create([malformed, forged, good])
    store.r.hset(store.keys.task(malformed.id), "attempt", "two")
    before = store.r.hgetall(store.keys.task(forged.id))
    fake = Envelope(forged.id, "ADD", (200, 300), forged.created_at)
    assert store.start("w1", [malformed, fake, good]) == [-3, -2, 1]
    assert store.r.hgetall(store.keys.task(forged.id)) == before
    assert store.transition(malformed.id, TaskState.QUEUED, TaskState.FAILED, "x") == 0
    store.r.hset(store.keys.task(good.id), "history", "garbage")
    assert store.finish("w1", [Outcome(good.id, 1, TaskState.COMPLETED, result=5)]) == [False]
    assert store.get(malformed.id).problem == "attempt 'two' is not a number"  # type: ignore[union-attr]
    assert "history is not valid JSON" in (store.get(good.id).problem or "")  # type: ignore[union-attr]


def test_bytes_that_are_not_utf8_and_lone_surrogates_on_the_real_redis(
        real_settings: Settings) -> None:
    store = RedisStore(real_settings)
    e, f = _env(), _env()
    store.create([e, f])
    raw = redis.Redis.from_url(real_settings.redis_url)
    raw.hset(store.keys.task(e.id), mapping={"args": b'["\xff"]', "error": b"\xc3("})
    task = store.get(e.id)
    assert task is not None and task.problem == "args is not valid JSON" and task.error == "\\xc3("
    assert {t.id for t in store.view(None, 10, 5, late_after=2).tasks} == {e.id, f.id}
    store.start("w1", [f])
    assert store.finish("w1", [Outcome(f.id, 1, TaskState.FAILED, error="bad \ud800")]) == [True]
    assert store.get(f.id).error == "bad \\ud800"  # type: ignore[union-attr]


def test_lock_and_repairs_on_the_real_redis(real_settings: Settings) -> None:
    store = RedisStore(real_settings)
    assert store.acquire_lock("repair", "w1", 5) and not store.acquire_lock("repair", "w2", 5)
    store.release_lock("repair", "w1")
    assert store.acquire_lock("repair", "w2", 5)
    store.record_repairs("w2", 4, 1)
    assert store.view(None, 1, 1, late_after=2).repairs == store.repairs()
    assert (store.repairs().runs, store.repairs().last_repaired) == (1, 5)


def test_a_short_id_is_expanded_over_a_large_index_on_the_real_redis(
        real_settings: Settings) -> None:
    """30,000 tasks (a skiplist-encoded index, not a listpack): the CLI's short id is found by
    ZSCAN pages, a shared prefix is refused, and one task added between two tasks' ids is told
    apart by one more digit."""
    store = RedisStore(real_settings)
    now = time.time()
    ids = [uuid.uuid4().hex for _ in range(30_000)]
    for i in range(0, len(ids), 1000):
        store.create([Envelope(t, "ADD", (1, 2), now) for t in ids[i:i + 1000]])
    assert store.r.object("encoding", store.keys.index) == "skiplist"
    target = ids[12_345]
    unique = next(n for n in range(6, 33) if sum(t.startswith(target[:n]) for t in ids) == 1)
    started = time.perf_counter()
    assert store.ids_starting(target[:unique]) == [target]
    elapsed = time.perf_counter() - started
    shared = next(t[:4] for t in ids if sum(u.startswith(t[:4]) for u in ids[:2000]) > 1)
    assert len(store.ids_starting(shared)) == 2
    from yadtq.client import Client
    client = Client(real_settings, store=store)
    try:
        assert client.expand_id(target[:unique].upper()) == target
        assert client.get(client.expand_id(target[:unique])).id == target
    finally:
        client.close()
    print(f"expanding a {unique}-digit prefix over 30,000 ids took {elapsed * 1000:.0f} ms")
