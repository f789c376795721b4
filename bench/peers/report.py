"""Medians over repeats, the ratio table and the plot of the peers benchmark."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

Getter = Callable[[dict[str, Any]], Any]


def _get(path: str) -> Getter:
    def get(rep: dict[str, Any]) -> Any:
        cur: Any = rep
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return cur
    return get


# (column, path in a repeat, True if higher is better)
THROUGHPUT = [("drain/s (warm)", "warm_drain.drain_per_s", True),
              ("enqueue bulk/s", "warm_drain.enqueue_per_s", True),
              ("submit 1-by-1/s", "burst.submit_per_s", True),
              ("burst/s", "burst.tasks_per_s", True),
              ("cold drain/s", "drain.drain_per_s", True),
              ("cold drain incl. start/s", "drain.drain_from_start_per_s", True)]
CPU = [("CPU s/1k burst (workers+submitter)", "burst.cpu_per_1000", False),
       ("workers", "burst.cpu_workers_per_1000", False),
       ("submitter", "burst.cpu_submitter_per_1000", False),
       ("drain workers", "warm_drain.cpu_workers_per_1000", False),
       ("bulk enqueue (submitter)", "warm_drain.cpu_enqueue_per_1000", False)]

IO = [("I/O drain/s (warm)", "io_drain.drain_per_s", True),
      ("tasks", "io_drain.tasks", True),
      ("enqueue bulk/s", "io_drain.enqueue_per_s", True),
      ("first completion after thaw s", "io_drain.first_completion_after_thaw_s", False),
      ("CPU s/1k drain workers", "io_drain.cpu_workers_per_1000", False)]
IO_TARGET = 5000.0  # tasks/s for YADTQ with 2 workers, and >= 2x the best peer (the targets)


def latency_columns(rates: list[int]) -> list[tuple[str, str, bool]]:
    cols = []
    for r in rates:
        cols += [(f"{r}/s achieved", f"rate_{r}.achieved_per_s", True),
                 (f"{r}/s p50 ms", f"rate_{r}.p50_ms", False),
                 (f"{r}/s p99 ms", f"rate_{r}.p99_ms", False)]
    return cols


def medians(reps: list[dict[str, Any]], columns: list[tuple[str, str, bool]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, path, _ in columns:
        vals = [v for v in (_get(path)(r) for r in reps) if isinstance(v, int | float) and v == v]
        skipped = any(_get(path.split(".")[0] + ".skipped")(r) for r in reps)
        out[path] = round(statistics.median(vals), 3) if vals else ("saturated" if skipped else None)
    return out


def exactly(reps: list[dict[str, Any]]) -> dict[str, int]:
    total = {"tasks": 0, "lost": 0, "dup": 0, "wrong_result": 0, "unfinished_phases": 0}
    for rep in reps:
        for phase in rep.values():
            if isinstance(phase, dict) and "error" in phase:
                total["unfinished_phases"] += 1
            if isinstance(phase, dict) and isinstance(phase.get("check"), dict):
                for k in ("tasks", "lost", "dup", "wrong_result"):
                    total[k] += phase["check"][k]
                if "late_results" in phase["check"]:  # the I/O phase's check (a grace for results)
                    total["late_results"] = total.get("late_results", 0) + phase["check"]["late_results"]
    return total


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def table(systems: dict[str, dict[str, Any]], columns: list[tuple[str, str, bool]], title: str,
          base: str = "yadtq") -> str:
    names = [n for n in systems if systems[n].get("median")]
    ref = systems.get(base, {}).get("median", {})
    head = "| system | " + " | ".join(c for c, _, _ in columns) + " |"
    note = ("; † = the submitter could not offer the rate: its latencies are for a lower load"
            if any(p.endswith("achieved_per_s") for _, p, _ in columns) else "")
    lines = [f"**{title}** (median; in brackets the ratio to {base}: system / {base}{note})", "", head,
             "|---" * (len(columns) + 1) + "|"]
    for n in names:
        cells = []
        for _, path, _ in columns:
            v, r = systems[n]["median"].get(path), ref.get(path)
            num = isinstance(v, int | float) and isinstance(r, int | float)
            ratio = f" ({v / r:.2f}×)" if num and r and n != base else ""
            sat = ""
            if path.endswith("achieved_per_s") and isinstance(v, int | float):
                offered = float(path.split(".")[0].removeprefix("rate_"))
                sat = " †" if v < 0.95 * offered else ""
            cells.append(_fmt(v) + ratio + sat)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


HEADLINE = [("drain/s (warm)", "warm_drain.drain_per_s"), ("burst/s", "burst.tasks_per_s"),
            ("enqueue bulk/s", "warm_drain.enqueue_per_s"), ("submit 1-by-1/s", "burst.submit_per_s")]


def ratio_table(systems: dict[str, dict[str, Any]]) -> str:
    """How many times each YADTQ variant's median is each peer's (higher = YADTQ faster)."""
    ours = [n for n in systems if n.startswith("yadtq") and systems[n].get("median")]
    peers = [n for n in systems if not n.startswith("yadtq") and systems[n].get("median")]
    lines = ["**YADTQ ÷ peer** (median ÷ median; > 1 = YADTQ faster)", "",
             "| | " + " | ".join(t for t, _ in HEADLINE) + " |", "|---" * (len(HEADLINE) + 1) + "|"]
    for o in ours:
        for p in peers:
            cells = []
            for _, path in HEADLINE:
                a, b = systems[o]["median"].get(path), systems[p]["median"].get(path)
                ok = isinstance(a, int | float) and isinstance(b, int | float) and b
                cells.append(f"{a / b:.2f}×" if ok else "–")
            lines.append(f"| {o} ÷ {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def io_ratio_table(systems: dict[str, dict[str, Any]]) -> str:
    """Each YADTQ variant's I/O drain against the best peer's of the same run, and the targets."""
    path = "io_drain.drain_per_s"
    rate = {n: v for n, s in systems.items()
            if isinstance(v := (s.get("median") or {}).get(path), int | float) and v > 0}
    peers = {n: v for n, v in rate.items() if not n.startswith("yadtq")}
    lines = [f"**YADTQ ÷ best peer, I/O drain** (median ÷ median; targets: >= {IO_TARGET:,.0f}/s and "
             ">= 2× the best peer, 0 lost, 0 duplicated)", "",
             "| | YADTQ/s | best peer | its /s | ratio | targets met |", "|---|---|---|---|---|---|"]
    best = max(peers, key=lambda n: peers[n]) if peers else None
    for o in (n for n in rate if n.startswith("yadtq")):
        e = systems[o].get("exactly") or {}
        clean = bool(e) and e["lost"] == 0 and e["dup"] == 0 and e.get("unfinished_phases", 0) == 0
        ratio = rate[o] / peers[best] if best else None
        met = rate[o] >= IO_TARGET and clean and (ratio is None or ratio >= 2)
        lines.append(f"| {o} | {_fmt(rate[o])} | {best or '–'} | {_fmt(peers[best]) if best else '–'} "
                     f"| {f'{ratio:.2f}×' if ratio else '–'} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def exactly_table(systems: dict[str, dict[str, Any]]) -> str:
    late = any("late_results" in (s.get("exactly") or {}) for s in systems.values())
    lines = ["**Exactly-N** (every phase of every repeat: completions counted per task, stored "
             "results read back" + ("; late = stored after the last completion was counted, within "
                                    "the 2 s grace" if late else "") + ")", "",
             "| system | tasks | lost | duplicated | wrong/missing result | phases not finished |"
             + (" late results |" if late else ""),
             "|---|---|---|---|---|---|" + ("---|" if late else "")]
    for n, s in systems.items():
        e = s.get("exactly") or {}
        if e:
            lines.append(f"| {n} | {e['tasks']:,} | {e['lost']} | {e['dup']} | {e['wrong_result']} "
                         f"| {e.get('unfinished_phases', 0)} |"
                         + (f" {e.get('late_results', 0)} |" if late else ""))
    return "\n".join(lines)


def plot(systems: dict[str, dict[str, Any]], rates: list[int], path: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    low, mid = (rates[0], rates[min(1, len(rates) - 1)]) if rates else (100, 200)
    panels = [("bulk enqueue (tasks/s)", "warm_drain.enqueue_per_s"),
              ("drain, warm workers (tasks/s, first->last completion)", "warm_drain.drain_per_s"),
              ("burst, 1-by-1 submits (tasks/s)", "burst.tasks_per_s"),
              (f"p50 latency at {low}/s offered (ms)", f"rate_{low}.p50_ms"),
              (f"p99 latency at {mid}/s offered (ms)", f"rate_{mid}.p99_ms"),
              ("CPU s per 1,000 tasks (burst: workers+submitter)", "burst.cpu_per_1000")]
    names = [n for n in systems if systems[n].get("median")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, key) in zip(axes.flat, panels, strict=True):
        med = [systems[n]["median"] for n in names]
        vals = [v if isinstance(v := m.get(key), int | float) else 0 for m in med]
        if key.startswith("rate_"):
            vals = [v if v > 0 else float("nan") for v in vals]
        colors = ["tab:red" if n.startswith("yadtq") else "tab:blue" for n in names]
        ax.bar(names, vals, color=colors)
        if key.startswith("rate_") and any(v == v for v in vals):
            ax.set_yscale("log")  # one saturated system would flatten the others
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        for i, (v, m) in enumerate(zip(vals, med, strict=True)):
            label = "sat." if m.get(key) == "saturated" else _fmt(m.get(key))
            if key.startswith("rate_"):
                rate = int(key.split(".")[0].removeprefix("rate_"))
                got = m.get(f"rate_{rate}.achieved_per_s")
                label += " †" if isinstance(got, int | float) and got < 0.95 * rate else ""
            ax.text(i, v if v == v else 1, label, ha="center", va="bottom", fontsize=7)
    fig.suptitle("YADTQ vs peers: 2 worker processes each, same Redis, no-op ADD (medians; "
                 "sat. = rate above 1.5x the system's capacity, not run; † = rate not reached)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
