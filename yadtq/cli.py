"""``yadtq``: the scripting CLI. One handler per command (``COMMANDS``), one table from exceptions to
exit codes (``EXIT_CODES``); ``yadtq --help`` is built from both and README.md's CLI section is
checked against them (tests/unit/test_cli_docs.py)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from yadtq import __version__
from yadtq.cli_output import (
    print_json,
    print_repairs,
    print_schedules,
    print_task,
    print_tasks,
    print_workers,
    repairs_json,
    schedule_json,
    task_json,
    worker_json,
)
from yadtq.cli_purge import DESCRIPTION as PURGE_DESCRIPTION
from yadtq.cli_purge import SUMMARY as PURGE_SUMMARY
from yadtq.cli_purge import SYNOPSIS as PURGE_SYNOPSIS
from yadtq.cli_purge import cmd_purge, purge_arguments
from yadtq.cli_wait import DESCRIPTION as WAIT_DESCRIPTION
from yadtq.cli_wait import SUMMARY as WAIT_SUMMARY
from yadtq.cli_wait import SYNOPSIS as WAIT_SYNOPSIS
from yadtq.cli_wait import cmd_wait, wait_arguments, wait_result
from yadtq.client import Client
from yadtq.errors import (
    InvalidTask,
    ServiceUnavailable,
    StoreError,
    TaskFinished,
    TaskNotFound,
    YadtqError,
)
from yadtq.ids import ID_HELP
from yadtq.loader import load_task_modules
from yadtq.models import TaskState
from yadtq.settings import Settings, add_arguments
from yadtq.text import safe_text
from yadtq.when import split_submit_words

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_DECLINED = 4
EXIT_TASK_FAILED = 5
EXIT_TIMED_OUT = 6
EXIT_REFUSED = 7
EXIT_FINISHED = 8

EXIT_MEANINGS = {
    EXIT_OK: "ok",
    EXIT_UNAVAILABLE: "Redis or Kafka unavailable",
    EXIT_INVALID: "invalid input",
    EXIT_NOT_FOUND: "no such task",
    EXIT_DECLINED: "reset declined",
    EXIT_TASK_FAILED: "task failed or was cancelled (wait, submit --wait)",
    EXIT_TIMED_OUT: "timed out (wait, submit --wait)",
    EXIT_REFUSED: "Redis refused the request",
    EXIT_FINISHED: "task already finished (cancel)",
}
"""Every exit code and what it means (``yadtq --help`` and README.md list these)."""

EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidTask, EXIT_INVALID),
    (TaskNotFound, EXIT_NOT_FOUND),
    (TaskFinished, EXIT_FINISHED),
    (ServiceUnavailable, EXIT_UNAVAILABLE),
    (StoreError, EXIT_REFUSED),  # reachable, but refusing for good (WRONGTYPE, OOM, ...)
    (YadtqError, EXIT_UNAVAILABLE),  # any other refusal by Redis or Kafka
    (ValueError, EXIT_INVALID),  # bad settings (a malformed YADTQ_* value)
    (OSError, EXIT_INVALID),  # a password file that cannot be read
    (ImportError, EXIT_INVALID),  # a --tasks module that cannot be imported
)
"""Exceptions a command may raise and the exit code each becomes; the first match wins."""

SHELLS = ("bash", "zsh", "fish")


class CliError(Exception):
    """A refusal by the CLI itself, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


_EXPECTED: tuple[type[BaseException], ...] = (CliError, *(kind for kind, _code in EXIT_CODES))
"""Every exception a command ends with on purpose (anything else is a bug: a traceback)."""


def exit_code(exc: BaseException) -> int | None:
    """The exit code for ``exc`` (``None``: not an error the CLI expects)."""
    if isinstance(exc, CliError):
        return exc.code
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), None)


@dataclass
class Context:
    """What a command handler gets: the parsed arguments, the streams and, on first use, a client."""

    args: argparse.Namespace
    stdin: TextIO
    out: TextIO
    client_factory: Callable[[], Client]
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


Handler = Callable[[Context], int]


@dataclass(frozen=True)
class Command:
    """One subcommand: its README synopsis, its one-line summary and its handler."""

    name: str
    synopsis: str
    summary: str
    handler: Handler
    add_arguments: Callable[[argparse.ArgumentParser], object] = lambda p: None
    description: str | None = None


# ---------------------------------------------------------------- handlers
def cmd_submit(ctx: Context) -> int:
    words, trailing = split_submit_words(ctx.args.words)
    wait = trailing.get("--wait", ctx.args.wait)
    delay, eta = trailing.get("--in", ctx.args.delay), trailing.get("--at", ctx.args.eta)
    queue, priority = trailing.get("--queue", ctx.args.queue), trailing.get("--priority", ctx.args.priority)
    if not words:
        raise CliError("submit needs a task: yadtq submit ADD 2 3", EXIT_INVALID)
    task_id = ctx.client.submit_text(" ".join(shlex.quote(w) for w in words), delay=delay, eta=eta,
                                     queue=queue, priority=priority)
    if wait is None:
        print(task_id, file=ctx.out)
        return EXIT_OK
    return wait_result(ctx.client, task_id, wait, ctx.out)


