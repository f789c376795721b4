"""Types shared by the Kafka adapter and its fakes (no Kafka import here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """One message taken from the tasks topic, with where it came from."""

    partition: int
    offset: int
    value: bytes | None
    topic: str = ""
