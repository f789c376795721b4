"""``@task(isolation="process")``: the pool of child processes, with real children (no Kafka, no
Redis): answers, a child that dies, prints, an interrupt that kills a task blocked in C, the pool's
bound, and the registry's checks."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

import tests.tasks_process  # noqa: F401 - registers the process tasks on the default registry
from tests.polling import eventually
from worker.execute import Result, TimeLimitExceeded, interrupt_thread
from worker.procpool import ProcPool, default_size, process_modules
from yadtq.registry import Registry, default_registry


@pytest.fixture
def pool() -> Any:
    p = ProcPool(default_registry, 2)
    yield p
    p.close()


def spec(name: str) -> Any:
    return default_registry.lookup(name)


def test_modules_are_those_that_define_process_tasks() -> None:
    assert "tests.tasks_process" in process_modules(default_registry)
    assert "yadtq.tasks" not in process_modules(default_registry)  # built-ins run in threads


def test_a_task_runs_in_another_process_and_the_child_is_kept(pool: ProcPool) -> None:
    first = pool.run(spec("PPID"), ())
    assert first.ok and isinstance(first.value, int) and first.value != os.getpid()
    second = pool.run(spec("PPID"), ())
    assert second.value == first.value  # the same child serves the next task


def test_a_child_that_exits_is_a_failed_attempt_and_is_replaced(pool: ProcPool) -> None:
    dead = pool.run(spec("PEXIT"), (3,))
    assert not dead.ok and dead.retryable
    assert dead.error == "the task's process ended (exit status 3)"
    again = pool.run(spec("PPID"), ())
    assert again.ok and again.value != os.getpid()


def test_what_a_task_prints_does_not_reach_the_answers(pool: ProcPool) -> None:
    result = pool.run(spec("PPRINT"), ("hello\n{]",))
    assert result == Result(True, "hello\n{]", None, False, result.seconds)


def test_bad_arguments_are_the_task_error_not_a_dead_child(pool: ProcPool) -> None:
    result = pool.run(spec("PSPIN"), ("not a number", 2))
    assert not result.ok and "TypeError" in (result.error or "") and not result.retryable
    assert pool.run(spec("PPID"), ()).ok


def test_an_interrupt_kills_a_task_blocked_in_c(pool: ProcPool) -> None:
    outcome: dict[str, Any] = {}
    pids: list[int] = []

    def run() -> None:
        pids.append(pool.run(spec("PPID"), ()).value)
        try:
            pool.run(spec("PBLOCK"), ())
            outcome["result"] = "returned"
        except TimeLimitExceeded:
            outcome["result"] = "interrupted"

    thread = threading.Thread(target=run)
    thread.start()
    assert eventually(lambda: len(pids) == 1, 30)
    time.sleep(0.3)  # PBLOCK is waiting in its child now (or about to)
    assert interrupt_thread(thread, TimeLimitExceeded)
    thread.join(10)
    assert not thread.is_alive() and outcome["result"] == "interrupted"
    assert eventually(lambda: not os.path.exists(f"/proc/{pids[0]}"), 10)  # the child was killed
    assert pool.run(spec("PPID"), ()).value != pids[0]  # a new child for the next task


def test_at_most_size_children_run_at_once() -> None:
    pool = ProcPool(default_registry, 1)
    pids: list[int] = []
    try:
        threads = [threading.Thread(target=lambda: pids.append(pool.run(spec("PSPIN"), (0.2,)).value))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(pids) == 3 and len(set(pids)) == 1  # one child served all three, in turn
    finally:
        pool.close()


def test_close_ends_the_idle_children() -> None:
    pool = ProcPool(default_registry, 2)
    pid = pool.run(spec("PPID"), ()).value
    pool.close()
    assert eventually(lambda: not os.path.exists(f"/proc/{pid}"), 10)
    with pytest.raises(RuntimeError, match="stopping"):
        pool.run(spec("PPID"), ())


def test_default_size_is_bounded_by_cores_and_threads() -> None:
    assert default_size(1) == 1
    assert 1 <= default_size(64) <= (os.cpu_count() or 1)


def test_the_registry_refuses_what_cannot_run_in_a_process() -> None:
    reg = Registry()

    def plain() -> int:
        return 1

    async def coro() -> int:
        return 1

    with pytest.raises(ValueError, match="isolation must be 'thread' or 'process'"):
        reg.register(plain, "P1", isolation="fork")
    with pytest.raises(ValueError, match="async def"):
        reg.register(coro, "P2", isolation="process")
    plain.__module__ = "__main__"
    with pytest.raises(ValueError, match="importable module"):
        reg.register(plain, "P3", isolation="process")
    assert reg.register(plain, "P4").isolation == "thread"
