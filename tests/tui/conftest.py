"""Fixtures for the dashboard tests."""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.tui.helpers import FrozenClock
from yadtq import Client, Settings, records
from yadtq.builtins import register_builtins
from yadtq.models import WorkerInfo
from yadtq.registry import Registry
from yadtq.store import RedisStore
from yadtq.testing import FakeBroker


@pytest.fixture
def clock(fake_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """Frozen time for the core (stored timestamps) and the app (ages, uptimes). A worker's beat
    is aged by the frozen clock here, not by its key's TTL, which runs in real time and would make
    "0s ago" read "1s ago" on a slow run (the TTL ages are tested in ``tests/unit/test_store.py``)."""
    real = records.workers

    def frozen_ages(flat: Sequence[Any], now: float, late_after: float) -> list[WorkerInfo]:
        flat = list(flat)
        flat[4::5] = [None] * len(flat[4::5])
        return real(flat, now, late_after)

    monkeypatch.setattr(records, "workers", frozen_ages)
    return FrozenClock().install(fake_store)


@pytest.fixture
def fake_client(fake_settings: Settings, fake_store: RedisStore, fake_broker: FakeBroker) -> Client:
    """Like the suite's ``fake_client``, with only the built-in tasks registered, whatever other
    tests added to the default registry (the snapshots show the list of known tasks)."""
    registry = Registry()
    register_builtins(registry)
    return Client(fake_settings, store=fake_store, producer_factory=fake_broker.producer,
                  kafka_ping=fake_broker.ping, registry=registry)


_SPAN = re.compile(r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" '
                   r'clip-path="url\(#terminal-(?:\d+-)?line-(\d+)\)">([^<]*)</text>')
_CELL = 12.2  # the width of a cell in the SVG's units


def screen_text(svg: str) -> list[str]:
    """The rows of text a snapshot SVG shows (colours left out), for a diff a person can read."""
    rows: dict[int, list[tuple[float, str]]] = {}
    for x, line, text in _SPAN.findall(svg):
        rows.setdefault(int(line), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    out = []
    for n in range(max(rows) + 1 if rows else 0):
        row = ""
        for x, text in sorted(rows.get(n, [])):
            row = row.ljust(round(x / _CELL) - 1) + text
        out.append(row.rstrip())
    return out


@pytest.fixture
def snap_compare(snap_compare: Any, monkeypatch: pytest.MonkeyPatch,
                 request: pytest.FixtureRequest) -> Callable[..., bool]:
    """The plugin's ``snap_compare``; on a mismatch it also prints which rows of text differ, so a
    failure in CI (where the HTML report is lost) says what the screen showed."""
    from textual import _doc  # where the plugin takes its screenshot from, at each compare

    taken: list[str] = []
    real = _doc.take_svg_screenshot

    def take(*args: Any, **kwargs: Any) -> str:
        svg: str = real(*args, **kwargs)
        taken.append(svg)
        return svg

    monkeypatch.setattr(_doc, "take_svg_screenshot", take)

    def compare(*args: Any, **kwargs: Any) -> bool:
        ok: bool = snap_compare(*args, **kwargs)
        if not ok and taken:
            path = (Path(request.node.path).parent / "__snapshots__" / Path(request.node.path).stem
                    / f"{request.node.name}.svg")
            expected = screen_text(path.read_text(encoding="utf-8")) if path.exists() else []
            print(f"snapshot {request.node.name}: the screen differs from {path.name} (- expected, + shown)")
            print("\n".join(difflib.unified_diff(expected, screen_text(taken[-1]), lineterm="", n=1)))
        return ok

    return compare