def cmd_tasks(ctx: Context) -> int:
    args = ctx.args
    if args.limit < 0 or args.offset < 0:
        raise CliError("--limit and --offset must not be negative", EXIT_INVALID)
    state = TaskState(args.state) if args.state else None
    tasks = ctx.client.list(state, args.limit, args.offset, history=args.json)  # the table shows none
    if args.json:
        print_json([task_json(t) for t in tasks], ctx.out)
    else:
        print_tasks(tasks, ctx.out)
    return EXIT_OK


def cmd_view(ctx: Context) -> int:
    task = ctx.client.get(ctx.client.expand_id(ctx.args.task_id))
    if ctx.args.json:
        print_json(task_json(task), ctx.out)
    else:
        print_task(task, ctx.out)
    return EXIT_OK


def cmd_retry(ctx: Context) -> int:
    print(ctx.client.retry(ctx.client.expand_id(ctx.args.task_id)), file=ctx.out)
    return EXIT_OK


def cmd_cancel(ctx: Context) -> int:
    result = ctx.client.cancel(ctx.client.expand_id(ctx.args.task_id))
    print(f"cancelling {result.task_id}: it is running; its worker interrupts it" if result.running
          else f"cancelled {result.task_id}: it was {result.previous.value}; it will not start",
          file=ctx.out)
    return EXIT_OK


def cmd_reset(ctx: Context) -> int:
    client, out = ctx.client, ctx.out
    total = client.total()
    if not ctx.args.yes:
        if not ctx.stdin.isatty():
            raise CliError("reset needs confirmation: run it in a terminal or pass --yes",
                           EXIT_DECLINED)
        print(f"Delete all {total} tasks under '{client.settings.key_prefix}:'? "
              "Workers and other Redis data are kept. [y/N] ", end="", file=out, flush=True)
        if ctx.stdin.readline().strip().lower() not in ("y", "yes"):
            raise CliError("reset cancelled; nothing was deleted", EXIT_DECLINED)
    print(f"deleted {client.reset()} tasks", file=out)
    return EXIT_OK


def cmd_workers(ctx: Context) -> int:
    workers = ctx.client.workers()
    if ctx.args.json:
        print_json([worker_json(w) for w in workers], ctx.out)
    else:
        print_workers(workers, ctx.out)
    return EXIT_OK


def cmd_stats(ctx: Context) -> int:
    client, out = ctx.client, ctx.out
    counts = client.counts()
    finished = sum(client.finished_per_second(60))
    repairs = client.repairs()
    health = client.health()
    if ctx.args.json:
        print_json({"counts": {s.value: n for s, n in counts.items()},
                    "finished_last_minute": finished, "repairs": repairs_json(repairs),
                    "redis_ok": health.redis_ok, "kafka_ok": health.kafka_ok,
                    "redis_error": health.redis_error, "kafka_error": health.kafka_error}, out)
        return EXIT_OK
    for s, n in counts.items():
        print(f"{s.value:<12} {n}", file=out)
    print(f"finished in the last minute: {finished}", file=out)
    print_repairs(repairs, out)
    print(f"redis: {'ok' if health.redis_ok else safe_text(health.redis_error or '')}", file=out)
    print(f"kafka: {'ok' if health.kafka_ok else safe_text(health.kafka_error or '')}", file=out)
    return EXIT_OK


def cmd_schedules(ctx: Context) -> int:
    schedules = ctx.client.schedules()
    if ctx.args.json:
        print_json([schedule_json(s) for s in schedules], ctx.out)
    else:
        print_schedules(schedules, ctx.out)
    return EXIT_OK


def cmd_completion(ctx: Context) -> int:
    import shtab  # only this command needs it

    print(shtab.complete(build_parser(), shell=ctx.args.shell), file=ctx.out)
    return EXIT_OK


# ---------------------------------------------------------------- arguments per command
def _submit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="WORD", help="task name then its arguments")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help=f"wait for the task to finish and print its result (exit {EXIT_TASK_FAILED} "
                        f"if it failed, {EXIT_TIMED_OUT} if it is not done in time)")
    p.add_argument("--in", dest="delay", metavar="DURATION", help="run it in 30 (s), 30s, 5m, 2h, 1d")
    p.add_argument("--at", dest="eta", metavar="TIME", help="run it at 2026-12-01T09:00 (local time)")
    p.add_argument("--queue", metavar="NAME", help="its queue (default: the task's own, else default)")
    p.add_argument("--priority", help="high, normal or low (default: the task's own, else normal)")


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def _tasks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", choices=[s.value for s in TaskState], help="only tasks in this state")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N tasks (default 20)")
    p.add_argument("--offset", type=int, default=0, metavar="N", help="skip the N newest first")
    _json_flag(p)


