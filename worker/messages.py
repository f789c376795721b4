"""A message before its task runs: decoded and validated (or dead-lettered with the reason), and
what is done with one whose task Redis would not start."""

from __future__ import annotations

import logging
from dataclasses import replace

from worker.execute import valid_text
from worker.outbox import Outbox
from yadtq.broker_types import Record
from yadtq.errors import DecodeError, InvalidTask
from yadtq.registry import Registry, TaskSpec
from yadtq.wire import Envelope, decode

log = logging.getLogger("yadtq.worker")

Job = tuple[Envelope, TaskSpec]

# START's answers besides an attempt number (see yadtq.lua)
FINAL, CLEARED, MISMATCH, MALFORMED, CANCELLED, NOT_DUE, NOT_ALONE = 0, -1, -2, -3, -4, -5, -6
REFUSED = -100
"""Local: Redis refused to start this task for good (the reason is kept beside it)."""


def validate(rec: Record, registry: Registry, outbox: Outbox, worker_id: str) -> Job | None:
    """The task a record asks for, or None (dead-lettered). Never raises."""
    try:
        env = decode(rec.value)
    except DecodeError as exc:
        outbox.dead_letter(rec, str(exc))
        return None
    try:
        spec, args = registry.validate(env.name, env.args)
    except InvalidTask as exc:
        reason = str(exc)
        if reason.startswith("unknown task"):
            reason = f"unknown task {env.name!r} on worker {worker_id}"
        outbox.dead_letter(rec, reason)
        return (env, TaskSpec(env.name, None, (), description=reason))
    except Exception as exc:  # noqa: BLE001 - a validator that trips: this message only
        outbox.dead_letter(rec, f"could not validate the task: {type(exc).__name__}: "
                                     f"{valid_text(exc)[:300]}")
        return None
    return (replace(env, name=spec.name, args=args), spec)


def not_started(rec: Record, env: Envelope, code: int, reason: str, outbox: Outbox) -> None:
    """Log or dead-letter a message whose task START did not begin (``code``)."""
    if code == FINAL:
        log.info("task %s skipped: already final (duplicate delivery)", env.id)
    elif code == CLEARED:
        log.info("task %s skipped: cleared by reset", env.id)
    elif code == CANCELLED:
        log.info("task %s skipped: cancelled", env.id)
    elif code == NOT_DUE:
        log.info("task %s skipped: scheduled for later (the scheduler sends it when due)", env.id)
    elif code == MISMATCH:
        outbox.dead_letter(rec, f"message for task {env.id} does not match its stored record "
                                     "(other name or arguments): not run")
    elif code == MALFORMED:
        outbox.dead_letter(rec, f"Redis holds a malformed record for task {env.id} (a missing "
                                     "or ill-typed field, or a key of another type): not run")
    else:
        outbox.dead_letter(rec, f"Redis refused to start task {env.id}: {reason}")
