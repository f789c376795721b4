"""Marking tasks in-progress: the runner threads' ``START`` calls, joined into one round trip when
they overlap (``worker.coalesce``), the counterpart of ``worker.outcomes`` for the outcomes.

A refusal of a whole chunk (a record Redis will not take) is retried task by task, so only the
task it concerns is refused; the others start."""

from __future__ import annotations

from worker.coalesce import Coalescer
from worker.messages import REFUSED
from worker.state import RedisCalls
from yadtq.errors import StoreError
from yadtq.store import RedisStore
from yadtq.wire import Envelope

Started = tuple[list[int], dict[str, str], dict[str, int]]
"""Per task its attempt (or a code of ``yadtq.lua.START``); the reasons of those Redis refused; the
deaths of those a worker died with (only the ones that have any)."""


class Starter:
    """The runner's START calls for every runner thread of one worker."""

    def __init__(self, store: RedisStore, worker_id: str, redis: RedisCalls) -> None:
        self.redis = redis
        self.coalescer: Coalescer[tuple[Envelope, bool], tuple[int, int]] = Coalescer(
            lambda items: store.start_ex(worker_id, [e for e, _ in items], [a for _, a in items]),
            "starts")

    def start(self, envs: list[Envelope], alone: bool = False) -> Started | None:
        """Mark ``envs`` in-progress (``alone``: the caller runs them alone); None if the worker
        stopped while Redis was away."""
        if not envs:
            return [], {}, {}
        try:
            answers = self.redis.call(lambda: self.coalescer.call([(e, alone) for e in envs]),
                                      "mark in-progress")
            if answers is None:
                return None
            return ([a for a, _ in answers], {},
                    {e.id: d for e, (_, d) in zip(envs, answers, strict=True) if d})
        except StoreError as exc:
            if len(envs) == 1:
                return [REFUSED], {envs[0].id: str(exc)}, {}
        out: list[int] = []
        reasons: dict[str, str] = {}
        deaths: dict[str, int] = {}
        for env in envs:
            one = self.start([env], alone)
            if one is None:
                return None
            out += one[0]
            reasons.update(one[1])
            deaths.update(one[2])
        return out, reasons, deaths

    def close(self) -> None:
        self.coalescer.close()
