"""``yadtq``: the scripting CLI, mirroring the original REPL's commands.

    yadtq submit ADD 2 3          print the new task's id
    yadtq tasks [--state S]       Show-Tasks, newest first
    yadtq view ID                 View one task
    yadtq retry ID                run a failed task again (new attempt, same id)
    yadtq reset [--yes]           delete every YADTQ task (asks first)
    yadtq workers                 worker health from the heartbeats
    yadtq stats                   totals per state, throughput, service health

Read commands take ``--json``. Exit codes: 0 ok, 1 service unavailable, 2 invalid input,
3 no such task, 4 reset declined.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Any, TextIO

from yadtq.client import Client
from yadtq.errors import InvalidTask, ServiceUnavailable, TaskNotFound
from yadtq.loader import load_task_modules
from yadtq.models import Task, TaskState, WorkerInfo
from yadtq.settings import Settings, add_arguments
from yadtq.text import format_args, format_duration, format_timestamp, format_value, safe_text

EXIT_UNAVAILABLE, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_DECLINED = 1, 2, 3, 4


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yadtq", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--tasks", action="append", default=[], metavar="MODULE",
                        help="import MODULE (from the current directory or PYTHONPATH) so its task names "
                             "are known locally (repeatable, comma-separated); env YADTQ_TASKS")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="submit a task: yadtq submit ADD 2 3",
                       description="Submit a task: yadtq submit ADD 2 3 [--wait SECONDS]. Every "
                       "word after the task name is an argument, even one starting with '-' "
                       "(SUB 5 -3, ADD -Infinity 1 is then refused as not a number).")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="WORD",
                   help="task name then its arguments")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="wait for the task to finish and print its result (exit 5 if it failed)")

    p = sub.add_parser("tasks", help="list tasks, newest first (Show-Tasks)")
    p.add_argument("--state", choices=[s.value for s in TaskState])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("view", help="show one task (View)")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("retry", help="run a failed task again (a new attempt of the same task)")
    p.add_argument("task_id", metavar="ID")

    p = sub.add_parser("reset", help="delete every YADTQ task (only this prefix's keys)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")

    p = sub.add_parser("workers", help="workers and their health")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("stats", help="totals per state, throughput and service health")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, *, client: Client | None = None,
         stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if client is None:
            load_task_modules(args.tasks)
            client = Client(Settings.from_args(args))
        return _run(args, client, stdin or sys.stdin, out)
    except CliError as exc:
        print(f"yadtq: {safe_text(str(exc))}", file=err)
        return exc.code
    except InvalidTask as exc:
        print(f"yadtq: {safe_text(str(exc))}", file=err)
        return EXIT_INVALID
    except TaskNotFound as exc:
        print(f"yadtq: {safe_text(str(exc))}", file=err)
        return EXIT_NOT_FOUND
    except ServiceUnavailable as exc:
        print(f"yadtq: {safe_text(str(exc))}", file=err)
        return EXIT_UNAVAILABLE
    except (ValueError, OSError, ImportError) as exc:
        print(f"yadtq: {safe_text(str(exc))}", file=err)
        return EXIT_INVALID
    finally:
        if client is not None:
            client.close()


def _run(args: argparse.Namespace, client: Client, stdin: TextIO, out: TextIO) -> int:
    cmd = args.command
    if cmd == "submit":
        words, wait = _split_wait(args.words)
        if wait is not None:
            args.wait = wait
        if not words:
            raise CliError("submit needs a task: yadtq submit ADD 2 3", EXIT_INVALID)
        text = " ".join(_quote(w) for w in words)
        task_id = client.submit_text(text)
        if args.wait is None:
            print(task_id, file=out)
            return 0
        return _wait(client, task_id, args.wait, out)
    if cmd == "tasks":
        if args.limit < 0 or args.offset < 0:
            raise CliError("--limit and --offset must not be negative", EXIT_INVALID)
        state = TaskState(args.state) if args.state else None
        tasks = client.list(state, args.limit, args.offset, history=args.json)  # the table shows none
        if args.json:
            _json([task_json(t) for t in tasks], out)
        else:
            _print_tasks(tasks, out)
        return 0
    if cmd == "view":
        task = client.get(args.task_id)
        if args.json:
            _json(task_json(task), out)
        else:
            _print_task(task, out)
        return 0
    if cmd == "retry":
        print(client.retry(args.task_id), file=out)
        return 0
    if cmd == "reset":
        total = client.total()
        if not args.yes:
            if not stdin.isatty():
                raise CliError("reset needs confirmation: run it in a terminal or pass --yes",
                               EXIT_DECLINED)
            print(f"Delete all {total} tasks under '{client.settings.key_prefix}:'? "
                  "Workers and other Redis data are kept. [y/N] ", end="", file=out, flush=True)
            if stdin.readline().strip().lower() not in ("y", "yes"):
                raise CliError("reset cancelled; nothing was deleted", EXIT_DECLINED)
        print(f"deleted {client.reset()} tasks", file=out)
        return 0
    if cmd == "workers":
        workers = client.workers()
        if args.json:
            _json([worker_json(w) for w in workers], out)
        else:
            _print_workers(workers, out)
        return 0
    if cmd == "stats":
        counts = client.counts()
        rate = client.finished_per_second(60)
        health = client.health()
        data = {"counts": {s.value: n for s, n in counts.items()},
                "finished_last_minute": sum(rate), "redis_ok": health.redis_ok,
                "kafka_ok": health.kafka_ok, "redis_error": health.redis_error,
                "kafka_error": health.kafka_error}
        if args.json:
            _json(data, out)
        else:
            for s, n in counts.items():
                print(f"{s.value:<12} {n}", file=out)
            print(f"finished in the last minute: {sum(rate)}", file=out)
            print(f"redis: {'ok' if health.redis_ok else safe_text(health.redis_error or '')}", file=out)
            print(f"kafka: {'ok' if health.kafka_ok else safe_text(health.kafka_error or '')}", file=out)
        return 0
    raise CliError(f"unknown command {cmd}", EXIT_INVALID)  # pragma: no cover


def _split_wait(words: list[str]) -> tuple[list[str], float | None]:
    """Take a trailing ``--wait SECONDS`` out of the task's words (they are otherwise literal)."""
    if len(words) >= 2 and words[-2] == "--wait":
        try:
            return words[:-2], float(words[-1])
        except ValueError:
            raise CliError(f"--wait needs a number of seconds, got {words[-1][:40]!r}",
                           EXIT_INVALID) from None
    if words and words[0] == "--":
        return words[1:], None
    return words, None


