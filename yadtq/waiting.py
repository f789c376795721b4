"""Waiting for a task's outcome (``Client.wait``) without polling Redis in a loop.

Workers announce the ids they write final on a pub/sub channel (``Keys.finished``, ``FINISH``
publishes once per batch). One subscription per client, on a thread of its own, wakes the waits
for those ids; each wait then reads its task. A wait reads the task once the subscription is
confirmed, so a task that ends just before the wait began is found by that read, and one that
ends after it is announced. Final states written elsewhere (a cancel of a waiting task, a
submit Kafka refused, a worker from before this channel) are found by a read every
``RECHECK_SECONDS``; so is everything while the subscription is down (it reconnects on its own).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from yadtq.errors import ServiceUnavailable, StoreError, TaskNotFound
from yadtq.models import Task
from yadtq.store import RedisStore

log = logging.getLogger("yadtq.client")

RECHECK_SECONDS = 1.0
"""A waiting task is read at least this often, announced or not."""
RECONNECT_SECONDS = 1.0


class Finished:
    """The client's subscription to the finished channel and the waits it wakes."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._waits: dict[str, set[threading.Event]] = {}
        self._subscribed = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it is final (or found malformed: its ``problem`` says how). ``TaskNotFound``
        for an unknown id, ``TimeoutError`` when ``timeout`` seconds pass first,
        ``ServiceUnavailable`` when Redis cannot be read."""
        deadline = None if timeout is None else time.monotonic() + timeout
        woken = threading.Event()
        with self._lock:
            self._waits.setdefault(task_id, set()).add(woken)
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, args=(self._closed,),
                                                name="yadtq-finished", daemon=True)
                self._thread.start()
        try:
            self._subscribed.wait(min(1.0, timeout if timeout is not None else 1.0))
            while True:
                woken.clear()
                task = self.store.get(task_id)
                if task is None:
                    raise TaskNotFound(f"no task with id {task_id}")
                if task.state.is_final or task.problem is not None:  # malformed: said at once
                    return task
                left = RECHECK_SECONDS if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"task {task_id} is still {task.state.value} after "
                                       f"{timeout:g} s")
                woken.wait(min(left, RECHECK_SECONDS))
        finally:
            with self._lock:
                events = self._waits.get(task_id, set())
                events.discard(woken)
                if not events:
                    self._waits.pop(task_id, None)

    def _listen(self, closed: threading.Event) -> None:
        while not closed.is_set():
            try:
                self.store.call(lambda: self._follow(closed))
            except (ServiceUnavailable, StoreError) as exc:
                if not closed.is_set():
                    log.warning("the finished-task channel: %s; reading waited tasks every %.0f s "
                                "until it is back", exc, RECHECK_SECONDS)
            self._subscribed.clear()
            closed.wait(RECONNECT_SECONDS)

    def _follow(self, closed: threading.Event) -> None:
        pubsub: Any = self.store.r.pubsub()
        try:
            pubsub.subscribe(self.store.keys.finished)
            while not closed.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self._subscribed.set()
                elif message["type"] == "message":
                    self._wake(message["data"])
        finally:
            pubsub.close()

    def _wake(self, data: Any) -> None:
        try:
            ids = json.loads(data)
        except (TypeError, ValueError):
            return  # not ours: someone else published on the channel
        if not isinstance(ids, list):
            return
        with self._lock:
            woken = [e for i in ids if isinstance(i, str) for e in self._waits.get(i, ())]
        for event in woken:
            event.set()

    def close(self) -> None:
        """End the subscription; a later ``wait`` subscribes again."""
        with self._lock:
            thread, self._thread = self._thread, None
            closed, self._closed = self._closed, threading.Event()
        closed.set()
        if thread is not None:
            thread.join(timeout=2)
