"""A confirmed enqueue: the tasks' Redis records written while Kafka acknowledges their messages.

The two round trips overlap (``Producer.send``'s ``meanwhile``): the messages are handed to the
Kafka client first, the records are written while the broker appends them, then the caller waits
for the acknowledgements. A confirmed ``submit()`` costs the longer of the two instead of their
sum.

Which lands first does not matter for delivery:

- the record usually does (one Redis script against a network round trip, an append and a fetch);
- when the message wins, the worker's start recreates the record from it (history note "record
  recreated by worker") and this write, finding the task there, leaves it as it is;
- Redis unreachable: the sends Kafka acknowledged stand (the tasks are in Kafka and run; their
  workers wait for Redis and write the records when it is back), and the caller is not told "not
  enqueued" for a task that will run. Only when every send was refused too does the caller get
  Redis's error;
- Redis refusing (``StoreError``: out of memory, a key of the wrong type) is an error for the
  caller, as it was when the record came first: a worker's start is likely refused as well, and
  the message is then dead-lettered after its tries. Should Redis take writes again before that,
  the task runs (the same uncertainty as a Kafka acknowledgement lost in a broker restart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from yadtq.errors import ServiceUnavailable, StoreError, YadtqError
from yadtq.store import RedisStore
from yadtq.wire import Envelope

log = logging.getLogger("yadtq.client")

Send = Callable[..., list[Exception | None]]
"""``send(envelopes, meanwhile=fn)`` -> per envelope its error or None."""


def send_recorded(store: RedisStore, send: Send, envelopes: Sequence[Envelope]) -> list[Exception | None]:
    """Send ``envelopes`` and record them (see the module's docstring); per task its send error
    or None. Raises Redis's error when it refused the records, or could not be reached and no
    send succeeded."""
    ran: list[bool] = []
    refused: list[YadtqError] = []

    def record() -> None:
        if ran:
            return
        ran.append(True)
        try:
            store.create(envelopes)
        except (ServiceUnavailable, StoreError) as exc:
            refused.append(exc)

    errors = send(envelopes, meanwhile=record)
    record()  # the producer failed before handing anything over: the records still come first
    if refused:
        if isinstance(refused[0], StoreError) or all(err is not None for err in errors):
            if any(err is None for err in errors):
                log.warning("Redis refused the records of %d tasks Kafka took (%s): they run "
                            "only if Redis takes writes again before their workers start them",
                            sum(err is None for err in errors), refused[0])
            raise refused[0]
        log.warning("%d tasks are in Kafka but not recorded in Redis (%s): their workers record "
                    "them when they start", sum(err is None for err in errors), refused[0])
    return errors
