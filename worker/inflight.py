"""Offsets in flight: per partition, which delivered messages are not finished yet, and so how far
the partition may be committed.

Tasks finish out of order (several run at once, from one partition too); a partition is committed
only up to its lowest offset whose task is not finished (finished = its final state written to
Redis, or the message dead-lettered or skipped), so a crash redelivers exactly the unfinished
messages and those after them (START skips the ones already final). The Confluent
parallel-consumer's rule, without its offset map.

A ``Track`` is one partition for as long as this worker owns it: a revocation ends it (``live``
turns False), its tasks not started yet are not started, and a task of it that finishes later
changes nothing here. A partition assigned again gets a fresh track.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from yadtq.broker_types import Record

MAX_UNCOMMITTED = 5000
"""Most offsets a partition may have past its committable one (finished or not) before the worker
stops taking messages of it: bounds what a crash replays while one long task holds the partition."""


@dataclass(eq=False)
class Track:
    """One partition while this worker owns it (read and written under ``InFlight.lock``)."""

    partition: int
    pending: set[int] = field(default_factory=set)
    """Offsets delivered and not finished."""
    next: int = -1
    """The offset after the last one delivered (-1: none delivered yet)."""
    first: int = -1
    """The first offset delivered: committing it would say nothing new."""
    live: bool = True
    """False once the partition was revoked."""

    def committable(self) -> int | None:
        if self.next < 0:
            return None
        offset = min(self.pending) if self.pending else self.next
        return None if offset == self.first else offset


class InFlight:
    """The tracks of the partitions this worker owns, shared by the consume loop, the runner's
    threads and the rebalance callbacks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._tracks: dict[int, Track] = {}

    def add(self, records: list[Record]) -> list[tuple[Track, Record]]:
        """Track newly delivered records; those already in flight or finished in this ownership
        (a redelivery) are left out."""
        out: list[tuple[Track, Record]] = []
        with self.lock:
            for rec in records:
                track = self._tracks.get(rec.partition)
                if track is None:
                    track = self._tracks[rec.partition] = Track(rec.partition, first=rec.offset)
                if rec.offset < track.next:
                    continue  # delivered before in this ownership (in flight or finished)
                track.pending.add(rec.offset)  # offsets never delivered (gaps) count as done
                track.next = rec.offset + 1
                out.append((track, rec))
        return out

    def finish(self, track: Track, offset: int) -> None:
        with self.lock:
            track.pending.discard(offset)

    def is_pending(self, track: Track, offset: int) -> bool:
        with self.lock:
            return track.live and offset in track.pending

    def committable(self) -> dict[int, int]:
        """partition -> offset to commit (every message before it is finished)."""
        with self.lock:
            out = {}
            for p, track in self._tracks.items():
                offset = track.committable()
                if offset is not None:
                    out[p] = offset
            return out

    def crowded(self, limit: int = MAX_UNCOMMITTED) -> set[int]:
        """Partitions with ``limit`` or more offsets past their committable one."""
        with self.lock:
            return {p for p, t in self._tracks.items()
                    if t.pending and t.next - min(t.pending) >= limit}

    def pending(self) -> int:
        with self.lock:
            return sum(len(t.pending) for t in self._tracks.values())

    def revoke(self, partitions: set[int] | None = None) -> list[Track]:
        """End the tracks of ``partitions`` (all with None); the ended tracks."""
        with self.lock:
            gone = [t for p, t in self._tracks.items() if partitions is None or p in partitions]
            for track in gone:
                track.live = False
                del self._tracks[track.partition]
            return gone