def _quote(word: str) -> str:
    """Keep each shell word one word when re-joined for the (shlex) parser."""
    return shlex.quote(word)


def _wait(client: Client, task_id: str, seconds: float, out: TextIO) -> int:
    deadline = time.monotonic() + seconds
    while True:
        task = client.get(task_id)
        if task.state is TaskState.COMPLETED:
            print(format_value(task.result), file=out)
            return 0
        if task.state is TaskState.FAILED:
            raise CliError(f"task {task_id} failed: {task.error}", 5)
        if time.monotonic() > deadline:
            raise CliError(f"task {task_id} still {task.state} after {seconds:g} s", 6)
        time.sleep(0.05)


def task_json(t: Task) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "args": list(t.args), "state": t.state.value,
            "result": t.result, "error": t.error, "attempt": t.attempt, "worker": t.worker,
            "created_at": t.created_at, "updated_at": t.updated_at,
            "history": [{"state": h.state.value, "at": h.at, "worker": h.worker,
                         "attempt": h.attempt, "note": h.note} for h in t.history]}


def worker_json(w: WorkerInfo) -> dict[str, Any]:
    return {"id": w.id, "host": w.host, "pid": w.pid, "status": w.status.value,
            "current_task": w.current_task, "done": w.done, "failed": w.failed,
            "last_beat": w.last_beat, "uptime": round(w.uptime(), 1)}


def _json(data: Any, out: TextIO) -> None:
    # ensure_ascii keeps control characters escaped (\u001b), so JSON output is terminal-safe too
    print(json.dumps(data, indent=2), file=out)


def _ts(t: float) -> str:
    return format_timestamp(t, UTC, zone=True)


def _print_tasks(tasks: list[Task], out: TextIO) -> None:
    if not tasks:
        print("no tasks", file=out)
        return
    rows = [("ID", "TASK", "ARGS", "STATE", "RESULT/ERROR", "WORKER", "TRY", "AGE")]
    now = time.time()
    for t in tasks:
        outcome = format_value(t.result) if t.state is TaskState.COMPLETED else safe_text(t.error or "")
        rows.append((t.id, safe_text(t.name, 16), format_args(t.args, 24), t.state.value,
                     safe_text(outcome, 30), safe_text(t.worker or "", 20), str(t.attempt),
                     format_duration(t.age(now))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _print_task(t: Task, out: TextIO) -> None:
    fields = [("id", t.id), ("task", safe_text(t.name)), ("args", format_args(t.args)),
              ("state", t.state.value), ("result", format_value(t.result)),
              ("error", safe_text(t.error or "")), ("attempts", str(t.attempt)),
              ("worker", safe_text(t.worker or "")), ("created", _ts(t.created_at)),
              ("updated", _ts(t.updated_at))]
    for k, v in fields:
        print(f"{k + ':':<10} {v}", file=out)
    print("history:", file=out)
    for h in t.history:
        extra = f" by {safe_text(h.worker)}" if h.worker else ""
        note = f" ({safe_text(h.note)})" if h.note else ""
        print(f"  {_ts(h.at)}  {h.state.value:<12} attempt {h.attempt}{extra}{note}", file=out)


def _print_workers(workers: list[WorkerInfo], out: TextIO) -> None:
    if not workers:
        print("no workers", file=out)
        return
    rows = [("WORKER", "STATUS", "RUNNING", "DONE", "FAILED", "UPTIME")]
    for w in workers:
        rows.append((safe_text(w.id, 40), w.status.value, safe_text(w.current_task or "-", 32),
                     str(w.done), str(w.failed), format_duration(w.uptime())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip(), file=out)


if __name__ == "__main__":
    sys.exit(main())
