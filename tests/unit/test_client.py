"""The client over fakeredis and the in-memory Kafka: submit, retry, get, health."""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import pytest

from yadtq import wire
from yadtq.builtins import register_builtins
from yadtq.client import Client
from yadtq.errors import InvalidTask, ServiceUnavailable, TaskNotFound
from yadtq.models import Outcome, TaskState
from yadtq.registry import Registry
from yadtq.settings import Settings
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker

S, Q, P, C, F = (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.IN_PROGRESS, TaskState.COMPLETED,
                 TaskState.FAILED)
X = TaskState.CANCELLED


def sent(broker: FakeBroker, settings: Settings) -> list[wire.Envelope]:
    return [wire.decode(m) for m in broker.messages(settings.topic)]


def snapshot(redis: fakeredis.FakeRedis, broker: FakeBroker, settings: Settings) -> tuple[Any, ...]:
    keys = sorted(redis.keys("*"))
    return keys, [redis.dump(k) for k in keys], broker.messages(settings.topic)


def fail_task(store: RedisStore, task_id: str, error: str = "boom") -> None:
    task = store.get(task_id)
    assert task is not None
    store.start("w", [wire.Envelope(task.id, task.name, task.args, task.created_at)])
    assert store.finish("w", [Outcome(task_id, 1, F, error=error)]) == [True]


# ---------------------------------------------------------------- submit
def test_submit_records_queued_and_sends_one_message(fake_client: Client, fake_broker: FakeBroker,
                                                     fake_settings: Settings) -> None:
    t0 = time.time()
    task_id = fake_client.submit("add", [2, 3.5])
    assert len(task_id) == 32 and int(task_id, 16) >= 0
    task = fake_client.get(task_id)
    assert (task.name, task.args, task.state, task.attempt) == ("ADD", (2, 3.5), Q, 0)
    assert [h.state for h in task.history] == [Q]
    (env,) = sent(fake_broker, fake_settings)
    assert (env.id, env.name, env.args) == (task_id, "ADD", (2, 3.5))
    assert t0 <= env.created_at == task.created_at <= time.time()
    assert fake_client.counts()[Q] == 1 and fake_client.total() == 1


def test_submit_text(fake_client: Client, fake_broker: FakeBroker, fake_settings: Settings) -> None:
    task_id = fake_client.submit_text("  mul 4   2.5 ")
    assert fake_client.get(task_id).args == (4, 2.5)
    assert [e.id for e in sent(fake_broker, fake_settings)] == [task_id]


@pytest.mark.parametrize("name, args, why", [
    ("POW", [2, 3], "unknown task 'POW'"),
    ("os.system", ["rm -rf /"], "unknown task 'os.system'"),
    ("ADD", [2], "ADD takes 2 arguments, got 1"),
    ("ADD", ["2", 3], "must be a number"),
    ("ADD", [float("inf"), 3], "not a finite number"),
    ("ADD", [{"a": 1}, 3], "must be a number, a string"),
    ("ADD", [10**100, 3], "more than 100 digits"),
    ("SLEEP", [1] * 33, "too many arguments"),
])
def test_invalid_input_enqueues_nothing(fake_client: Client, fake_redis: fakeredis.FakeRedis,
                                        fake_broker: FakeBroker, fake_settings: Settings,
                                        name: str, args: list[Any], why: str) -> None:
    before = snapshot(fake_redis, fake_broker, fake_settings)
    with pytest.raises(InvalidTask, match=why.replace("(", r"\(")):
        fake_client.submit(name, args)
    assert snapshot(fake_redis, fake_broker, fake_settings) == before


@pytest.mark.parametrize("text", ["", "ADD", "ADD 1 nan", "ADD '1 2", "DIV ٣ 1", "x" * 20000])
def test_invalid_text_enqueues_nothing(fake_client: Client, fake_redis: fakeredis.FakeRedis,
                                       fake_broker: FakeBroker, fake_settings: Settings,
                                       text: str) -> None:
    before = snapshot(fake_redis, fake_broker, fake_settings)
    with pytest.raises(InvalidTask):
        fake_client.submit_text(text)
    assert snapshot(fake_redis, fake_broker, fake_settings) == before


