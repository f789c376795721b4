"""``yadtq-tui --serve``: the token rule over plain HTTP, then the dashboard in a real Chromium.

The token tests start the real server on a free port and talk to it with ``http.client``. The
browser test drives Debian's ``/usr/bin/chromium`` with Playwright (never a downloaded browser)
against the real Kafka and Redis and one real worker, through the token login. The browser client
draws on canvases, so the screen is read from xterm.js's buffer: an init script catches
textual-serve's client object (the one object with ``fitAddon``, ``terminal`` and
``websocket_url``) as the page builds it.

Without Chromium or Playwright the browser test is skipped locally and FAILS when ``CI=true``.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.ports import free_port
from yadtq import Client, Settings

pytestmark = [pytest.mark.tui]
T = TypeVar("T")
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the browser test fails (CI) or skips (locally) in its fixture
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = (ROOT / "docs" / "dashboard-browser.png" if os.environ.get("YADTQ_UPDATE_SCREENSHOT")
              else Path(os.environ.get("YADTQ_TEST_DIR", "/tmp")) / "dashboard-browser.png")
"""The README's picture is rewritten only with YADTQ_UPDATE_SCREENSHOT=1 (a run leaves the tree clean)."""
TOKEN = "t0k3n-" + "q7Zx9-RwM2kP4vLs"  # 22 characters; searched for in what the server emits
COLS, ROWS = 120, 40



class Served:
    """A ``yadtq-tui --serve`` process on a free port (``{port}`` in ``args`` becomes it), its
    output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "yadtq_tui", "--serve", "--port", str(self.port),
             *(a.format(port=self.port) for a in args)],
            env=dict(env), stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.output()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server not listening after 30 s: {self.output()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, path: str, headers: Mapping[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path, headers=dict(headers or {}))
        resp = conn.getresponse()
        resp.body = resp.read()  # type: ignore[attr-defined]
        conn.close()
        return resp

    def apps(self) -> list[int]:
        """Pids of the dashboards this server runs (its child processes)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> float:
        """SIGTERM, then the seconds it took to exit."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server ignored SIGTERM for 15 s") from None
        self.log.close()
        return time.monotonic() - start


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "YADTQ_WEB_TOKEN"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --- the token rule, without a browser -------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.org"])
def test_a_non_loopback_host_without_a_token_refuses_to_start(host: str) -> None:
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "yadtq_tui", "--serve", "--host", host,
                           "--port", str(port)], env=base_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--host {host} is reachable from other machines: refusing to serve without a token" \
        in proc.stderr
    assert "YADTQ_WEB_TOKEN or --token-file" in proc.stderr
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_short_token_or_a_missing_token_file_is_refused(tmp_path: Path) -> None:
    short = subprocess.run([sys.executable, "-m", "yadtq_tui", "--serve", "--host", "0.0.0.0",
                            "--port", str(free_port())], env={**base_env(), "YADTQ_WEB_TOKEN": "abc"},
                           cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert short.returncode == 2 and "at least 16 characters" in short.stderr
    assert "abc" not in short.stderr.split("error:")[1]
    missing = subprocess.run([sys.executable, "-m", "yadtq_tui", "--serve", "--host", "0.0.0.0",
                              "--token-file", str(tmp_path / "nope"), "--port", str(free_port())],
                             env=base_env(), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "--token-file: No such file or directory" in missing.stderr


def test_an_unspecified_address_needs_the_public_url() -> None:
    proc = subprocess.run([sys.executable, "-m", "yadtq_tui", "--serve", "--host", "0.0.0.0",
                           "--port", str(free_port())], env={**base_env(), "YADTQ_WEB_TOKEN": TOKEN},
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--host 0.0.0.0 needs --public-url" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr


def test_the_token_is_not_a_flag() -> None:
    proc = subprocess.run([sys.executable, "-m", "yadtq_tui", "--serve", "--token", TOKEN],
                          env=base_env(), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unrecognized arguments: --token" in proc.stderr


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Served]:
    """Listening on every address with the token from a file; browsers use 127.0.0.1."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    served = Served(["--host", "0.0.0.0", "--public-url", "http://127.0.0.1:{port}",
                     "--token-file", str(token_file)], base_env(),
                    tmp_path / "server.log")
    try:
        yield served
    finally:
        served.stop()


