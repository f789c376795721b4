"""Every benchmark ``make bench`` runs (and the others in ``bench/``) still runs, in a tiny size,
on the real Kafka and Redis: a benchmark is code too, and it rots where nothing runs it.

Found the hard way: after the runner started passing ``alone`` to ``RedisStore.start``,
``bench_latency``'s hook on that method raised ``TypeError`` in its workers, no task started, and
``make bench`` failed ("warm: not every task completed within 60 s") for a whole session before
anyone ran it. These runs measure nothing (the sizes are far too small); they check that each
script ends with status 0 (each checks its own tasks: none lost, none run twice, results right)
and writes its result file. Results go to a temporary folder (``YADTQ_BENCH_RESULTS``), never over
the committed ones in ``bench/results/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, base_real_settings, require_services

pytestmark = pytest.mark.integration

# (script, arguments for a tiny run, the result file it writes)
RUNS = [
    ("bench_floor.py", ["--n", "50", "--io-tasks", "2000"], "floor.json"),
    ("bench_minqueue.py", ["--tasks", "300"], "minqueue.json"),
    ("bench_pipeline.py", ["--tasks", "400", "--light-seconds", "1", "--workers", "1"], "pipeline.json"),
    ("bench_memory.py", ["--tasks", "2000", "--refreshes", "2", "--steady-seconds", "2", "--rate", "100",
                         "--ttl", "1"], "memory.json"),
    ("bench_schedule.py", ["--rate", "100", "--seconds", "1", "--delay", "1"], "schedule.json"),
    ("bench_latency.py", ["--seconds", "0.5", "--burst", "50"], "latency.json"),
    ("bench_submit.py", ["--n", "200", "--repeat", "1"], "submit.json"),
    ("bench_concurrency.py", ["--phase", "aio", "io", "--concurrency", "8", "--n", "300"],
     "concurrency.json"),
    ("bench_priorities.py", ["--backlog", "100", "--rate", "50", "--seconds", "2"], "priorities.json"),
    ("bench_tui.py", ["--tasks", "1000", "--refreshes", "2", "--no-load"], "tui.json"),
]


@pytest.mark.parametrize(("script", "args", "result"), RUNS, ids=[r[0] for r in RUNS])
def test_a_benchmark_runs(script: str, args: list[str], result: str, tmp_path: Path) -> None:
    require_services(base_real_settings())  # fails (CI=true) or skips when they are down
    env = {**os.environ, "YADTQ_BENCH_RESULTS": str(tmp_path), "PYTHONPATH": str(ROOT)}
    if script in ("bench_memory.py", "bench_tui.py"):
        args = [*args, "--output", str(tmp_path / result)]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    written = json.loads((tmp_path / result).read_text())
    assert isinstance(written, dict) and "machine" in written


def test_benchmark_results_go_where_they_are_told(tmp_path: Path) -> None:
    """``YADTQ_BENCH_RESULTS`` moves every result file, so a test run never overwrites the
    committed numbers."""
    code = ("import sys; sys.path.insert(0, '.'); from bench.common import RESULTS, write_result; "
            "print(write_result('x', {'a': 1}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "YADTQ_BENCH_RESULTS": str(tmp_path)}).stdout.strip()
    assert out == str(tmp_path / "x.json") and json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