def test_kafka_down_marks_the_task_failed_not_enqueued(fake_client: Client, fake_broker: FakeBroker,
                                                       fake_settings: Settings) -> None:
    fake_broker.available = False
    with pytest.raises(ServiceUnavailable, match="task not enqueued: Kafka unreachable"):
        fake_client.submit("ADD", [1, 2])
    (task,) = fake_client.list()
    assert task.state is F and task.error is not None and task.error.startswith("not enqueued: ")
    assert [(h.state, h.note) for h in task.history] == [(Q, None), (F, "not enqueued")]
    assert fake_client.counts() == {S: 0, Q: 0, P: 0, C: 0, F: 1, X: 0}
    assert fake_broker.messages(fake_settings.topic) == []


def test_kafka_going_down_after_connecting(fake_client: Client, fake_broker: FakeBroker) -> None:
    first = fake_client.submit("ADD", [1, 2])
    fake_broker.available = False
    with pytest.raises(ServiceUnavailable, match="2 of 2 tasks not enqueued"):
        fake_client.submit_many([("ADD", [1, 2]), ("SUB", [1, 2])])
    assert fake_client.counts() == {S: 0, Q: 1, P: 0, C: 0, F: 2, X: 0}
    assert fake_client.get(first).state is Q


def test_a_producer_that_raises_anything_is_service_unavailable(fake_store: RedisStore,
                                                                fake_settings: Settings) -> None:
    def broken(_s: Settings) -> Any:
        raise RuntimeError("no brokers")
    client = Client(fake_settings, store=fake_store, producer_factory=broken, kafka_ping=lambda s: None)
    with pytest.raises(ServiceUnavailable, match="Kafka: RuntimeError: no brokers"):
        client.submit("ADD", [1, 2])
    assert client.counts()[F] == 1 and client.counts()[Q] == 0


def test_submit_many_is_all_or_nothing(fake_client: Client, fake_redis: fakeredis.FakeRedis,
                                       fake_broker: FakeBroker, fake_settings: Settings) -> None:
    before = snapshot(fake_redis, fake_broker, fake_settings)
    with pytest.raises(InvalidTask, match="unknown task 'NOPE'"):
        fake_client.submit_many([("ADD", [1, 2]), ("SUB", [3, 4]), ("NOPE", [])])
    with pytest.raises(InvalidTask):
        fake_client.submit_many([("ADD", [1, 2]), ("ADD", ["x", 2])])
    assert snapshot(fake_redis, fake_broker, fake_settings) == before
    ids = fake_client.submit_many([("ADD", [1, 2]), ("SUB", [3, 4]), ("DIV", [1, 0])])
    assert len(set(ids)) == 3
    assert sorted(e.id for e in sent(fake_broker, fake_settings)) == sorted(ids)
    assert [fake_client.get(i).name for i in ids] == ["ADD", "SUB", "DIV"]
    assert fake_client.submit_many([]) == []


def test_submit_of_a_huge_integral_float_is_invalid_task(fake_store: RedisStore,
                                                         fake_broker: FakeBroker,
                                                         fake_settings: Settings) -> None:
    reg = Registry()

    @reg.task("SQUARE")
    def square(n: int) -> int:
        return n * n

    client = Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                    kafka_ping=fake_broker.ping, registry=reg)
    with pytest.raises(InvalidTask):
        client.submit("SQUARE", [1e300])


# ---------------------------------------------------------------- retry
def test_retry_requeues_a_failed_task_with_the_same_id(fake_client: Client, fake_broker: FakeBroker,
                                                       fake_settings: Settings) -> None:
    task_id = fake_client.submit("DIV", [1, 0])
    fail_task(fake_client.store, task_id, "division by zero")
    assert fake_client.retry(task_id.upper()) == task_id
    task = fake_client.get(task_id)
    assert (task.state, task.error, task.attempt) == (Q, None, 1)
    assert (task.history[-1].state, task.history[-1].note) == (Q, "retry requested")
    assert [e.id for e in sent(fake_broker, fake_settings)] == [task_id, task_id]
    assert fake_client.counts() == {S: 0, Q: 1, P: 0, C: 0, F: 0, X: 0}
    assert fake_client.store.start("w", sent(fake_broker, fake_settings)[-1:]) == [2]