def test_without_the_token_every_path_gets_401_and_nothing_else(guarded: Served) -> None:
    for path in ["/", "/?fontsize=14", "/static/js/textual.js", "/static/css/xterm.css", "/ws",
                 "/download/x", "/?token=wrong-" + TOKEN[6:], "/?token="]:
        resp = guarded.request(path)
        assert (resp.status, resp.body) == (401, b"401: token required\n"), path  # type: ignore[attr-defined]
    for headers in [{"Cookie": "yadtq_token=" + TOKEN[:-1]}, {"Authorization": "Bearer nope"},
                    {"Authorization": TOKEN}]:
        assert guarded.request("/", headers).status == 401, headers


def test_the_token_once_in_the_url_becomes_a_cookie(guarded: Served) -> None:
    resp = guarded.request(f"/?token={TOKEN}&fontsize=14")
    assert resp.status == 302
    assert resp.getheader("Location") == "/?fontsize=14"
    cookie = resp.getheader("Set-Cookie") or ""
    assert cookie.startswith(f"yadtq_token={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie

    with_cookie = {"Cookie": f"yadtq_token={TOKEN}"}
    page = guarded.request("/?fontsize=14", with_cookie)
    assert page.status == 200
    html = page.body.decode()  # type: ignore[attr-defined]
    assert "textual.js" in html and f"ws://127.0.0.1:{guarded.port}/ws" in html
    assert TOKEN not in html
    script = guarded.request("/static/js/textual.js", with_cookie)
    assert script.status == 200 and TOKEN.encode() not in script.body  # type: ignore[attr-defined]
    assert guarded.request("/", {"Authorization": f"Bearer {TOKEN}"}).status == 200
    # a websocket from another site is refused even with the cookie
    evil = guarded.request("/ws", {**with_cookie, "Origin": "http://evil.example",
                                   "Connection": "Upgrade", "Upgrade": "websocket"})
    assert evil.status == 403

    assert guarded.stop() < 5
    log = guarded.output()
    assert '"GET /?token=***&fontsize=14 HTTP/1.1" 302' in log  # the access log is on, redacted
    assert TOKEN not in log


# --- a real browser ---------------------------------------------------------------------------

HOOK = """Object.defineProperty(Object.prototype, "fitAddon", {configurable: true,
  set(v) { Object.defineProperty(this, "fitAddon", {value: v, writable: true, configurable: true});
           if (this.terminal && "websocket_url" in this) window.__textual = this; }});"""
SCREEN = """() => { const t = window.__textual.terminal, b = t.buffer.active, rows = [];
  for (let y = 0; y < t.rows; y++) rows.push(b.getLine(y).translateToString(true, 0, t.cols));
  return rows.join("\\n"); }"""
ROW = r"^\s*[0-9a-f]{{8}}\s+ADD\s+{a} {b}\s+✔ completed\s+{sum}\s"


def screen(page: Any) -> str:
    return str(page.evaluate(f"({SCREEN})()"))


def wait_screen(page: Any, pattern: str, what: str, timeout: float = 30.0) -> str:
    """Until the terminal's text matches ``pattern`` (a regex, multiline)."""
    rx = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        if page.evaluate("() => window.__textual !== undefined && window.__textual.terminal !== undefined"):
            text = screen(page)
            if rx.search(text):
                return text
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; screen:\n{text}")


def open_dashboard(browser: Any, url: str) -> Any:
    """A new browser context (own cookies) with the page open and the dashboard drawn, pinned
    to COLS x ROWS whatever the font."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.add_init_script(HOOK)
    page.goto(url)
    wait_screen(page, r"Redis ● up", "the dashboard")
    page.evaluate(f"window.__textual.terminal.resize({COLS}, {ROWS})")
    page.locator(".xterm-helper-textarea").focus()
    return page


def submit(page: Any, a: int, b: int) -> str:
    page.keyboard.type(f"ADD {a} {b}")
    page.keyboard.press("Enter")
    return wait_screen(page, ROW.format(a=a, b=b, sum=a + b), f"ADD {a} {b} to complete with {a + b}")


def outside_the_form(page: Any, key: str, then: Callable[[], T]) -> T:
    """Escape (leaves the form), a pause, ``key``; returns ``then()``. Tried three times, with a
    longer pause each time: on a loaded machine the app may read ESC and the key together, which
    is Alt+key (nothing happens), or see the key while the form still has the focus (it is typed
    into the form, which this test does not use again)."""
    for pause in (0.4, 1.0, 2.0):
        page.keyboard.press("Escape")
        time.sleep(pause)
        page.keyboard.press(key)
        try:
            return then()
        except (AssertionError, PlaywrightTimeout):
            if pause == 2.0:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright."""
    ci = os.environ.get("CI", "").lower() == "true"
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing (apt-get install chromium; scripts/test.sh does it as root)"
    if reason is not None:
        if ci:
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as p:
        browser = p.chromium.launch(  # a failure to start is an error here, never a skip
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.integration
def test_the_dashboard_in_chromium(chromium: Any, real_settings: Settings, real_client: Client,
                                   workers: Any, tmp_path: Path) -> None:
    workers.start(1)
    workers.wait_alive(1)
    # on loopback a token is optional, but kept; an unclosed transport (a dashboard process the
    # server did not reap) is reported whenever the collector finds it, not only after the loop
    env = {**workers.env(), "YADTQ_WEB_TOKEN": TOKEN, "PYTHONWARNINGS": "always::ResourceWarning"}
    served = Served(["--host", "127.0.0.1", "--log-file", str(tmp_path / "apps.log")], env,
                    tmp_path / "server.log")
    try:
        started = time.monotonic()
        first = open_dashboard(chromium, f"{served.url}/?token={TOKEN}")
        wait_screen(first, r"Kafka ● up", "Kafka up")
        wait_screen(first, r"1 alive", "the worker alive")
        drawn = time.monotonic() - started
        text = submit(first, 2, 3)
        assert "Submitted ADD 2 3 as task" in text
        [task] = real_client.list()
        assert task.result == 5
        SCREENSHOT.parent.mkdir(exist_ok=True)
        first.locator(".xterm-screen").screenshot(path=str(SCREENSHOT))

        help_text = outside_the_form(first, "?", lambda: wait_screen(
            first, r"YADTQ dashboard · keys", "the help screen", timeout=10))
        assert "Everywhere" in help_text and "Dashboard (task table focused)" in help_text
        first.keyboard.press("Escape")
        wait_screen(first, r"\A(?![\s\S]*YADTQ dashboard · keys)", "the help screen to close")

        # a second session: its own dashboard process, the same data
        second = open_dashboard(chromium, f"{served.url}/?token={TOKEN}")
        wait_screen(second, ROW.format(a=2, b=3, sum=5), "the first task in the second tab")
        assert len(served.apps()) == 2
        for pid in served.apps():  # the served dashboards do not inherit the token
            assert TOKEN.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        first.context.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(served.apps()) != 1:
            time.sleep(0.1)
        assert len(served.apps()) == 1, "closing a tab did not end its dashboard"
        submit(second, 4, 5)
        assert sorted(t.result for t in real_client.list()) == [5, 9]
        assert all(p.poll() is None for p in workers.procs), "a worker died"

        # a third tab stays open while the server stops: its dashboard is ended and reaped
        third = open_dashboard(chromium, f"{served.url}/?token={TOKEN}")
        wait_screen(third, ROW.format(a=4, b=5, sum=9), "the second task in the third tab")
        apps = served.apps()
        assert len(apps) == 2

        # q ends the session; the page says so
        outside_the_form(second, "q", lambda: second.wait_for_selector("body.-closed",
                                                                       timeout=10_000))
        total = time.monotonic() - started
        print(f"dashboard drawn {drawn:.1f}s, whole browser test {total:.1f}s")
    finally:
        stop_s = served.stop()
    assert stop_s < 10
    assert not [pid for pid in apps if Path(f"/proc/{pid}").exists()], "a dashboard outlived the server"
    log = served.output()
    assert "Traceback" not in log and TOKEN not in log, log
    assert "ResourceWarning" not in log, log
    assert "GET /?token=*** HTTP/1.1\" 302" in log
