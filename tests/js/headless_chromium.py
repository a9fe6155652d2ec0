"""A small driver for headless Chromium over the Chrome DevTools Protocol, for the prompt-box browser test.

Only what the test needs: open a page, evaluate JavaScript, send real key events and take a screenshot. It speaks
CDP through the `websocket-client` package (no browser download, unlike playwright's own browsers), and serves
files from a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# The flags a root user in a container needs, plus everything that would reach the network turned off.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--disable-extensions", "--force-device-scale-factor=1", "--hide-scrollbars", "--mute-audio",
)
CTRL, SHIFT = 2, 8  # CDP modifier bits
_KEY_CODES = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, "z": 90}


class BrowserError(RuntimeError):
    """The browser did not start or a page script failed."""


class HeadlessChromium:
    """One Chromium process with one page, driven synchronously. Use as a context manager."""

    def __init__(self, binary: str = CHROMIUM, *, width: int = 900, height: int = 420, timeout: float = 20.0):
        import websocket  # websocket-client; imported here so test modules can skip cleanly without it

        self._websocket = websocket
        self.binary, self.width, self.height, self.timeout = binary, width, height, timeout
        self._profile = tempfile.mkdtemp(prefix="tinybreaker-chromium-")
        self._process: subprocess.Popen | None = None
        self._socket = None
        self._next_id = 0
        self._events: list[dict] = []

    def __enter__(self) -> HeadlessChromium:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port = self._wait_for_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as answer:
            targets = json.load(answer)
        page = next((t for t in targets if t.get("type") == "page"), None)
        if page is None:
            raise BrowserError(f"Chromium at port {port} has no page target: {targets!r}")
        self._socket = self._websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True)
        self.send("Page.enable")
        self.send("Runtime.enable")

    def _wait_for_port(self) -> int:
        # With --remote-debugging-port=0 Chromium picks a free port and writes it into the profile folder.
        marker = Path(self._profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"{self.binary} exited with code {self._process.returncode} at start-up")
            if marker.exists():
                first_line = marker.read_text().split("\n", 1)[0].strip()
                if first_line.isdigit():
                    return int(first_line)
            time.sleep(0.05)
        raise BrowserError(f"{self.binary} did not open its DevTools port within {self.timeout:.0f} s")

    def send(self, method: str, **params) -> dict:
        """Sends one CDP command and returns its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def wait_event(self, method: str) -> dict:
        for index, event in enumerate(self._events):
            if event["method"] == method:
                return self._events.pop(index)
        while True:
            message = json.loads(self._socket.recv())
            if message.get("method") == method:
                return message
            if "method" in message:
                self._events.append(message)

    def open(self, url: str) -> None:
        self._events.clear()
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:80]!r} failed: {description}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def press(self, key: str, modifiers: int = 0) -> None:
        """A real (trusted) key press, as if typed: keydown then keyup."""
        code = _KEY_CODES[key]
        common = {"modifiers": modifiers, "key": key, "code": key if key.startswith("Arrow") else f"Key{key.upper()}",
                  "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        self.send("Input.dispatchKeyEvent", type="rawKeyDown", **common)
        self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    def type_text(self, text: str) -> None:
        """Types characters one key at a time (keydown with text, then keyup)."""
        for char in text:
            self.send("Input.dispatchKeyEvent", type="keyDown", key=char, text=char, unmodifiedText=char)
            self.send("Input.dispatchKeyEvent", type="keyUp", key=char)

    def screenshot(self, path: str | os.PathLike) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        target = Path(path)
        target.write_bytes(base64.b64decode(data))
        return target

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass
            self._socket = None
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)  # our own session: Chromium's helper processes too
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=5)
        shutil.rmtree(self._profile, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def serve_extension_page(repo_root: str | os.PathLike, page: str) -> tuple[socketserver.TCPServer, str]:
    """Serves `repo_root` on 127.0.0.1 and returns (server, URL of `page`). In `page`, `<!-- EXTENSION_SCRIPTS -->`
    becomes a <script> for every javascript/*.js (name order, as the hosts load them) and
    `<!-- EXTENSION_CSS -->` a link to style.css. Call `server.shutdown()` when done."""
    root = Path(repo_root)
    scripts = "\n".join(f'<script type="text/javascript" src="/javascript/{p.name}"></script>'
                        for p in sorted(root.joinpath("javascript").glob("*.js")))
    css = '<link rel="stylesheet" property="stylesheet" href="/style.css">'
    page_path = "/" + page.lstrip("/")

    class Handler(_QuietHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] != page_path:
                return super().do_GET()
            html = root.joinpath(page.lstrip("/")).read_text(encoding="utf-8")
            body = html.replace("<!-- EXTENSION_SCRIPTS -->", scripts).replace("<!-- EXTENSION_CSS -->", css)
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}{page_path}"
