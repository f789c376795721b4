"""The runner's group commit (``worker/coalesce.py``): overlapping calls share one call of the
function on the writer's thread, each caller gets its own answers, errors stay with their owner,
an interrupt in a waiting caller stops nobody else's write, and the writer outlives a failure."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from tests.polling import eventually
from worker.coalesce import Coalescer
from yadtq.errors import StoreError


def test_a_caller_alone_gets_its_answers_from_one_call() -> None:
    seen: list[list[int]] = []

    def fn(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return [i * 10 for i in items]

    c: Coalescer[int, int] = Coalescer(fn, "t")
    assert c.call([1, 2]) == [10, 20]
    assert c.call([]) == []  # nothing to write: no call
    assert seen == [[1, 2]]
    c.close()


def run_together(c: Coalescer[int, int], parts: list[list[int]]) -> list[object]:
    """Call ``c`` from one thread per part, all at once; each thread's answer or exception."""
    out: list[object] = [None] * len(parts)
    start = threading.Barrier(len(parts))

    def one(k: int) -> None:
        start.wait()
        try:
            out[k] = c.call(parts[k])
        except Exception as exc:
            out[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    return out


def test_overlapping_calls_share_calls_and_get_their_own_answers() -> None:
    calls: list[list[int]] = []

    def fn(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.1)  # a slow write: the other callers queue behind it meanwhile
        return [i + 1000 for i in items]

    c: Coalescer[int, int] = Coalescer(fn, "t")
    parts = [[k * 10 + j for j in range(3)] for k in range(20)]
    out = run_together(c, parts)
    assert out == [[i + 1000 for i in part] for part in parts]
    assert sorted(i for call in calls for i in call) == sorted(i for p in parts for i in p)
    assert len(calls) < 20 and c.calls == len(calls)  # joined


def test_a_write_takes_whole_callers_up_to_most_items() -> None:
    calls: list[int] = []

    def fn(items: Sequence[int]) -> list[int]:
        calls.append(len(items))
        time.sleep(0.05)
        return list(items)

    c: Coalescer[int, int] = Coalescer(fn, "t", most=5)
    parts = [[k] * 3 for k in range(8)]
    assert run_together(c, parts) == parts
    assert all(n == 3 for n in calls) and sum(calls) == 24  # 3 + 3 > 5: one caller per write


def test_an_error_of_a_joint_call_goes_to_its_owner_only() -> None:
    def fn(items: Sequence[int]) -> list[int]:
        time.sleep(0.02)
        if -1 in items:
            raise StoreError("WRONGTYPE on task -1")
        return list(items)

    c: Coalescer[int, int] = Coalescer(fn, "t")
    parts = [[1, 2], [-1], [3], [4, 5, 6]] * 3
    out = run_together(c, parts)
    for part, answer in zip(parts, out, strict=True):
        if -1 in part:
            assert isinstance(answer, StoreError) and "task -1" in str(answer)
        else:
            assert answer == part


class Interrupt(BaseException):
    pass


def test_an_interrupt_in_a_waiting_caller_stops_no_write() -> None:
    release = threading.Event()
    written: list[int] = []

    in_call: list[int] = []

    def fn(items: Sequence[int]) -> list[int]:
        in_call.extend(items)
        release.wait(5)
        written.extend(items)
        return list(items)

    c: Coalescer[int, int] = Coalescer(fn, "t")
    out: dict[int, object] = {}

    def caller(k: int) -> None:
        try:
            out[k] = c.call([k])
        except BaseException as exc:
            out[k] = exc

    threads = {k: threading.Thread(target=caller, args=(k,)) for k in (1, 2, 3)}
    threads[1].start()  # alone: it writes at once, in its own thread
    assert eventually(lambda: in_call == [1], 5)
    threads[2].start()
    threads[3].start()
    # the other two wait, queued behind the write under way
    assert eventually(lambda: sum(len(s.items) for s in c._queue) == 2, 5)
    # as the watchdog does: an exception raised in a waiting runner thread
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threads[2].ident or 0),
                                               ctypes.py_object(Interrupt))
    release.set()
    for t in threads.values():
        t.join(10)
    assert isinstance(out[2], Interrupt)  # it lands once the wait returns: its thread's own
    assert out[1] == [1] and out[3] == [3]
    assert sorted(written) == [1, 2, 3]  # the interrupted caller's write was made all the same
    assert c.call([4]) == [4]  # and the writer goes on


def test_the_writer_outlives_a_failure_of_any_kind() -> None:
    def fn(items: Sequence[int]) -> list[int]:
        if items == [0]:
            raise SystemExit("not an Exception")
        return list(items)

    c: Coalescer[int, int] = Coalescer(fn, "t")
    with pytest.raises(SystemExit):
        c.call([0])
    assert c.call([5]) == [5]


