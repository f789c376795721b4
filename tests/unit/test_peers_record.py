"""The peers benchmark's file recorder (``bench/peers/record.py`` with ``PEERS_RECORD_FILE``, read
by ``bench.peers.base.FileRecorder``): it must count what the Redis recorder counts, or the
benchmark's "0 lost, 0 duplicated" would mean nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers import record
from bench.peers.base import FileRecorder
from tests.conftest import ROOT


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run.records"
    monkeypatch.setenv("PEERS_RECORD_FILE", str(path))
    monkeypatch.setattr(record, "_fd", None)
    yield path
    if record._fd is not None:
        os.close(record._fd)
        record._fd = None


def test_duplicates_losses_phases_and_workers_are_counted(record_file: Path) -> None:
    for key in ("io:1", "io:2", "io:2", "warm:1"):
        assert record.add(2, 3, key) == 5
    rec = FileRecorder(str(record_file))
    assert rec.counts(["io:1", "io:2", "io:3"]) == [1, 2, 0]  # one lost, one run twice
    assert rec.completed("io") == 3 and rec.completed("warm") == 1 and rec.completed("x") == 0
    assert rec.workers_seen("io", 0) == 1
    done = rec.done(["io:1", "io:3"])
    assert isinstance(done[0], float) and done[1] is None


def test_a_line_half_written_waits_for_its_end(record_file: Path) -> None:
    rec = FileRecorder(str(record_file))
    assert rec.completed("io") == 0  # no file yet
    with open(record_file, "ab") as f:
        f.write(b"io:1\t1.5\tio\t10:1\nio:2\t1.")
    assert rec.counts(["io:1", "io:2"]) == [1, 0]
    with open(record_file, "ab") as f:
        f.write(b"75\tio\t11:1\n")
    assert rec.counts(["io:1", "io:2"]) == [1, 1] and rec.done(["io:2"]) == [1.75]
    assert rec.workers_seen("io", 0) == 2 and rec.workers_seen("io", 1) == 1
    rec.cleanup()
    assert not record_file.exists() and rec.completed("io") == 0


def test_processes_appending_at_once_lose_no_line(record_file: Path) -> None:
    """Several processes (each with threads) append to one file: every line lands whole."""
    code = ("import sys, threading; sys.path.insert(0, '.'); from bench.peers import record\n"
            "p = sys.argv[1]\n"
            "ts = [threading.Thread(target=lambda t=t: [record.record(f'io:{p}-{t}-{i}') "
            "for i in range(500)]) for t in range(4)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p)], cwd=ROOT,
                              env={**os.environ, "PEERS_RECORD_FILE": str(record_file)})
             for p in range(3)]
    assert all(p.wait(60) == 0 for p in procs)
    rec = FileRecorder(str(record_file))
    keys = [f"io:{p}-{t}-{i}" for p in range(3) for t in range(4) for i in range(500)]
    assert rec.counts(keys) == [1] * len(keys)
    assert rec.completed("io") == len(keys) and rec.workers_seen("io", 0) == 3
