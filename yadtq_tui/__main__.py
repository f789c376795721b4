"""``yadtq-tui``: the dashboard's command line.

Connection settings come from ``YADTQ_*`` environment variables, overridden by flags
(``--help`` lists both). Passwords are read from the environment or a file, never from a flag,
and are never printed.
"""

from __future__ import annotations

import argparse
import logging
import os
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
--kafka-sasl-password-file. They are never printed.

In a browser: --serve serves this dashboard over HTTP (one dashboard process per browser tab). On a
host other than loopback it refuses to start without a token, from YADTQ_WEB_TOKEN or --token-file;
the browser opens http://HOST:PORT/?token=TOKEN once and then holds it in a cookie."""

SERVE_OPTIONS = ("--host", "--port", "--public-url", "--token-file")


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
    web = parser.add_argument_group("in a browser")
    web.add_argument("--serve", action="store_true",
                     help="serve the dashboard to browsers instead of drawing it here")
    web.add_argument("--host", default="127.0.0.1",
                     help="address to listen on with --serve (default 127.0.0.1; any other needs "
                          "a token)")
    web.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000)")
    web.add_argument("--public-url", metavar="URL",
                     help="the address browsers use, if not http://HOST:PORT (e.g. behind a proxy, "
                          "or with --host 0.0.0.0)")
    web.add_argument("--token-file", metavar="PATH",
                     help="file holding the access token for --serve (else YADTQ_WEB_TOKEN)")
    add_arguments(parser)
    return parser


def _app_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without the --serve options: what each served dashboard is started with."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--serve" or arg.startswith(tuple(o + "=" for o in SERVE_OPTIONS)):
            continue
        elif arg in SERVE_OPTIONS:
            skip = True
        else:
            out.append(arg)
    return out


def _web_token(parser: argparse.ArgumentParser, token_file: str | None, host: str) -> str | None:
    """The token from --token-file or YADTQ_WEB_TOKEN (removed from the environment the served
    dashboards inherit); exits with status 2 when a non-loopback host has none."""
    from yadtq_tui.web import is_loopback

    env_token = os.environ.pop("YADTQ_WEB_TOKEN", None)
    token = env_token
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            parser.error(f"--token-file: {exc.strerror}: {token_file}")
    if token is not None and not token.strip():
        token = None
    if token is not None and len(token) < 16:
        parser.error("the web token must be at least 16 characters "
                     "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")
    if token is None and not is_loopback(host):
        parser.error(f"--host {host} is reachable from other machines: refusing to serve without a "
                     "token; set YADTQ_WEB_TOKEN or --token-file (or serve on 127.0.0.1)")
    return token


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
    if ns.serve:
        if not 0 < ns.port < 65536:
            parser.error("--port must be between 1 and 65535")
        token = _web_token(parser, ns.token_file, ns.host)
        if ns.host in ("0.0.0.0", "::", "") and not ns.public_url:
            parser.error(f"--host {ns.host} needs --public-url (the address browsers use, e.g. "
                         f"http://myhost:{ns.port}): the page links to it")
        from yadtq_tui.web import serve

        try:
            serve(_app_argv(sys.argv[1:] if argv is None else argv), host=ns.host, port=ns.port,
                  token=token, public_url=ns.public_url)
        except OSError as exc:
            parser.exit(1, f"yadtq-tui: cannot serve on {ns.host}:{ns.port}: {exc.strerror}\n")
        return 0
    _quiet_logging(ns.log_file)

    from yadtq import Client
    from yadtq_tui.app import make_app
    from yadtq_tui.hangup import watch

    watch(sys.__stdout__.fileno() if sys.__stdout__ is not None else -1)
    client = Client(settings)
    try:
        make_app(client, poll_interval=ns.refresh, page_size=ns.page_size).run()
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
