"""The Kafka clients' connection settings: bootstrap servers, security (SASL, TLS) and timeouts.

Plain dictionaries, no Kafka import: ``yadtq.broker`` (the one module that imports kafka-python)
passes them to every producer, consumer and admin client it makes.
"""

from __future__ import annotations

from typing import Any

from yadtq.settings import Settings

DELIVERY_TIMEOUT_SECONDS = 10.0
"""A message not acknowledged this long after ``send`` has failed (the producer gives up)."""


def _security(settings: Settings) -> dict[str, Any]:
    cfg: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        cfg["sasl_plain_password"] = settings.sasl_password()
    if settings.kafka_ssl_cafile:
        cfg["ssl_cafile"] = settings.kafka_ssl_cafile
    return cfg


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection settings common to the producer, the consumer and the admin client."""
    return {"bootstrap_servers": settings.kafka_bootstrap.split(","), **_security(settings),
            "client_id": "yadtq", "bootstrap_timeout_ms": 5000,
            "reconnect_backoff_max_ms": 1000}


def producer_config(settings: Settings, linger_ms: int) -> dict[str, Any]:
    """The task producer's settings: every write acknowledged by the in-sync replicas, idempotent
    (a retried batch, say after a request timed out during a leader election, is written once;
    kafka-python refuses a conflicting acks/retries/in-flight value)."""
    return {**client_config(settings), "acks": "all", "linger_ms": linger_ms, "max_block_ms": 5000,
            "request_timeout_ms": 5000, "delivery_timeout_ms": int(DELIVERY_TIMEOUT_SECONDS * 1000),
            "enable_idempotence": True, "max_in_flight_requests_per_connection": 5}


def consumer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """The worker consumer's settings (the assignor is the adapter's: it is a kafka-python class):
    offsets committed by the worker only, never topics created by a subscription."""
    return {**client_config(settings), "client_id": client_id, "group_id": settings.group,
            "enable_auto_commit": False, "auto_offset_reset": "earliest",
            "max_poll_records": settings.max_poll_records,
            "session_timeout_ms": settings.session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms(settings),
            "max_poll_interval_ms": settings.max_poll_interval_ms, "fetch_max_wait_ms": 100,
            "request_timeout_ms": max(30000, settings.session_timeout_ms + 5000),
            "allow_auto_create_topics": False}


HEARTBEAT_MS = 500
"""The group heartbeat's interval at most. Members learn that the group is rebalancing from a
heartbeat's answer, and a cooperative rebalance takes up to three rounds, each waiting for every
member's next heartbeat: at a third of the 6 s session (2 s) a worker joining a busy one took
about 6 s to get its partitions; at 500 ms, 1.7 s (``bench/results/group-join-ab.json``). Two
small requests a second per worker."""


def heartbeat_interval_ms(settings: Settings) -> int:
    """The consumers' heartbeat interval: ``HEARTBEAT_MS``, or a third of the session if shorter."""
    return max(100, min(HEARTBEAT_MS, settings.session_timeout_ms // 3))


def finish_pending_join(consumer: Any) -> bool:
    """Work around kafka-python 3.0.12 losing group joins (``TaskConsumer.poll`` calls this before
    each poll; True if it had to).

    Its ``join_group_async`` runs only inside ``poll`` and loops ``while need_rejoin()``; the join
    itself (JoinGroup, then SyncGroup) is a task on the client's network thread. Two ways it lost one:

    - The group leader sets its assignment snapshot while its SyncGroup request is in flight, which
      makes ``need_rejoin()`` False; if that ``poll`` timed out first (ours are 0-200 ms), the next
      one never awaited the join, so the assignment was never applied and heartbeats stayed off:
      the member held nothing and was dropped after ``session_timeout_ms``. It hit about a third of
      the starts of two workers on new topics. Marking a rejoin needed while a join is left makes
      the next poll await it.
    - A join whose answer came *between* polls is a finished task, and ``join_group_async`` starts a
      new join for a finished task instead of applying its answer. A member that polls with gaps
      (a worker full of tasks polls with a 0 ms timeout every 0.5 s) threw away every join and
      sent another: a cooperative rebalance, which needs the old owner to apply a smaller
      assignment and join again, never ended (a second member got nothing for ~30 s,
      ``tests/integration/test_rebalance_clients.py``). A join that finished well is handed back as
      ``_JoinAnswer``, which the next poll awaits and applies.

    Private attributes, read defensively: without them nothing is done."""
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if coordinator is None or task is None:
        return False
    finished_well = getattr(task, "is_done", False) is True and getattr(task, "exception", 1) is None
    if finished_well and not isinstance(task, _JoinAnswer):
        coordinator._join_task = _JoinAnswer(task.value)
        coordinator.rejoin_needed = True
        return True
    if getattr(coordinator, "rejoin_needed", True):
        return False
    coordinator.rejoin_needed = True
    return True


class _JoinAnswer:
    """The answer of a join that finished between polls, as a task not done yet: kafka-python's
    ``join_group_async`` then awaits it (``wait_for`` adds its callbacks, or ``await``) instead of
    starting another join, and it settles at once with the answer (a kafka-python ``Future``'s
    surface, as much of it as the join uses)."""

    def __init__(self, value: Any) -> None:
        self.value, self.exception, self.is_done = value, None, False

    def succeeded(self) -> bool:
        return self.is_done

    def failed(self) -> bool:
        return False

    def add_callback(self, f: Any, *args: Any, **kwargs: Any) -> _JoinAnswer:
        self.is_done = True
        f(*args, self.value, **kwargs)
        return self

    def add_errback(self, f: Any, *args: Any, **kwargs: Any) -> _JoinAnswer:
        self.is_done = True
        return self

    def __await__(self) -> Any:
        self.is_done = True
        return self.value
        yield  # a generator: awaitable, and done without suspending


def release_parked(consumer: Any) -> bool:
    """Work around kafka-python 3.0.12 stranding a paused partition's fetched records
    (``TaskConsumer.poll`` calls this before each poll; True if it had to).

    Its fetcher parks the parsed records of a partition paused mid-batch and gives them back after
    the resume only while its in-line slot (``_next_partition_records``) is ``None``; but a poll that
    drains that slot leaves an empty batch object in it, not ``None``, so from then on nothing parked
    came back, and the partition was never fetched again (it counts as having data in hand): its
    later messages were never delivered. A worker pauses partitions whenever its runner is full, and
    2 of 12 partitions stranded so in each 60,000-task drain (``tests/integration/
    test_paused_fetch.py``). Emptying a drained slot is what the fetcher does itself when it parks;
    private attributes, read defensively: without them nothing is done."""
    fetcher: Any = getattr(consumer, "_fetcher", None)
    current = getattr(fetcher, "_next_partition_records", None)
    if current is None or current or not getattr(fetcher, "_paused_partition_records", None):
        return False
    fetcher._next_partition_records = None
    return True