def test_a_caller_alone_writes_in_its_own_thread() -> None:
    threads: list[str] = []

    def fn(items: Sequence[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        return list(items)

    c: Coalescer[int, int] = Coalescer(fn, "t")
    assert c.call([1]) == [1] and c.call([2]) == [2]
    assert threads == [threading.current_thread().name] * 2 and c._thread is None  # no hand-off


def test_close_ends_the_writer_and_refuses_later_calls() -> None:
    c: Coalescer[int, int] = Coalescer(list, "t")
    with c._turn:  # a write under way: the next call queues for the writer thread
        out: list[list[int]] = []
        t = threading.Thread(target=lambda: out.append(c.call([1])))
        t.start()
        assert eventually(lambda: len(c._queue) == 1, 5)
    t.join(5)
    assert out == [[1]]
    thread = c._thread
    c.close()
    assert thread is not None and eventually(lambda: not thread.is_alive(), 5)
    with pytest.raises(RuntimeError, match="stopping"):
        c.call([2])


@pytest.mark.parametrize("n", [1, 2, 64])
def test_many_writes_under_contention_lose_nothing(n: int) -> None:
    sent: list[int] = []

    def fn(items: Sequence[int]) -> list[int]:
        sent.extend(items)
        return [i * 2 for i in items]

    c: Coalescer[int, int] = Coalescer(fn, "t", most=7)
    results: list[tuple[int, list[int]]] = []

    def worker(k: int) -> None:
        for j in range(50):
            a = k * 1000 + j
            results.append((a, c.call([a, a + 500])))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 50 * n and len(sent) == 100 * n
    assert all(r == [a * 2, (a + 500) * 2] for a, r in results)


def test_post_alone_writes_and_answers_in_the_callers_thread() -> None:
    c: Coalescer[int, int] = Coalescer(lambda items: [i * 2 for i in items], "t")
    got: list[tuple[object, object, str]] = []
    c.post([1, 2], lambda answers, error: got.append((answers, error, threading.current_thread().name)))
    assert got == [([2, 4], None, threading.current_thread().name)]  # done before post returned
    c.post([], lambda answers, error: got.append((answers, error, "")))
    assert got[-1] == ([], None, "")
    c.close()


def test_post_behind_a_write_under_way_returns_at_once_and_answers_on_the_writer() -> None:
    """The runner's case: a thread hands its outcomes over and takes its next task while a slow
    write is under way; the answers (or the error of its own items) come later, on the writer."""
    release = threading.Event()

    def fn(items: Sequence[int]) -> list[int]:
        if 0 in items:
            release.wait(5)  # the write under way
        if 13 in items:
            raise StoreError("refused: 13")
        return [i + 100 for i in items]

    c: Coalescer[int, int] = Coalescer(fn, "t")
    first = threading.Thread(target=c.call, args=([0],))
    first.start()
    assert eventually(lambda: c._turn.locked(), 5)
    got: dict[str, tuple[object, object, str]] = {}
    before = time.monotonic()
    def to(name: str) -> Callable[[list[int] | None, BaseException | None], None]:
        return lambda answers, error: got.__setitem__(
            name, (answers, error, threading.current_thread().name))

    for name, items in (("a", [1, 2]), ("b", [13]), ("c", [3])):
        c.post(items, to(name))
    assert time.monotonic() - before < 1.0 and got == {}  # nobody waited for the slow write
    release.set()
    first.join(5)
    assert eventually(lambda: len(got) == 3, 5)
    assert got["a"] == ([101, 102], None, "yadtq-t") and got["c"] == ([103], None, "yadtq-t")
    answers, error, thread = got["b"]
    assert answers is None and isinstance(error, StoreError) and thread == "yadtq-t"
    c.close()


def test_a_failing_answer_handler_does_not_stop_the_writer() -> None:
    release = threading.Event()
    c: Coalescer[int, int] = Coalescer(lambda items: (release.wait(5), list(items))[1], "t")
    holder = threading.Thread(target=c.call, args=([0],))
    holder.start()
    assert eventually(lambda: c._turn.locked(), 5)
    got: list[object] = []

    def broken(answers: object, error: object) -> None:
        raise RuntimeError("a handler bug")

    c.post([1], broken)
    c.post([2], lambda answers, error: got.append(answers))
    release.set()
    assert eventually(lambda: got == [[2]], 5)
    assert c.call([3]) == [3]  # the writer is still there
    holder.join(5)
    c.close()