def _id_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_id", metavar="ID", help=ID_HELP)


def _view_arguments(p: argparse.ArgumentParser) -> None:
    _id_arguments(p)
    _json_flag(p)


COMMANDS = (
    Command("submit", "submit ADD 2 3 [--in 30s | --at TIME] [--queue Q] [--priority P] [--wait S]",
            "submit; prints only the id (with --wait, the result)", cmd_submit, _submit_arguments,
            "Submit a task: yadtq submit ADD 2 3 [--in 30s | --at 2026-12-01T09:00] [--wait S]. "
            "Every word after the task name is an argument, even one starting with '-' (SUB 5 -3), "
            "but for trailing --in, --at, --queue, --priority, --wait; a delayed one waits 'scheduled'."),
    Command("tasks", "tasks [--state S] [--limit N] [--offset N] [--json]",
            "Show-Tasks, newest first", cmd_tasks, _tasks_arguments),
    Command("view", "view ID [--json]",
            "View: arguments, result, error, attempts, every state change", cmd_view, _view_arguments),
    Command("wait", WAIT_SYNOPSIS, WAIT_SUMMARY, cmd_wait, wait_arguments, WAIT_DESCRIPTION),
    Command("retry", "retry ID", "re-run a failed task as a new attempt of the same task",
            cmd_retry, _id_arguments),
    Command("cancel", "cancel ID", "cancel a queued, scheduled or running task: it ends cancelled",
            cmd_cancel, _id_arguments,
            "A queued or scheduled task never starts; a running one is interrupted by its worker "
            "within about a second (one that ignores it: its worker restarts after stuck_grace); "
            f"never retried. A finished task is an error (exit {EXIT_FINISHED}), nothing changes."),
    Command("reset", "reset [--yes]",
            "delete every YADTQ task; asks first (refuses without a terminal unless --yes)",
            cmd_reset, lambda p: p.add_argument("--yes", "-y", action="store_true",
                                                      help="do not ask"),
            "Delete every task under this key prefix; workers and other Redis data are kept."),
    Command("purge", PURGE_SYNOPSIS, PURGE_SUMMARY, cmd_purge, purge_arguments, PURGE_DESCRIPTION),
    Command("workers", "workers [--json]",
            "workers: alive / stalled (and why) / late / dead, running task, done, failed, uptime",
            cmd_workers, _json_flag),
    Command("stats", "stats [--json]",
            "totals per state, completions in the last minute, repairs, Redis/Kafka health",
            cmd_stats,
            _json_flag),
    Command("schedules", "schedules [--json]",
            "periodic schedules: task, cron or interval, next run, last run (task id and state)",
            cmd_schedules, _json_flag),
    Command("completion", "completion bash|zsh|fish",
            "print a shell completion script (bash, zsh or fish)", cmd_completion,
            lambda p: p.add_argument("shell", choices=SHELLS),
            "Print a completion script for the shell. bash: eval \"$(yadtq completion bash)\" in "
            "~/.bashrc; zsh: yadtq completion zsh > a directory on $fpath as _yadtq; fish: "
            "yadtq completion fish > ~/.config/fish/completions/yadtq.fish"),
)
"""The subcommands, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    synopses = "\n".join(f"  yadtq {c.synopsis}" for c in COMMANDS)
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_MEANINGS.items())
    parser = argparse.ArgumentParser(
        prog="yadtq", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Submit YADTQ tasks and inspect tasks and workers.\n\n{synopses}\n\n"
                    "Read commands take --json. Errors are one line on stderr.",
        epilog=f"exit codes:\n{codes}")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_arguments(parser)
    parser.add_argument("--tasks", action="append", default=[], metavar="MODULE",
                        help="import MODULE (from the current directory or PYTHONPATH) so its task "
                             "names are known locally (repeatable, comma-separated); env YADTQ_TASKS")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.summary,
                           description=command.description or command.summary)
        command.add_arguments(p)
        p.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None, *, client: Client | None = None,
         stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command; returns its exit code (``EXIT_MEANINGS``). ``client`` replaces the one
    built from the settings (tests); the task modules are then not loaded either."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return int(exc.code or 0)

    def make_client() -> Client:
        if client is not None:
            return client
        load_task_modules(args.tasks)
        return Client(Settings.from_args(args))

    ctx = Context(args, stdin or sys.stdin, out, make_client)
    handler: Handler = args.handler
    try:
        return handler(ctx)
    except _EXPECTED as exc:
        code = exit_code(exc)
        assert code is not None  # every class caught here has its exit code
        print(f"yadtq: {safe_text(str(exc))}", file=err)
        return code
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
