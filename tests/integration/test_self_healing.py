"""Self-healing on the real Kafka and Redis (issue 10): whatever a message, a task or a crash does,
no task is stranded.

Each test mixes one kind of hostile input (raw bytes on the tasks topic, task code that exits, blocks
or breaks serialisation, a client killed halfway, a malformed or foreign Redis value, a forged id, a
rebalance, a Redis pause) with good tasks, and asserts that the good tasks complete, that the hostile
one is confined (dead-lettered with a reason, or failed with a readable error), and that the
workers' own repair loop (the reconciler) re-sends what a crash left behind.

Workers run with short repair settings (``REPAIR_ENV``) where the reconciler is the subject, and with
a repair bound far beyond the test (``ISOLATION_ENV``) where a dropped batch must not be masked by
a later repair. The servers themselves are never stopped here (``make chaos`` does that).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
import redis

import tests.tasks_for_tests  # noqa: F401 - registers EXIT, COUNT... for the client's validation
from tests.conftest import ROOT, WorkerProcs
from tests.integration.helpers import (
    TopicSize,
    dead_letter_at,
    read_dead_letters,
    send_raw,
    states_of,
    wait_balanced,
    wait_ids_final,
    wait_until,
)
from yadtq import Client, Settings
from yadtq.broker import ensure_topics
from yadtq.models import TaskState
from yadtq.store import RedisStore
from yadtq.wire import Envelope

pytestmark = pytest.mark.integration

REPAIR_ENV = {"YADTQ_REPAIR_INTERVAL": "1", "YADTQ_REPAIR_AFTER": "3", "YADTQ_STUCK_GRACE": "2"}
"""The reconciler looks every second and repairs what is untouched for 3 s; a stuck task is
escalated 2 s after its time limit."""
ISOLATION_ENV = {**REPAIR_ENV, "YADTQ_REPAIR_AFTER": "600"}
"""As ``REPAIR_ENV`` but nothing is old enough to repair during a test: a task that completes
was not lost and re-sent."""


def _use(real_settings: Settings, workers: WorkerProcs, **overrides: object) -> Client:
    """A client (and the ``workers`` fixture) on ``real_settings`` with ``overrides`` (same keys,
    topic and group, so the fixtures' clean-up covers them); the topics created."""
    settings = real_settings.with_(**overrides)
    workers.settings = settings
    ensure_topics(settings)
    return Client(settings)


def _ok_results(client: Client, expected: dict[str, int]) -> None:
    """Every task in ``expected`` completed with its expected result."""
    wrong = []
    for task_id, value in expected.items():
        task = client.get(task_id)
        if task.state is not TaskState.COMPLETED or task.result != value:
            wrong.append((task_id[:8], task.state.value, task.result, task.error))
    assert not wrong, f"{len(wrong)} good tasks wrong: {wrong[:5]}"


def _adds(client: Client, n: int, base: int = 0) -> dict[str, int]:
    """Submit ``n`` ADD tasks; their ids with the expected results."""
    items = [("ADD", [base + i, 1]) for i in range(n)]
    ids = client.submit_many(items)
    return {task_id: base + i + 1 for i, task_id in enumerate(ids)}


def _reason_of(letters: list[object], partition: int, offset: int) -> str:
    letter = dead_letter_at(letters, partition, offset)
    assert letter is not None, (f"no dead letter for the message at {partition}/{offset}; "
                                f"dead letters: {[str(x)[:200] for x in letters]}")
    reason = letter.get("reason")
    assert isinstance(reason, str) and reason, letter
    return reason


# ------------------------------------------------------------------ hostile messages
def _envelope_json(created_at: str = "1", version: str = "1") -> bytes:
    return (f'{{"v":{version},"id":"{uuid.uuid4().hex}","name":"ADD","args":[1,2],'
            f'"created_at":{created_at}}}').encode()


HOSTILE_MESSAGES: dict[str, bytes | None] = {
    "created_at too large for a float": _envelope_json(created_at="1" + "0" * 400),
    "invalid UTF-8": b'{"v":1,"id":"\xff\xfe","name":"\xc3\x28"}',
    "non-object JSON": b"[1, 2, 3]",
    "a JSON string": b'"ADD 1 2"',
    "nesting over the size limit": b"[" * 100_000,
    "nesting within the size limit": b"[" * 60_000,
    "null value": None,
    "wrong version": _envelope_json(version="2"),
}


@pytest.mark.timeout(150)
def test_hostile_messages_on_every_partition_are_dead_lettered(
        real_client: Client, workers: WorkerProcs) -> None:
    """Raw hostile messages on every partition, between 600 good tasks: every good task completes
    and every hostile message is on the dead-letter topic with a reason."""
    settings = real_client.settings
    expected = _adds(real_client, 300)
    sent = send_raw(settings, list(HOSTILE_MESSAGES.values()), range(settings.partitions))
    expected |= _adds(real_client, 300, base=1000)
    (proc,) = workers.start(1, env=ISOLATION_ENV)

    wait_ids_final(real_client, list(expected), timeout=60, logs=workers.logs)
    _ok_results(real_client, expected)
    letters = read_dead_letters(settings, len(sent), timeout=20)
    names = {v: k for k, v in HOSTILE_MESSAGES.items()}
    missing = [(names[v], p, o) for p, o, v in sent if dead_letter_at(letters, p, o) is None]
    assert not missing, f"not dead-lettered: {missing}"
    for p, o, _ in sent:
        _reason_of(letters, p, o)
    assert proc.poll() is None, "the worker must keep running"


# ------------------------------------------------------------------ hostile task code
BAD_TASKS = {
    "EXIT": r"SystemExit",
    "INTERRUPT": r"KeyboardInterrupt",
    "SURROGATE": r"RuntimeError.*" + re.escape("bad \\ud800 text"),
    "DEEP": r"(?i)serialis|serializ|json|recursion|nest",
    "BADSTR": r"BadStrError",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(BAD_TASKS))
def test_task_breaking_the_runner_fails_alone(name: str, real_settings: Settings,
                                              workers: WorkerProcs) -> None:
    """A task that exits, interrupts, or whose error or result cannot be written ends ``failed``
    with a readable error; the good tasks in its batch and after it on its partition complete."""
    client = _use(real_settings, workers, partitions=1)
    before = _adds(client, 20)
    (bad_id,) = client.submit_many([(name, [])])
    after = _adds(client, 20, base=100)
    (proc,) = workers.start(1, env=ISOLATION_ENV)
    wait_ids_final(client, [*before, bad_id, *after], timeout=45, logs=workers.logs)
    bad = client.get(bad_id)
    assert bad.state is TaskState.FAILED, bad
    assert bad.error and re.search(BAD_TASKS[name], bad.error), bad.error
    _ok_results(client, before | after)
    later = _adds(client, 10, base=200)  # the same worker goes on taking work
    wait_ids_final(client, list(later), timeout=20, logs=workers.logs)
    _ok_results(client, later)
    assert proc.poll() is None, "the worker must keep running"


@pytest.mark.timeout(180)
def test_a_task_that_kills_its_worker_fails_alone_not_the_tasks_started_with_it(
        real_settings: Settings, workers: WorkerProcs) -> None:
    """A task that kills its worker process, among fast tasks of its name on one partition: the
    worker runs such tasks in chunks (one start for all), so each crash had left every task of the
    chunk started and unfinished, and after the task's allowed starts those innocent tasks were
    failed with it as "started N times and never finished". Now a task that was started before
    and never finished is started alone: only the killer fails."""
    client = _use(real_settings, workers, partitions=1)
    before = client.submit_many([("KILLER", ["ok", i]) for i in range(30)])
    (killer,) = client.submit_many([("KILLER", ["die", 0])])
    after = client.submit_many([("KILLER", ["ok", 100 + i]) for i in range(30)])
    workers.start(1, env=ISOLATION_ENV)  # with its supervisor: a new process after each kill
    wait_ids_final(client, [*before, killer, *after], timeout=150, logs=workers.logs)
    bad = client.get(killer)
    assert bad.state is TaskState.FAILED and bad.error and "never finished" in bad.error, bad
    _ok_results(client, {**{t: i + 1 for i, t in enumerate(before)},
                         **{t: 101 + i for i, t in enumerate(after)}})
    starts = Counter(client.get(t).attempt for t in [*before, *after])
    print(f"good tasks by starts: {dict(sorted(starts.items()))}; the killer: {bad.attempt}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["BLOCKC", "SWALLOW"])
def test_stuck_task_shows_stalled_and_is_stopped(name: str, real_settings: Settings,
                                                 workers: WorkerProcs) -> None:
    """A task that will not stop (blocked in C, or swallowing the time-limit exception): the
    worker shows ``stalled`` while it is past its limit, then the task fails with "time limit" and
    the tasks behind it on its partition complete."""
    client = _use(real_settings, workers, partitions=1)
    workers.start(1, env=ISOLATION_ENV)
    workers.wait_alive(1)
    (stuck_id,) = client.submit_many([(name, [])])
    behind = _adds(client, 5)
    ids = [stuck_id, *behind]
    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        statuses.update(w.status.value for w in client.workers())
        if all(s in ("completed", "failed") for s in states_of(client, ids).values()):
            break
        time.sleep(0.05)
    states = states_of(client, ids)
    assert statuses["stalled"] > 0, (f"no worker ever showed stalled (saw {dict(statuses)}); "
                                     f"task states {Counter(states.values())}\n{workers.logs()}")
    stuck = client.get(stuck_id)
    assert stuck.state is TaskState.FAILED and "time limit" in (stuck.error or ""), stuck
    _ok_results(client, behind)


# ------------------------------------------------------------------ crashes around a send
_SUBMIT_MANY = """
import time
from yadtq import Client, broker
real = broker.TaskProducer.send
def send(self, envelopes, timeout=10.0, meanwhile=None):
    # a slow network: the records are all written, then the messages go out 50 at a time, so
    # the test stops the client halfway through sending (a fast send could end before it looks)
    if meanwhile is not None:
        meanwhile()
    errors = []
    for i in range(0, len(envelopes), 50):
        errors += real(self, envelopes[i:i + 50], timeout)
        time.sleep(0.05)
    return errors
broker.TaskProducer.send = send
Client().submit_many([("ADD", [i, i]) for i in range(5000)])
print("returned", flush=True)
"""

_BURST_AND_DIE = """
import os, time
from yadtq import Client
client = Client()
for i in range(3000):
    client.submit("ADD", [i, 2], wait=False)
while client.store.total() < 1000:  # part of the burst is in Redis: die without a flush
    time.sleep(0.001)
os.kill(os.getpid(), 9)
"""


def _kill_when(env: dict[str, str], script: str, ready: Callable[[], bool]) -> None:
    """Run ``script``; SIGSTOP it the moment ``ready()`` holds, then SIGKILL it (or let it kill
    itself). Fails if it returned normally."""
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGSTOP)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=10)
    assert b"returned" not in out, "the client returned before it was killed"
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err.decode(errors="replace")[-2000:])


