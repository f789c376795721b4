"""``yadtq wait ID`` and ``yadtq submit --wait``: block until a task is final, print its result. A
command of ``yadtq.cli`` (its ``COMMANDS`` table), in its own module. Woken by the workers'
announcement (``Client.wait``), not by polling. Exit codes: 0 completed, ``EXIT_TASK_FAILED``
failed or cancelled (or an unreadable record), ``EXIT_TIMED_OUT`` not final in time, and the CLI's
usual ones (no such task, Redis unavailable)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from yadtq.cli_output import print_json, task_json
from yadtq.ids import ID_HELP
from yadtq.models import TaskState
from yadtq.text import format_value

if TYPE_CHECKING:
    from yadtq.cli import Context
    from yadtq.client import Client

SYNOPSIS = "wait ID [--timeout S] [--json]"
SUMMARY = "wait until a task is completed, failed or cancelled; print its result"
DESCRIPTION = ("Block until the task is final and print its result (with --json: the whole task, "
               "as view --json). Exit 0 if it completed, 5 if it failed or was cancelled, 6 if it "
               "is not final within --timeout seconds (default: no limit), 3 if there is no such task.")


def cmd_wait(ctx: Context) -> int:
    timeout = ctx.args.timeout
    if timeout is not None and timeout < 0:
        from yadtq.cli import EXIT_INVALID, CliError

        raise CliError("--timeout must not be negative", EXIT_INVALID)
    return wait_result(ctx.client, ctx.client.expand_id(ctx.args.task_id), timeout, ctx.out,
                       as_json=ctx.args.json)


def wait_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_id", metavar="ID", help=ID_HELP)
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="give up after this many seconds (exit 6); default: wait as long as it takes")
    p.add_argument("--json", action="store_true", help="print the final task as JSON")


def wait_result(client: Client, task_id: str, seconds: float | None, out: TextIO,
                as_json: bool = False) -> int:
    """Wait for ``task_id``, print its result (or the task as JSON); the exit code of its end."""
    from yadtq.cli import EXIT_OK, EXIT_TASK_FAILED, EXIT_TIMED_OUT, CliError

    try:
        task = client.wait(task_id, timeout=seconds)
    except TimeoutError as exc:
        raise CliError(str(exc), EXIT_TIMED_OUT) from None
    if as_json:
        print_json(task_json(task), out)
    failure = (f"task {task_id} is invalid: {task.problem}" if task.problem is not None
               else f"task {task_id} failed: {task.error}" if task.state is TaskState.FAILED
               else f"task {task_id} was cancelled" if task.state is TaskState.CANCELLED
               else None)
    if failure is not None:
        raise CliError(failure, EXIT_TASK_FAILED)
    if not as_json:
        print(format_value(task.result), file=out)
    return EXIT_OK