@pytest.mark.parametrize("state", [Q, P, C])
def test_only_failed_tasks_can_be_retried(fake_client: Client, fake_broker: FakeBroker,
                                          fake_settings: Settings, state: TaskState) -> None:
    task_id = fake_client.submit("ADD", [1, 2])
    if state is not Q:
        fake_client.store.start("w", sent(fake_broker, fake_settings))
    if state is C:
        fake_client.store.finish("w", [Outcome(task_id, 1, C, result=3)])
    with pytest.raises(InvalidTask, match=f"only failed tasks can be retried; .* is {state}"):
        fake_client.retry(task_id)
    assert fake_client.get(task_id).state is state
    assert len(fake_broker.messages(fake_settings.topic)) == 1


def test_retry_with_kafka_down_stays_failed(fake_client: Client, fake_broker: FakeBroker) -> None:
    task_id = fake_client.submit("ADD", [1, 2])
    fail_task(fake_client.store, task_id)
    fake_broker.available = False
    with pytest.raises(ServiceUnavailable, match="retry not enqueued"):
        fake_client.retry(task_id)
    task = fake_client.get(task_id)
    assert task.state is F and task.error is not None and task.error.startswith("not enqueued")
    assert task.history[-1].note == "retry not enqueued"


def test_retry_of_an_unknown_task(fake_client: Client) -> None:
    with pytest.raises(TaskNotFound):
        fake_client.retry("0" * 32)


# ---------------------------------------------------------------- get
@pytest.mark.parametrize("bad", ["", "   ", "../../etc/passwd", "x" * 65, "abc def", "a*",
                                 "yadtq:unit:task:1", "\x1b[2J"])
def test_get_of_a_malformed_id(fake_client: Client, bad: str) -> None:
    with pytest.raises(TaskNotFound, match=r"is not a task id \(32 hex characters\)") as info:
        fake_client.get(bad)
    assert "\x1b" not in str(info.value)


def test_get_of_an_unknown_id(fake_client: Client) -> None:
    with pytest.raises(TaskNotFound, match=f"no task with id {'a' * 32}$"):
        fake_client.get("A" * 32)


def test_get_accepts_surrounding_spaces_and_capitals(fake_client: Client) -> None:
    task_id = fake_client.submit("ADD", [1, 2])
    assert fake_client.get(f"  {task_id.upper()}\n").id == task_id


# ---------------------------------------------------------------- health, workers, registry
def test_health_reflects_the_fake_broker(fake_client: Client, fake_broker: FakeBroker) -> None:
    h = fake_client.health()
    assert (h.redis_ok, h.kafka_ok, h.redis_error, h.kafka_error) == (True, True, None, None)
    fake_broker.available = False
    h = fake_client.health()
    assert (h.redis_ok, h.kafka_ok) == (True, False)
    assert h.kafka_error == "Kafka unreachable (fake broker is down)"


def test_health_reports_redis_down(redis_down_client: Client, fake_settings: Settings,
                                   fake_broker: FakeBroker) -> None:
    client = redis_down_client
    h = client.health()
    assert (h.redis_ok, h.kafka_ok) == (False, True)
    assert h.redis_error is not None and h.redis_error.startswith("Redis unreachable")
    task_id = client.submit("ADD", [1, 2])  # Kafka took it: it runs, recorded by its worker
    assert [wire.decode(m).id for m in fake_broker.messages(fake_settings.topic)] == [task_id]
    fake_broker.available = False
    with pytest.raises(ServiceUnavailable, match="Redis unreachable"):  # nothing took it
        client.submit("ADD", [1, 2])
    assert len(fake_broker.messages(fake_settings.topic)) == 1
    assert [s.name for s in client.task_specs()][:1] == ["ADD"]  # local names still work