@pytest.mark.timeout(180)
def test_tasks_of_killed_clients_are_resent(real_client: Client, workers: WorkerProcs) -> None:
    """A client SIGKILLed halfway through a 5,000-task ``submit_many`` (all recorded, some sent)
    and one that kills itself right after a ``wait=False`` burst: every task Redis recorded ends
    completed, the unsent ones re-sent by the reconciler."""
    client = real_client
    env = workers.env()
    sent = TopicSize(client.settings)
    recorded = lambda: client.store.total()  # noqa: E731
    try:
        _kill_when(env, _SUBMIT_MANY, lambda: recorded() >= 5000 and sent() > 0)
        first = recorded()
        _kill_when(env, _BURST_AND_DIE, lambda: False)
        time.sleep(1.0)  # let what was in flight land before counting it
        total_sent = sent()
    finally:
        sent.close()
    total = recorded()
    assert first < total and total_sent < total, (
        f"the scenario did not happen: {first} then {total} recorded, {total_sent} sent")
    ids = client.store.r.zrange(client.store.keys.index, 0, -1)
    workers.start(2, env=REPAIR_ENV)
    wait_ids_final(client, ids, timeout=60, logs=workers.logs)
    counts = client.counts()
    assert counts[TaskState.COMPLETED] == total, counts
    repairs = client.repairs()  # type: ignore[attr-defined]
    assert repairs.resent_queued > 0, repairs
    print(f"{total} recorded, {total_sent} sent before the kills; repairs: {repairs}")


