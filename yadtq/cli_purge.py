"""``yadtq purge``: delete finished tasks older than a duration (``yadtq.retention``). A command of
``yadtq.cli`` (its ``COMMANDS`` table), in its own module; a bad duration or state is a
``ValueError``, which the CLI turns into exit code 2."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from yadtq.retention import FINAL_STATES, final_state, parse_duration

if TYPE_CHECKING:
    from yadtq.cli import Context

SYNOPSIS = "purge --older-than AGE [--state S]"
SUMMARY = "delete finished tasks that finished more than AGE ago (30m, 12h, 1d, 2w)"
DESCRIPTION = ("Delete finished tasks (" + ", ".join(s.value for s in FINAL_STATES) + ") that "
               "finished more than AGE ago, with their index entries and counts, under this key "
               "prefix only, in batches. Tasks not finished are never deleted. Prints how many.")


def cmd_purge(ctx: Context) -> int:
    older_than = parse_duration(ctx.args.older_than)
    state = final_state(ctx.args.state) if ctx.args.state else None
    removed = ctx.client.purge(older_than, state)
    print(f"purged {removed} tasks", file=ctx.out)
    return 0


def purge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--older-than", required=True, metavar="AGE",
                   help="seconds, or a number with a unit: s, m, h, d, w (e.g. 1d, 1h30m)")
    p.add_argument("--state", metavar="S",
                   help="only this final state: " + ", ".join(s.value for s in FINAL_STATES))
