"""Every Redis key and Kafka topic name YADTQ uses, in one place.

Redis keys all live under ``<prefix>:`` where the prefix is ``yadtq`` by default (tests use
``yadtq:test-<random>`` so each test has its own keyspace). Kafka topic names cannot contain ``:``,
so topics are ``yadtq.tasks`` and ``yadtq.dead-letter`` by default. A named queue has a tasks
topic of its own, ``<tasks topic>.<queue>`` (``yadtq.tasks.emails``); the ``default`` queue keeps
the tasks topic itself (``queue_topic``). A priority other than ``normal`` has a topic per queue:
``<tasks topic>.<queue>.<priority>`` (``yadtq.tasks.default.high``, ``yadtq.tasks.emails.low``).

Layout::

    <p>:task:<id>            hash   one task: name, args, state, result, error, attempt, worker, history,
                                    queue and priority (absent: default, normal)...
    <p>:tasks                zset   every task id, scored by creation time (epoch s): listing never scans keys
    <p>:state:<state>        zset   ids in one state, scored by creation time (epoch s), or for a
                                    final state by finish time: filtered listing, the reconciler's
                                    oldest-first scan, the retention sweeper's oldest-finished-first
    <p>:counts               hash   state -> number of tasks in that state now (current totals:
                                    expired and purged tasks are subtracted)
    <p>:rate:<epoch second>  string completions (and failures) finished in that second, expires in 2 min
    <p>:workers              zset   worker id -> last heartbeat (epoch s, Redis's clock): known
                                    workers, alive or dead
    <p>:worker:<id>          hash   one worker's heartbeat, written with a TTL: gone = dead
    <p>:workers:last         hash   worker id -> JSON of its last heartbeat (what a dead one did)
    <p>:registry             hash   task name -> JSON spec, published by workers (for the dashboard)
    <p>:reset_at             string time of the last reset (older messages are discarded)
    <p>:lock:<name>          string owner of a lock (the reconciler's leader), with a TTL
    <p>:due                  zset   id of a ``scheduled`` task -> due time (epoch s, Redis's clock)
    <p>:dispatching          zset   id claimed from ``due`` -> lease deadline (epoch s): sent to Kafka,
                                    not yet acknowledged; re-sent when the lease expires
    <p>:repairs              hash   reconciler counters: runs, resent_queued, requeued_in_progress,
                                    last_run_at, last_leader, last_repaired
    <p>:schedules            hash   schedule name -> JSON definition with ``published_at`` (epoch s,
                                    Redis's clock), published by workers; stale after 3 missed
                                    publications, removed after a day without one
    <p>:schedules:last       hash   schedule name -> start (epoch s) of the latest period fired: a
                                    period at or before it never runs again (kept for good)
    <p>:finished             pub/sub channel: a JSON array of the ids a worker just finished
                                    (``Client.wait``)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "yadtq"
DEFAULT_TOPIC = "yadtq.tasks"
DEFAULT_DEAD_LETTER_TOPIC = "yadtq.dead-letter"
DEFAULT_GROUP = "yadtq-workers"

DEFAULT_QUEUE = "default"
"""The queue of a task that names none (its topic is the tasks topic itself)."""
MAX_QUEUE_CHARS = 64
QUEUE_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}", re.ASCII)
"""A queue name: letters, digits, ``_`` and ``-``, like a Kafka topic name but without ``.``
(the dot separates it from the tasks topic's name: ``yadtq.tasks.<queue>``)."""

PRIORITIES = ("high", "normal", "low")
"""The priority levels, highest first: a worker drains a higher level first (``worker.priority``)."""
DEFAULT_PRIORITY = "normal"
TOPIC_LEVELS = ("normal", "high", "low")
"""The order of a queue's three topics in a worker's consumer (``Settings.worker_topics``):
``normal`` first, so a worker's first queue keeps its slots (0..n-1) as before priorities."""


def topic_rank(index: int) -> int:
    """The priority rank (0 high, 1 normal, 2 low) of topic ``index`` of a worker's consumer."""
    return PRIORITIES.index(TOPIC_LEVELS[index % len(TOPIC_LEVELS)])

_PREFIX_RE = re.compile(r"yadtq(:[A-Za-z0-9_.\-]{1,64})?", re.ASCII)


def check_queue(name: object) -> str:
    """``name`` if it is a valid queue name; ``ValueError`` saying why otherwise."""
    if not isinstance(name, str) or not QUEUE_RE.fullmatch(name):
        shown = name[:70] if isinstance(name, str) else type(name).__name__
        raise ValueError(f"invalid queue name {shown!r}: 1 to {MAX_QUEUE_CHARS} letters, digits, "
                         "'_' or '-'")
    return name


def check_priority(name: object) -> str:
    """``name`` if it is a priority level; ``ValueError`` saying why otherwise."""
    if not isinstance(name, str) or name not in PRIORITIES:
        shown = name[:70] if isinstance(name, str) else type(name).__name__
        raise ValueError(f"invalid priority {shown!r}: one of {', '.join(PRIORITIES)}")
    return name


def queue_topic(tasks_topic: str, queue: str, priority: str = DEFAULT_PRIORITY) -> str:
    """The Kafka topic of ``queue`` at ``priority``: at ``normal``, the tasks topic for
    ``default``, else ``<tasks topic>.<queue>``; at another level ``<tasks topic>.<queue>.<level>``
    (a queue name has no dot, so no two of them are the same topic)."""
    check_queue(queue)
    if check_priority(priority) != DEFAULT_PRIORITY:
        return f"{tasks_topic}.{queue}.{priority}"
    return tasks_topic if queue == DEFAULT_QUEUE else f"{tasks_topic}.{queue}"


def topic_route(tasks_topic: str, topic: str) -> tuple[str, str] | None:
    """The (queue, priority) whose topic is ``topic`` (``queue_topic`` inverted), or None."""
    if topic == tasks_topic:
        return DEFAULT_QUEUE, DEFAULT_PRIORITY
    if not topic.startswith(tasks_topic + "."):
        return None
    parts = topic[len(tasks_topic) + 1:].split(".")
    if len(parts) == 1 and QUEUE_RE.fullmatch(parts[0]) and parts[0] != DEFAULT_QUEUE:
        return parts[0], DEFAULT_PRIORITY
    if len(parts) == 2 and QUEUE_RE.fullmatch(parts[0]) and parts[1] in PRIORITIES \
            and parts[1] != DEFAULT_PRIORITY:
        return parts[0], parts[1]
    return None


def topic_queue(tasks_topic: str, topic: str) -> str | None:
    """The queue whose topic (at any priority) is ``topic``, None for another topic."""
    route = topic_route(tasks_topic, topic)
    return None if route is None else route[0]


@dataclass(frozen=True)
class Keys:
    """Builds the Redis key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ValueError("Redis key prefix must be 'yadtq' or 'yadtq:<name>' with a name of "
                             f"letters, digits, '_', '.', '-' (no glob characters), got {self.prefix!r}")

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    @property
    def task_pattern(self) -> str:
        """SCAN pattern matching exactly this prefix's task hashes (ids are 32 hex characters), so
        a reset never matches another prefix's keys (used only by reset)."""
        return f"{self.prefix}:task:" + "[0-9a-f]" * 32

    @property
    def index(self) -> str:
        return f"{self.prefix}:tasks"

    def state_index(self, state: str) -> str:
        return f"{self.prefix}:state:{state}"

    @property
    def counts(self) -> str:
        return f"{self.prefix}:counts"

    def rate(self, epoch_second: int) -> str:
        return f"{self.prefix}:rate:{epoch_second}"

    @property
    def rate_pattern(self) -> str:
        return f"{self.prefix}:rate:[0-9]*"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers_last(self) -> str:
        """Each known worker's last heartbeat, kept after its TTL key expired (dead workers)."""
        return f"{self.prefix}:workers:last"

    @property
    def reset_marker(self) -> str:
        """Time of the last reset: messages sent before it are discarded, not recreated."""
        return f"{self.prefix}:reset_at"

    @property
    def registry(self) -> str:
        return f"{self.prefix}:registry"

    def lock(self, name: str) -> str:
        """A lock held by one owner at a time, expiring with its TTL."""
        return f"{self.prefix}:lock:{name}"

    @property
    def repairs(self) -> str:
        """The reconciler's counters (``RepairStats``)."""
        return f"{self.prefix}:repairs"

    @property
    def schedules(self) -> str:
        """Periodic schedules published by the workers (``Schedule.to_public`` and the
        ``published_at`` of the latest publication), by name."""
        return f"{self.prefix}:schedules"

    @property
    def schedules_last(self) -> str:
        """Per schedule, the latest period fired (epoch s): the scheduler's high-water mark."""
        return f"{self.prefix}:schedules:last"

    @property
    def finished(self) -> str:
        """The channel ``FINISH`` announces final states on (a channel, not a key)."""
        return f"{self.prefix}:finished"

    @property
    def cancel_requests(self) -> str:
        """A counter ``CANCEL`` bumps whenever it flags a running task: a busy worker reads it
        every second and reads its running tasks' flags only when it moved
        (``worker/cancel_watch.py``)."""
        return f"{self.prefix}:cancel_requests"

    @property
    def due(self) -> str:
        """Scheduled task ids scored by their due time (the scheduler's queue; a cancel removes
        an id)."""
        return f"{self.prefix}:due"

    @property
    def dispatching(self) -> str:
        """Ids claimed from ``due`` and being sent, scored by the claim's lease deadline."""
        return f"{self.prefix}:dispatching"
