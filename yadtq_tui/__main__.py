"""``yadtq-tui``: the dashboard's command line.

Connection settings come from ``YADTQ_*`` environment variables, overridden by flags
(``--help`` lists both). Passwords are read from the environment or a file, never from a flag,
and are never printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from yadtq.settings import Settings, add_arguments

DESCRIPTION = """\
Live dashboard for YADTQ: submit tasks (type ADD 2 3 and press Enter), watch them move
queued -> in-progress -> completed/failed, see worker health, retry failed tasks and reset.
Press ? or F1 inside for every key; q or Ctrl+C exits."""

EPILOG = """\
Every setting also comes from its YADTQ_* environment variable (shown with each flag); a flag wins
over the variable. Secrets: put the Redis password in the URL through YADTQ_REDIS_URL or in a file
(--redis-password-file), and the Kafka SASL password in YADTQ_KAFKA_SASL_PASSWORD or
--kafka-sasl-password-file. They are never printed."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (documents every flag and its environment variable)."""
    parser = argparse.ArgumentParser(
        prog="yadtq-tui", description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refresh", type=float, default=0.5, metavar="SECONDS",
                        help="pause between the end of one refresh and the next (default 0.5)")
    parser.add_argument("--page-size", type=int, default=100, metavar="N",
                        help="how many of the newest tasks the table shows (default 100)")
    parser.add_argument("--log-file", metavar="PATH",
                        help="write warnings and errors of the client libraries to this file "
                             "(by default they are discarded: the screen is the dashboard's)")
    add_arguments(parser)
    return parser


def _quiet_logging(log_file: str | None) -> None:
    handler: logging.Handler = (logging.FileHandler(log_file) if log_file
                                else logging.NullHandler())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, build the client, run the dashboard."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.refresh <= 0:
        parser.error("--refresh must be positive")
    if not 1 <= ns.page_size <= 1000:
        parser.error("--page-size must be between 1 and 1000")
    try:
        settings = Settings.from_args(ns)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    _quiet_logging(ns.log_file)

    from yadtq import Client
    from yadtq_tui.app import make_app

    client = Client(settings)
    try:
        make_app(client, poll_interval=ns.refresh, page_size=ns.page_size).run()
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
