"""Unconfirmed submits (``Client.submit(..., wait=False)``), recorded and sent in the background.

``add`` only appends to a buffer, so a program submitting one task at a time pays microseconds per
call instead of a Redis and a Kafka round trip. A flusher thread takes everything buffered, records
it in Redis (``queued``) in one script call, then hands it to the Kafka producer; a task
Kafka refuses is marked ``failed`` ("not enqueued"). The order is the same as a confirmed submit:
Redis first, then Kafka, so a worker never sees a task whose record is missing, and a crash loses a
buffered task whole (no record and no message) rather than leaving it ``queued`` forever.
``flush()`` waits for everything so far and raises if any task was not enqueued. At interpreter
exit the owner (``yadtq.client.Client``) drains it before the Kafka producer closes.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from yadtq.errors import ServiceUnavailable, YadtqError
from yadtq.wire import Envelope

EXIT_DRAIN_SECONDS = 30.0
"""How long a program's exit waits for its ``wait=False`` tasks to be recorded and acknowledged."""
MAX_BATCH = 1000
BUSY_BATCH = 2
"""A batch at least this big means submits are arriving fast: the next one waits to grow."""
BUSY_LINGER_SECONDS = 0.005
"""How long it waits. Idle or light traffic goes out at once (the producer does not linger), so a
task submitted alone reaches Kafka in one hop; a burst is sent in batches, one producer wake-up
per batch instead of per task."""


class BackgroundSubmitter:
    """One buffer, one flusher thread; see the module docstring."""

    def __init__(self, create: Callable[[Sequence[Envelope]], Any],
                 send_async: Callable[[Sequence[Envelope]], None],
                 flush_producer: Callable[[float], None],
                 on_error: Callable[[Envelope, Exception], None]) -> None:
        self._create, self._send_async = create, send_async
        self._flush_producer, self._on_error = flush_producer, on_error
        self._buffer: list[Envelope] = []
        self._in_flight = 0
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="yadtq-submitter", daemon=True)
        self._thread.start()

    def add(self, envelopes: Sequence[Envelope]) -> None:
        with self._cv:
            if self._closed:
                raise ServiceUnavailable("the client is closed")
            self._buffer.extend(envelopes)
            self._cv.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Until every task added so far is recorded and handed to Kafka, then Kafka's acks."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._buffer or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceUnavailable(f"{len(self._buffer) + self._in_flight} tasks still "
                                             f"being submitted after {timeout:g} s")
                self._cv.wait(left)
        self._flush_producer(max(0.1, deadline - time.monotonic()))

    def close(self, timeout: float = 10.0) -> None:
        try:
            self.flush(timeout)
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._buffer and not self._closed:
                    self._cv.wait()
                if not self._buffer:
                    return
                batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
                self._in_flight = len(batch)
            try:
                self._create(batch)
            except YadtqError as exc:  # Redis down or refusing: nothing recorded, nothing sent
                err = exc if isinstance(exc, ServiceUnavailable) else ServiceUnavailable(str(exc))
                for env in batch:
                    self._on_error(env, err)
            else:
                try:
                    self._send_async(batch)
                except YadtqError as exc:  # no producer: refused like a failed send
                    for env in batch:
                        self._on_error(env, ServiceUnavailable(f"Kafka: {exc}"))
            finally:
                with self._cv:
                    self._in_flight = 0
                    self._cv.notify_all()
            if len(batch) >= BUSY_BATCH and not self._closed:
                time.sleep(BUSY_LINGER_SECONDS)


def drain_at_exit(client: Any) -> None:
    """Send ``client``'s (a ``yadtq.client.Client``) ``wait=False`` tasks when the interpreter exits normally.

    Registered with ``threading._register_atexit``: those hooks run when the main thread ends,
    before the ``atexit`` callbacks, among them kafka-python's, which closes every producer (and
    is registered later, when the producer is built, so as an ``atexit`` callback it would run
    first). Plain ``atexit`` is the fallback where the threading hook is missing or closed."""
    ref = weakref.ref(client)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(flush_at_exit, ref)
            return
        except RuntimeError:  # the interpreter is already shutting its threads down
            pass
    atexit.register(flush_at_exit, ref)


def flush_at_exit(ref: weakref.ref[Any]) -> None:
    client = ref()
    if client is None or client._submitter is None:  # closed already
        return
    try:
        client.flush(EXIT_DRAIN_SECONDS)
    except ServiceUnavailable as exc:
        print(f"yadtq: WARNING at exit: {exc} (submitted with wait=False)", file=sys.stderr,
              flush=True)
