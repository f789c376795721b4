"""``yadtq-tui --serve``: the dashboard in a browser, through textual-serve.

Each browser tab gets its own dashboard process (textual-serve starts the command once per
websocket). This module is the only one importing ``textual_serve`` and ``aiohttp``.

Access control: a token, when set, is checked on every request (page, static files, websocket,
downloads) by an aiohttp middleware in front of textual-serve. The browser presents it once as
``/?token=...``; the server answers with a redirect that drops it from the URL and sets an HttpOnly
cookie, which then covers everything the page loads. Scripts may send ``Authorization: Bearer``.
The token never reaches the page, the served apps' environment or the log.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import shlex
import shutil
import sys
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve import server as textual_server
from textual_serve.app_service import AppService
from textual_serve.server import Server

COOKIE = "yadtq_token"
EXIT_WAIT = 5.0
"""Seconds a dashboard process gets to exit after its session ended, before it is killed."""
DENIED = "401: token required\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``0.0.0.0``, ``::``, any
    hostname other than ``localhost``: reachable from elsewhere)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedactToken(logging.Filter):
    """Replaces ``token=...`` in log records (the access log prints request lines)."""

    PATTERN = re.compile(r"token=[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.PATTERN.sub("token=***", record.getMessage()), ()
        return True


class AppSession(AppService):
    """One browser tab's dashboard process, reaped while the event loop still runs.

    textual-serve neither closes the process's stdin nor waits for it, so the subprocess transport
    is left to the garbage collector, which may run after the loop has closed: "RuntimeError: Event
    loop is closed" tracebacks at shutdown (seen in CI; cpython#114177). A session here closes
    stdin and waits for the process when its output ends; the server ends what is left before the
    loop closes (:meth:`WebServer.on_cleanup`).
    """

    running: set[AppSession] = set()
    """The sessions of this process's one server whose process is not reaped yet."""

    process: Process | None = None
    reaping: asyncio.Future[None] | None = None

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        self.process = await super()._open_app_process(width, height)
        AppSession.running.add(self)
        return self.process

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await asyncio.shield(self.reap())

    def reap(self) -> asyncio.Future[None]:
        """Reaps the process once, however many ask."""
        if self.reaping is None:
            self.reaping = asyncio.ensure_future(self._reap())
        return self.reaping

    async def _reap(self) -> None:
        """Closes stdin, waits up to EXIT_WAIT s for the exit (then kills); the transport closes
        once the process is gone and its pipes are closed."""
        process = self.process
        try:
            if process is None:
                return
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), EXIT_WAIT)
            except TimeoutError:
                process.kill()
                await process.wait()
        finally:
            AppSession.running.discard(self)


class WebServer(Server):
    """textual-serve's server with a token check and a prompt shutdown.

    ``public_url`` must be the origin the browser uses: the page embeds absolute URLs built from
    it, and the cookie is only sent to that host.
    """

    def __init__(self, command: str, *, token: str | None, **kwargs: object) -> None:
        super().__init__(command, **kwargs)  # type: ignore[arg-type]
        self.token = token
        parts = urlsplit(self.public_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._ws_transports: set[asyncio.BaseTransport] = set()

    def _valid(self, presented: str | None) -> bool:
        return (self.token is not None and presented is not None
                and hmac.compare_digest(presented.encode(), self.token.encode()))

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuses requests without the token; turns ``/?token=`` into a cookie."""
        if self.token is not None:
            if request.path == "/ws" and request.headers.get("Origin", self.origin) != self.origin:
                raise web.HTTPForbidden(text="403: forbidden\n")  # a cross-site websocket
            if request.path == "/" and self._valid(request.query.get("token")):
                rest = [(k, v) for k, v in request.query.items() if k != "token"]
                found = web.HTTPFound(str(request.rel_url.with_query(rest)))
                found.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/",
                                 secure=self.public_url.startswith("https:"))
                raise found
            auth = request.headers.get("Authorization", "")
            bearer = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            if not (self._valid(request.cookies.get(COOKIE)) or self._valid(bearer)):
                raise web.HTTPUnauthorized(text=DENIED)
        transport = request.transport
        if request.path != "/ws" or transport is None:
            return await handler(request)
        self._ws_transports.add(transport)
        try:
            return await handler(request)
        finally:
            self._ws_transports.discard(transport)

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard)  # allowed until startup freezes the app
        app.on_cleanup.append(self.on_cleanup)
        return app

    def initialize_logging(self) -> None:
        """Plain log lines on stderr, with any token redacted."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactToken())
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

    async def on_startup(self, app: web.Application) -> None:
        login = "/?token=<your token>" if self.token else "/"
        print(f"YADTQ dashboard: open {self.public_url}{login}  (Ctrl+C stops)", flush=True)

    async def on_shutdown(self, app: web.Application) -> None:
        """Closes open websockets, else aiohttp waits for their heartbeat (~23 s)."""
        for transport in list(self._ws_transports):
            transport.close()

    async def on_cleanup(self, app: web.Application) -> None:
        """Ends the dashboards whose session outlived the websockets, before the loop closes."""
        sessions = list(AppSession.running)
        for session in sessions:
            if session.process is not None and session.process.returncode is None:
                session.process.terminate()
        await asyncio.gather(*(session.reap() for session in sessions))


def app_command(app_argv: Sequence[str]) -> str:
    """The shell command textual-serve runs per browser tab: this Python's ``yadtq_tui`` with
    ``app_argv``, under ``setpriv --pdeathsig TERM`` (when present) so it ends with the server."""
    argv = [sys.executable, "-m", "yadtq_tui", *app_argv]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        argv = [setpriv, "--pdeathsig", "TERM", *argv]
    return "exec " + shlex.join(argv)


def serve(app_argv: Sequence[str], *, host: str, port: int, token: str | None,
          public_url: str | None = None) -> None:
    """Serves the dashboard (run with ``app_argv``) until SIGINT or SIGTERM."""
    # textual-serve's handle_websocket builds the class by its module-level name
    textual_server.AppService = AppSession  # type: ignore[attr-defined]
    server = WebServer(app_command(app_argv), host=host, port=port, title="YADTQ",
                       public_url=public_url, token=token)
    server.serve()
