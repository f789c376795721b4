"""The kafka-python work-arounds of ``yadtq.kafka_conn``: ``finish_pending_join`` touches only a
join left in flight (or finished unread) while nothing else asks for a rejoin; ``release_parked``
empties only a drained in-line batch while records are parked; neither touches anything without
the private attributes it reads (real-stack tests: tests/integration/test_group_join.py,
test_paused_fetch.py)."""

from __future__ import annotations

from types import SimpleNamespace

from yadtq.kafka_conn import finish_pending_join, release_parked


def consumer(join_task: object, rejoin_needed: bool) -> SimpleNamespace:
    return SimpleNamespace(_coordinator=SimpleNamespace(_join_task=join_task,
                                                        rejoin_needed=rejoin_needed))


def test_a_join_left_in_flight_is_awaited_at_the_next_poll() -> None:
    c = consumer(join_task=SimpleNamespace(is_done=False), rejoin_needed=False)
    assert finish_pending_join(c) is True and c._coordinator.rejoin_needed is True
    assert finish_pending_join(c) is False  # already asked: nothing more


def test_a_join_that_failed_unread_is_made_again() -> None:
    c = consumer(join_task=SimpleNamespace(is_done=True, exception=OSError("x")), rejoin_needed=False)
    assert finish_pending_join(c) is True and c._coordinator.rejoin_needed is True
    assert c._coordinator._join_task.exception is not None  # left as it is: kafka-python joins anew


def test_a_join_that_finished_between_polls_is_applied_not_thrown_away() -> None:
    """kafka-python starts a new join for a finished task; its answer is handed back as a task not
    done yet, which settles with the answer when the next poll awaits it (by callback or await)."""
    answer = b"assignment"
    c = consumer(join_task=SimpleNamespace(is_done=True, exception=None, value=answer),
                 rejoin_needed=True)
    assert finish_pending_join(c) is True and c._coordinator.rejoin_needed is True
    handed = c._coordinator._join_task
    assert handed.is_done is False  # join_group_async awaits it instead of joining again
    assert finish_pending_join(c) is False  # already handed back: nothing more
    got: list[object] = []
    handed.add_callback(got.append)  # what kafka-python's wait_for does
    handed.add_errback(lambda exc: got.append(exc))
    assert got == [answer] and handed.is_done and handed.succeeded() and not handed.failed()

    c = consumer(join_task=SimpleNamespace(is_done=True, exception=None, value=answer),
                 rejoin_needed=False)
    finish_pending_join(c)

    async def await_it() -> object:
        return await c._coordinator._join_task  # the path without a timeout

    import asyncio
    assert asyncio.run(await_it()) == answer


def test_nothing_is_touched_without_a_join_or_the_attributes() -> None:
    idle = consumer(join_task=None, rejoin_needed=False)
    assert finish_pending_join(idle) is False and idle._coordinator.rejoin_needed is False
    assert finish_pending_join(SimpleNamespace()) is False  # another client, another version
    assert finish_pending_join(SimpleNamespace(_coordinator=SimpleNamespace())) is False


def test_the_group_heartbeat_is_at_most_half_a_second() -> None:
    """Members learn of a rebalance from a heartbeat's answer: at a third of the 6 s session a
    worker joining busy ones waited ~2 s per round (three rounds); now at most 500 ms."""
    from yadtq.kafka_conn import consumer_config, heartbeat_interval_ms
    from yadtq.settings import Settings

    assert heartbeat_interval_ms(Settings()) == 500
    assert consumer_config(Settings(), "c")["heartbeat_interval_ms"] == 500
    assert heartbeat_interval_ms(Settings(session_timeout_ms=900)) == 300  # a third, if shorter
    assert heartbeat_interval_ms(Settings(session_timeout_ms=120)) == 100  # never below 100 ms


class Batch:
    """A fetched batch: truthy while it has records to give (kafka-python's PartitionRecords)."""

    def __init__(self, left: int) -> None:
        self.left = left

    def __bool__(self) -> bool:
        return self.left > 0


def fetcher(current: object, parked: dict[str, object]) -> SimpleNamespace:
    return SimpleNamespace(_fetcher=SimpleNamespace(_next_partition_records=current,
                                                    _paused_partition_records=parked))


def test_a_drained_batch_no_longer_keeps_parked_records_from_coming_back() -> None:
    c = fetcher(current=Batch(0), parked={"tp-2": Batch(270)})
    assert release_parked(c) is True and c._fetcher._next_partition_records is None
    assert release_parked(c) is False  # the slot is free: kafka-python restores the parked batch


def test_a_batch_with_records_left_or_nothing_parked_is_left_alone() -> None:
    busy = Batch(5)
    c = fetcher(current=busy, parked={"tp-2": Batch(270)})
    assert release_parked(c) is False and c._fetcher._next_partition_records is busy
    drained = Batch(0)
    c = fetcher(current=drained, parked={})
    assert release_parked(c) is False and c._fetcher._next_partition_records is drained
    assert release_parked(fetcher(current=None, parked={"tp-2": Batch(1)})) is False
    assert release_parked(SimpleNamespace()) is False  # another client, another version
    assert release_parked(SimpleNamespace(_fetcher=SimpleNamespace())) is False


def test_lags_leave_out_a_position_not_known_yet() -> None:
    """kafka-python's ``position(tp, timeout_ms)`` returns None when a new assignment's offset reset
    has not finished in time; ``lags`` had subtracted it (TypeError in the consume loop, a worker
    crash, seen as a task not started for 20 s in a loaded CI run)."""
    from kafka import TopicPartition

    from yadtq.broker import TaskConsumer
    from yadtq.broker_types import SlotTopics
    from yadtq.settings import Settings

    settings = Settings(partitions=3)
    consumer = TaskConsumer.__new__(TaskConsumer)
    consumer.settings, consumer._topics = settings, SlotTopics(settings)
    tps = [TopicPartition(settings.topic, p) for p in range(3)]
    consumer._c = SimpleNamespace(
        assignment=lambda: set(tps), end_offsets=lambda wanted, timeout_ms: {tp: 10 for tp in wanted},
        position=lambda tp, timeout_ms: {0: 4, 1: None, 2: 10}[tp.partition])
    assert consumer.lags({0, 1, 2}) == {0: 6, 2: 0}