_BURST_AND_EXIT = """
from yadtq import Client
client = Client()
for i in range(5000):
    client.submit("ADD", [i, 3], wait=False)
print("submitted", flush=True)
"""


@pytest.mark.timeout(120)
def test_wait_false_burst_is_sent_at_normal_exit(real_client: Client,
                                                 workers: WorkerProcs) -> None:
    """A program that submits 5,000 tasks with ``wait=False`` and ends normally without
    ``flush()``: every task is sent before the interpreter exits, and every one completes."""
    workers.start(1, env=ISOLATION_ENV)
    out = subprocess.run([sys.executable, "-c", _BURST_AND_EXIT], env=workers.env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "submitted" in out.stdout, out.stderr[-2000:]
    ids = real_client.store.r.zrange(real_client.store.keys.index, 0, -1)
    assert len(ids) == 5000, f"{len(ids)} of 5000 recorded; stderr: {out.stderr[-2000:]}"
    wait_ids_final(real_client, ids, timeout=60, logs=workers.logs)
    counts = real_client.counts()
    failed = real_client.list(TaskState.FAILED, limit=3)
    assert counts[TaskState.COMPLETED] == 5000, (counts, [t.error for t in failed])


@pytest.mark.timeout(90)
def test_retry_that_died_before_its_send_is_resent(real_client: Client,
                                                   workers: WorkerProcs) -> None:
    """A retry moved the task failed -> queued and died before sending it: the reconciler
    re-sends it and it runs again."""
    workers.start(1, env=REPAIR_ENV)
    task_id = real_client.submit("BOOM", ["always"])
    wait_until(lambda: real_client.get(task_id).state is TaskState.FAILED, 30, "BOOM to fail",
               )
    assert real_client.get(task_id).attempt == 1
    moved = RedisStore(real_client.settings).transition(task_id, TaskState.FAILED, TaskState.QUEUED,
                                                        note="retry requested")
    assert moved == 1
    try:
        wait_until(lambda: real_client.get(task_id).attempt >= 2
                   and real_client.get(task_id).state is TaskState.FAILED, 30,
                   "the re-queued task to run again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {real_client.get(task_id)}\n{workers.logs()}") from None
    task = real_client.get(task_id)
    assert task.attempt == 2 and task.error and "always" in task.error, task


# ------------------------------------------------------------------ malformed and foreign Redis data
def _write_malformed(settings: Settings) -> str:
    """A task hash with a non-numeric attempt and a name that is not UTF-8, in the index."""
    r = redis.Redis.from_url(settings.redis_url)
    bad_id = uuid.uuid4().hex
    now = time.time()
    r.hset(f"{settings.key_prefix}:task:{bad_id}", mapping={
        "id": bad_id, "name": b"\xff\xfe\x80BAD", "args": "[1, 2]", "state": "queued",
        "attempt": "x", "created_at": repr(now), "updated_at": repr(now), "history": "[]"})
    r.zadd(f"{settings.key_prefix}:tasks", {bad_id: now})
    return bad_id


@pytest.mark.timeout(60)
def test_malformed_task_hash_is_read_as_invalid(real_client: Client, workers: WorkerProcs) -> None:
    """``Client.list``/``get`` return a malformed stored task with ``problem`` set (never raise);
    ``yadtq tasks`` prints it as an ``invalid`` row and exits 0."""
    good = real_client.submit("ADD", [1, 2], wait=True)
    bad_id = _write_malformed(real_client.settings)
    for history in (True, False):
        listed = {t.id: t for t in real_client.list(limit=10, history=history)}
        assert good in listed and bad_id in listed, listed
        assert getattr(listed[bad_id], "problem", None), listed[bad_id]
        assert not getattr(listed[good], "problem", None), listed[good]
    assert getattr(real_client.get(bad_id), "problem", None)
    out = subprocess.run([sys.executable, "-m", "yadtq.cli", "tasks"], env=workers.env(),
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if bad_id in line]
    assert rows and "invalid" in rows[0], out.stdout
    assert any(good in line for line in out.stdout.splitlines()), out.stdout


@pytest.mark.timeout(90)
def test_message_for_malformed_hash_is_dead_lettered(real_settings: Settings,
                                                     workers: WorkerProcs) -> None:
    """A well-formed message whose stored record is malformed is dead-lettered; the good tasks
    around it on its partition complete."""
    client = _use(real_settings, workers, partitions=1)
    settings = client.settings
    bad_id = _write_malformed(settings)
    good = _adds(client, 10)
    ((p, o, _),) = send_raw(settings, [Envelope(bad_id, "ADD", (1, 2), time.time()).encode()], [0])
    good |= _adds(client, 10, base=100)
    workers.start(1, env=ISOLATION_ENV)
    wait_ids_final(client, list(good), timeout=40, logs=workers.logs)
    _ok_results(client, good)
    _reason_of(read_dead_letters(settings, 1, timeout=20), p, o)


@pytest.mark.timeout(90)
def test_permanent_redis_error_is_dead_lettered(real_settings: Settings,
                                                workers: WorkerProcs) -> None:
    """A task key that is a Redis LIST (WRONGTYPE for every script): the message is dead-lettered
    with the Redis error within seconds, not retried forever; good tasks around it complete."""
    client = _use(real_settings, workers, partitions=1)
    settings = client.settings
    bad_id = uuid.uuid4().hex
    client.store.r.rpush(client.store.keys.task(bad_id), "not a hash")
    good = _adds(client, 10)
    ((p, o, _),) = send_raw(settings, [Envelope(bad_id, "ADD", (1, 2), time.time()).encode()], [0])
    good |= _adds(client, 10, base=100)
    t0 = time.monotonic()
    workers.start(1, env=ISOLATION_ENV)
    letters = read_dead_letters(settings, 1, timeout=25)
    if dead_letter_at(letters, p, o) is None:
        task = client.get(bad_id) if client.store.r.type(client.store.keys.task(bad_id)) == "hash" \
            else None
        assert task is not None and task.state is TaskState.FAILED, (
            f"the message was neither dead-lettered nor failed within {time.monotonic() - t0:.0f}s;"
            f" states of the good tasks: {Counter(states_of(client, list(good)).values())}\n"
            f"{workers.logs()}")
        reason = task.error or ""
    else:
        reason = _reason_of(letters, p, o)
    assert re.search(r"WRONGTYPE|Redis", reason), reason
    wait_ids_final(client, list(good), timeout=20, logs=workers.logs)
    _ok_results(client, good)


@pytest.mark.timeout(90)
def test_forged_message_for_a_recorded_id_is_dead_lettered(real_settings: Settings,
                                                           workers: WorkerProcs) -> None:
    """A message that reuses a recorded task's id with other arguments, arriving first: it is
    dead-lettered, and the genuine message runs the recorded arguments."""
    client = _use(real_settings, workers, partitions=1)
    settings = client.settings
    task_id = uuid.uuid4().hex
    now = time.time()
    genuine = Envelope(task_id, "ADD", (1, 2), now)
    assert RedisStore(settings).create([genuine]) == [True]
    forged = Envelope(task_id, "ADD", (100, 200), now)
    (forged_at, genuine_at) = send_raw(settings, [forged.encode(), genuine.encode()], [0])
    after = _adds(client, 5)
    workers.start(1, env=ISOLATION_ENV)
    wait_ids_final(client, [task_id, *after], timeout=40, logs=workers.logs)
    task = client.get(task_id)
    assert task.state is TaskState.COMPLETED and task.result == 3, task
    letters = read_dead_letters(settings, 1, timeout=20)
    _reason_of(letters, forged_at[0], forged_at[1])
    assert dead_letter_at(letters, genuine_at[0], genuine_at[1]) is None, letters
    _ok_results(client, after)


# ------------------------------------------------------------------ rebalance and Redis pauses
SCALE_TASKS = 20_000


@pytest.mark.timeout(240)
def test_scale_up_and_warm_stop_during_a_drain_run_each_task_once(
        real_settings: Settings, workers: WorkerProcs) -> None:
    """20,000 COUNT tasks in long batches (up to 20,000 records a poll, ~0.5 ms a task, so a batch
    outlasts the rebalance); 1 worker, then 2 more while it drains, then one of them stops warm:
    every task completed, each run exactly once (a side counter in Redis)."""
    client = _use(real_settings, workers, partitions=12, max_poll_records=SCALE_TASKS)
    counts_key = f"{client.settings.key_prefix}:test-counts"
    env = {**ISOLATION_ENV, "YADTQ_TEST_COUNTS": counts_key, "YADTQ_TEST_COUNT_SLEEP": "0.0005"}
    for chunk in range(0, SCALE_TASKS, 2000):
        client.submit_many([("COUNT", [str(i)]) for i in range(chunk, chunk + 2000)])

    def completed() -> int:
        return client.counts()[TaskState.COMPLETED]

    workers.start(1, env=env)
    wait_until(lambda: completed() >= 1000, 60, "the first worker to start draining")
    workers.start(2, env=env)
    wait_balanced(client, 3, client.settings.partitions, logs=workers.logs)
    mark = completed()
    wait_until(lambda: completed() >= min(SCALE_TASKS - 2000, mark + 1000), 60,
               "the three workers to drain more")
    leaving = workers.procs[2]
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(timeout=30) == 0
    wait_until(lambda: completed() + client.counts()[TaskState.FAILED] >= SCALE_TASKS, 120,
               f"{SCALE_TASKS} tasks to finish")
    assert completed() == SCALE_TASKS, client.counts()
    runs = {k: int(v) for k, v in client.store.r.hgetall(counts_key).items()}
    assert len(runs) == SCALE_TASKS, f"{SCALE_TASKS - len(runs)} tasks never ran"
    twice = {k: v for k, v in runs.items() if v != 1}
    assert not twice, f"{len(twice)} tasks ran more than once, e.g. {list(twice.items())[:5]}"


@pytest.mark.timeout(90)
def test_client_pause_during_a_retry(real_client: Client, workers: WorkerProcs) -> None:
    """``CLIENT PAUSE 2000 WRITE`` (Redis is shared: at most 2 s) while a FLAKY task waits between
    attempts, with the reconciler on: it completes on its second attempt and ran exactly twice."""
    workers.start(1, env=REPAIR_ENV)
    workers.wait_alive(1)
    r = real_client.store.r
    key = f"pause-{uuid.uuid4().hex}"
    task_id = real_client.submit("FLAKY", [key, 1])
    task_key = real_client.store.keys.task(task_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state, attempt = r.hmget(task_key, ["state", "attempt"])
        if state == "scheduled" and attempt == "1":  # the retry waits in the due set
            break
        time.sleep(0.005)
    else:
        raise AssertionError(f"FLAKY never waited for its retry: {real_client.get(task_id)}")
    r.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
    state, attempt = r.hmget(task_key, ["state", "attempt"])  # reads go on during the pause
    assert (state, attempt) == ("scheduled", "1"), "the pause came after the retry started"
    wait_ids_final(real_client, [task_id], timeout=30, logs=workers.logs)
    task = real_client.get(task_id)
    assert task.state is TaskState.COMPLETED and task.result == "ok after 1", task
    assert task.attempt == 2, task
    runs_file = os.path.join(os.environ.get("YADTQ_TEST_DIR", "/tmp"), f"flaky-{key}")
    with open(runs_file) as fh:
        assert fh.read() == "xx", "FLAKY must have run exactly twice"
