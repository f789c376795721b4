"""In-memory stand-ins for Kafka, for unit tests and for driving the dashboard without services.

``FakeBroker`` keeps topics as lists of messages per partition and consumer groups with committed
offsets; its producers and consumers have the same surface as ``yadtq.broker.TaskProducer`` and
``TaskConsumer``. Partitions are split among the live consumers of a group, and a consumer joining or
leaving moves them (rebalance), so worker logic can be tested without a broker. For Redis, tests pass
a ``fakeredis`` client to ``RedisStore``: the same Lua scripts then run in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from yadtq.broker_types import Record, slot, unslot
from yadtq.errors import DecodeError, ServiceUnavailable
from yadtq.settings import Settings
from yadtq.wire import Envelope


@dataclass
class _Group:
    committed: dict[int, int] = field(default_factory=dict)
    """The tasks topic's (the default queue's) committed offsets."""
    members: list[FakeConsumer] = field(default_factory=list)
    generation: int = 0
    queues: dict[str, dict[int, int]] = field(default_factory=dict)
    """Committed offsets of the other topics (named queues), by topic."""

    def offsets(self, topic: str, tasks_topic: str) -> dict[int, int]:
        return self.committed if topic == tasks_topic else self.queues.setdefault(topic, {})


class FakeBroker:
    """A Kafka stand-in with topics, partitions and consumer groups. ``available = False`` fails calls."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self.topics: dict[str, list[list[bytes | None]]] = {}
        self.groups: dict[str, _Group] = {}
        self.available = True
        self.lock = threading.RLock()

    def _topic(self, name: str) -> list[list[bytes | None]]:
        return self.topics.setdefault(name, [[] for _ in range(self.partitions)])

    def append(self, topic: str, value: bytes | None, key: bytes | None = None) -> None:
        with self.lock:
            parts = self._topic(topic)
            index = (self.partition_of(key, len(parts)) if key is not None
                     else sum(len(p) for p in parts) % len(parts))
            parts[index].append(value)

    def messages(self, topic: str) -> list[bytes | None]:
        with self.lock:
            return [m for p in self._topic(topic) for m in p]

    def check(self) -> None:
        if not self.available:
            raise ServiceUnavailable("Kafka unreachable (fake broker is down)")

    def producer(self, settings: Settings, linger_ms: int = 0) -> FakeProducer:
        self.check()
        return FakeProducer(self, settings)

    def consumer(self, settings: Settings, client_id: str,
                 on_revoked: Callable[[set[int]], None] = lambda _p: None,
                 on_assigned: Callable[[set[int]], None] = lambda _p: None) -> FakeConsumer:
        return FakeConsumer(self, settings, client_id, on_revoked, on_assigned)

    def ping(self, _settings: Settings) -> None:
        self.check()

    def offsets(self, settings: Settings) -> FakeOffsets:
        self.check()
        return FakeOffsets(self, settings)

    def partition_of(self, key: bytes, partitions: int) -> int:
        """Where ``append`` puts a message with this key."""
        return hash(key) % partitions

    def _rebalance(self, group: _Group) -> None:
        group.generation += 1
        for m in group.members:
            m._pending_rebalance = True


class FakeProducer:
    def __init__(self, broker: FakeBroker, settings: Settings) -> None:
        self.broker, self.settings = broker, settings

    def send(self, envelopes: Sequence[Envelope], timeout: float = 10.0,
             meanwhile: Callable[[], None] | None = None) -> list[Exception | None]:
        if meanwhile is not None:  # first: no round trip to overlap, and the order stays fixed
            meanwhile()
        out: list[Exception | None] = []
        for env in envelopes:
            try:
                self.broker.check()
                value = env.encode()
                topic = self.settings.queue_topic(env.queue, env.priority)
                self.broker.append(topic, value, env.id.encode())
                out.append(None)
            except (ServiceUnavailable, DecodeError, ValueError) as exc:
                out.append(exc)
        return out

    def send_async(self, envelopes: Sequence[Envelope],
                   on_error: Callable[[Envelope, Exception], None]) -> None:
        for env, err in zip(envelopes, self.send(envelopes), strict=True):
            if err is not None:
                on_error(env, err)

    def flush(self, timeout: float = 10.0) -> None:
        pass

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.broker.check()
        self.broker.append(topic, value, key)

    def dead_letter(self, record: Record, reason: str, worker_id: str) -> None:
        self.broker.check()
        self.broker.append(self.settings.dead_letter_topic, reason.encode())

    def close(self) -> None:
        pass


