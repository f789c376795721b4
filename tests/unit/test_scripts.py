"""The project's own scripts' helpers."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

CLUSTER_ID = Path(__file__).resolve().parents[2] / "scripts" / "kafka_cluster_id.py"


def test_a_kafka_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``kafka-storage format -t -xyz`` reads an id that starts with "-" as an option: a fresh
    Kafka failed to start 1 time in 64. Such an id is drawn again."""
    draws = iter([b"\xf8" * 16, b"\x00" * 16])  # 0xf8...: "-" first in URL-safe base64
    monkeypatch.setattr(os, "urandom", lambda n: next(draws)[:n])
    runpy.run_path(str(CLUSTER_ID), run_name="__main__")
    assert capsys.readouterr().out == "A" * 22 + "\n"


def test_a_kafka_cluster_id_is_22_url_safe_characters(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(CLUSTER_ID), run_name="__main__")
    out = capsys.readouterr().out.strip()
    assert len(out) == 22 and not out.startswith("-")
    assert set(out) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