def test_tasks_published_by_workers_become_known(fake_client: Client, fake_store: RedisStore,
                                                 fake_broker: FakeBroker,
                                                 fake_settings: Settings) -> None:
    with pytest.raises(InvalidTask, match="unknown task 'RESIZE'"):
        fake_client.parse("RESIZE a.png 640")
    worker_registry = Registry()
    register_builtins(worker_registry)

    @worker_registry.task("RESIZE")
    def resize(path: str, width: int) -> str:
        """Resize an image."""
        return path

    fake_store.publish_specs([s.to_public() for s in worker_registry.specs()])
    assert fake_client.parse("resize a.png 640.0") == ("RESIZE", ("a.png", 640))
    with pytest.raises(InvalidTask, match="width must be an integer"):
        fake_client.parse("RESIZE a.png 6.5")
    task_id = fake_client.submit("RESIZE", ["b.png", 10])
    assert sent(fake_broker, fake_settings)[-1].args == ("b.png", 10)
    assert fake_client.get(task_id).name == "RESIZE"
    assert "RESIZE" in [s.name for s in fake_client.task_specs()]
    assert fake_client.registry().lookup("ADD").fn is not None  # never replaced by a published spec


def test_a_published_spec_with_an_invalid_name_is_ignored(fake_client: Client,
                                                          fake_store: RedisStore,
                                                          fake_broker: FakeBroker,
                                                          fake_settings: Settings) -> None:
    fake_store.publish_specs([{"name": "bad name!", "params": []}])
    try:
        fake_client.submit("bad name!", [])
    except InvalidTask:
        pass
    # otherwise every worker dead-letters the message and the task stays queued forever
    for raw in fake_broker.messages(fake_settings.topic):
        wire.decode(raw)
    assert "bad name!" not in [s.name for s in fake_client.task_specs()]


def test_workers_use_twice_the_heartbeat_interval(fake_client: Client) -> None:
    from yadtq.models import Beat

    fake_client.store.heartbeat(Beat("h-1", "h", 1, time.time(), None, 0, 0), ttl=10)
    assert [w.status.value for w in fake_client.workers()] == ["alive"]
    assert fake_client.settings.heartbeat_interval * 2 == 0.4
    time.sleep(0.45)
    assert [w.status.value for w in fake_client.workers()] == ["late"]


def test_reset_and_close(fake_client: Client) -> None:
    fake_client.submit("ADD", [1, 2])
    assert fake_client.reset() == 1 and fake_client.total() == 0
    fake_client.close()
    fake_client.close()
    assert fake_client.submit("ADD", [1, 2])  # a new producer after close


def test_a_batch_is_listed_newest_first_in_the_order_it_was_given(fake_client: Client) -> None:
    ids = fake_client.submit_many([("ADD", (i, 1)) for i in range(50)])
    assert [t.id for t in fake_client.list(limit=50)] == ids[::-1]


def test_repairs_come_with_the_view_and_on_their_own(fake_client: Client) -> None:
    from yadtq.models import RepairStats

    assert fake_client.repairs() == RepairStats() == fake_client.view().repairs
    fake_client.store.record_repairs("w1", 2, 1)
    stats = fake_client.repairs()
    assert (stats.runs, stats.resent_queued, stats.requeued_in_progress, stats.last_leader,
            stats.last_repaired) == (1, 2, 1, "w1", 3)
    assert fake_client.view().repairs == stats


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:s3cret@cache:6379/2", "yadtq:app on redis://:***@cache:6379/2"),
    ("rediss://ops:p@ss@redis.internal:6380/0", "yadtq:app on rediss://ops:***@redis.internal:6380/0"),
    ("redis://cache:6379/0?password=s3cret", "yadtq:app on redis://cache:6379/0?password=***"),
    ("redis://cache:6379/0", "yadtq:app on redis://cache:6379/0"),
])
def test_describe_names_the_prefix_and_url_without_the_password(url: str, shown: str) -> None:
    client = Client(Settings(redis_url=url, key_prefix="yadtq:app"))
    assert client.describe() == shown