class FakeConsumer:
    keeps_paused_fetches = True

    def __init__(self, broker: FakeBroker, settings: Settings, client_id: str,
                 on_revoked: Callable[[set[int]], None],
                 on_assigned: Callable[[set[int]], None]) -> None:
        self.broker, self.settings, self.client_id = broker, settings, client_id
        self.topics = settings.worker_topics()
        self.on_revoked, self.on_assigned = on_revoked, on_assigned
        self._assigned: set[int] = set()
        self._paused: set[int] = set()
        self._position: dict[int, int] = {}
        self._pending_rebalance = True
        self.closed = False
        self.lose_async_commits = 0
        """Tests: this many asynchronous commits fail unseen (as one sent during a rebalance)."""
        self.stuck = False
        """Tests: a member whose group join never finishes (polls return nothing, ``joined()`` is
        False), as kafka-python 3.0 members sometimes are."""
        self.withheld: set[int] = set()
        """Tests: partitions whose messages this member never delivers though they count in its
        lags (a client that stopped fetching them, as kafka-python 3.0.12 did)."""
        with broker.lock:
            group = broker.groups.setdefault(settings.group, _Group())
            group.members.append(self)
            broker._rebalance(group)

    @property
    def _group(self) -> _Group:
        return self.broker.groups[self.settings.group]

    def _do_rebalance(self) -> None:
        mine: set[int] = set()
        with self.broker.lock:
            for i, topic in enumerate(self.topics):  # each topic split among its subscribers
                members = [m for m in self._group.members if topic in m.topics]
                index = members.index(self)
                n = len(self.broker._topic(topic))
                mine |= {slot(i, p) for p in range(n) if p % len(members) == index}
            self._pending_rebalance = False
        if self._assigned:
            self.on_revoked(set(self._assigned))
        self._assigned = mine
        self._paused &= mine
        self._position = {p: self._committed(p).get(unslot(p)[1], 0) for p in mine}
        self.on_assigned(set(mine))

    def _committed(self, number: int) -> dict[int, int]:
        """The group's committed offsets of the topic of slot ``number``."""
        return self._group.offsets(self.topics[unslot(number)[0]], self.settings.topic)

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]:
        if self.closed:
            raise RuntimeError("consumer closed")
        if self.stuck:
            return []
        if self._pending_rebalance:
            self._do_rebalance()
        if not self.broker.available:
            return []
        limit = max_records or self.settings.max_poll_records
        out: list[Record] = []
        with self.broker.lock:
            for p in sorted(self._assigned - self._paused - self.withheld):
                index, partition = unslot(p)
                msgs = self.broker._topic(self.topics[index])[partition]
                pos = self._position.get(p, 0)
                while pos < len(msgs) and len(out) < limit:
                    out.append(Record(p, pos, msgs[pos], self.topics[index]))
                    pos += 1
                self._position[p] = pos
        return out

    def assignment(self) -> set[int]:
        return set(self._assigned)

    def joined(self) -> bool:
        return not self.stuck

    def lags(self, partitions: set[int]) -> dict[int, int] | None:
        if not self.broker.available:
            return None
        with self.broker.lock:
            return {p: len(self.broker._topic(self.topics[unslot(p)[0]])[unslot(p)[1]])
                    - self._position.get(p, 0) for p in partitions & self._assigned}

    def pause(self, partitions: set[int]) -> None:
        self._paused |= partitions

    def resume(self, partitions: set[int]) -> None:
        self._paused -= partitions

    def seek(self, partition: int, offset: int) -> None:
        if partition in self._assigned:
            self._position[partition] = offset

    def commit(self, offsets: dict[int, int], wait: bool = True) -> None:
        if not wait and self.lose_async_commits > 0:
            self.lose_async_commits -= 1
            return
        self.broker.check()
        with self.broker.lock:
            lost = set(offsets) - self._assigned
            if lost or self._pending_rebalance:
                raise ServiceUnavailable(f"commit failed: partitions {sorted(lost)} were reassigned")
            for p, offset in offsets.items():
                self._committed(p)[unslot(p)[1]] = offset

    def close(self) -> None:
        with self.broker.lock:
            if self in self._group.members:
                self._group.members.remove(self)
                self.broker._rebalance(self._group)
        self.closed = True




class FakeOffsets:
    """The reconciler's view of a ``FakeBroker`` topic and group (``worker.interfaces.Offsets``)."""

    def __init__(self, broker: FakeBroker, settings: Settings) -> None:
        self.broker, self.settings = broker, settings

    def partitions(self, topic: str | None = None) -> int:
        self.broker.check()
        with self.broker.lock:
            return len(self.broker._topic(topic or self.settings.topic))

    def end_offsets(self, partitions: int, topic: str | None = None) -> dict[int, int]:
        self.broker.check()
        with self.broker.lock:
            parts = self.broker._topic(topic or self.settings.topic)
            return {p: len(msgs) for p, msgs in enumerate(parts)}

    def committed(self, topic: str | None = None) -> dict[int, int]:
        self.broker.check()
        with self.broker.lock:
            group = self.broker.groups.get(self.settings.group)
            return dict(group.offsets(topic or self.settings.topic, self.settings.topic)) \
                if group else {}

    def list_topics(self) -> set[str]:
        self.broker.check()
        with self.broker.lock:
            return set(self.broker.topics)

    def partition_of(self, task_id: str, partitions: int) -> int:
        return self.broker.partition_of(task_id.encode(), partitions)

    def close(self) -> None:
        pass
