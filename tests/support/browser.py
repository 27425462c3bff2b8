"""A real headless Chromium driven over the DevTools protocol (one WebSocket per page), for the browser tests.

Every request the page makes is recorded from the Network domain's events, so a test can say which hosts a
page reached. Waiting is on the page's own state (a JavaScript condition checked as protocol messages arrive),
bounded in time; nothing sleeps for a fixed while.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--window-size=1280,1000",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The path of an installed Chromium, or None."""
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


class BrowserError(RuntimeError):
    """The browser did not start, a protocol call failed, or a page never reached the awaited state."""


@dataclass
class Request:
    """One request the page sent (from ``Network.requestWillBeSent`` and ``requestWillBeSentExtraInfo``)."""

    url: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    blocked: str | None = None  # why the browser refused to send it (``csp``, ...): it never left the page


class Page:
    """One tab: protocol commands, the events they bring, and the requests the page made."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.requests: dict[str, Request] = {}

    def _handle(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            req = params["request"]
            self.requests[params["requestId"]] = Request(req["url"], req["method"], dict(req.get("headers", {})))
        elif method == "Network.requestWillBeSentExtraInfo" and params["requestId"] in self.requests:
            # The headers actually sent (Authorization included), which requestWillBeSent may not show yet.
            self.requests[params["requestId"]].headers.update(params.get("headers", {}))
        elif method == "Network.loadingFailed" and params.get("blockedReason") and params["requestId"] in self.requests:
            self.requests[params["requestId"]].blocked = params["blockedReason"]

    def _pump(self, timeout_s: float) -> dict[str, Any] | None:
        try:
            raw = self._socket.recv(timeout=timeout_s)
        except TimeoutError:
            return None
        message: dict[str, Any] = json.loads(raw)
        if "id" not in message:
            self._handle(message)
        return message

    def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        """Run one protocol command and return its result.

        Raises:
            BrowserError: the command failed or got no answer within ``timeout_s``.
        """
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            message = self._pump(left)
            if message is not None and message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
        raise BrowserError(f"{method}: no answer within {timeout_s} s")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited).

        Raises:
            BrowserError: the expression threw.
        """
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise BrowserError(f"{expression!r} threw: {out['exceptionDetails'].get('exception', out)}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, what: str = "") -> Any:
        """Wait until ``expression`` is truthy in the page and return its value; re-checked as messages arrive.

        Raises:
            BrowserError: still falsy after ``timeout_s`` (the message says what was awaited).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"waited {timeout_s} s for {what or expression}")
            self._pump(0.05)  # take in whatever the page sends meanwhile (network events) before checking again

    def goto(self, url: str, timeout_s: float = 30.0) -> None:
        """Navigate and wait for the load event.

        Raises:
            BrowserError: the page did not load within ``timeout_s``.
        """
        seen = len(self.events)
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[seen:]):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not load within {timeout_s} s")
            self._pump(0.1)

    def click(self, selector: str) -> None:
        """Click the first element matching ``selector``.

        Raises:
            BrowserError: no element matches.
        """
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.scrollIntoView(); e.click(); return true; })()"
        )
        if not found:
            raise BrowserError(f"nothing to click at {selector!r}")

    def type_text(self, selector: str, text: str) -> None:
        """Focus ``selector`` and type ``text`` as keyboard input (frameworks see real input events).

        Raises:
            BrowserError: no element matches.
        """
        if not self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.focus(); return true; })()"
        ):
            raise BrowserError(f"nothing to type into at {selector!r}")
        self.send("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        """Save the whole page as PNG."""
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def hosts(self) -> set[str]:
        """Every scheme://host:port the page sent a request to (``data:`` URLs and refused requests were not sent)."""
        return {
            _origin(r.url)
            for r in self.requests.values()
            if r.blocked is None and not r.url.startswith(("data:", "blob:"))
        }

    def blocked(self) -> dict[str, str]:
        """URL → reason, for each request the browser refused to send (a Content-Security-Policy, say)."""
        return {r.url: r.blocked for r in self.requests.values() if r.blocked is not None}


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, the form ``Page.hosts`` reports."""
    return _origin(url)


@contextlib.contextmanager
def chromium(executable: str, workdir: Path, *, start_timeout_s: float = 30.0) -> Iterator[Page]:
    """A headless Chromium with one blank page whose network is recorded; closed when the block ends.

    Raises:
        BrowserError: the browser did not start or did not open its DevTools port within ``start_timeout_s``.
    """
    profile = workdir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a previous browser's port is no proof of this one
    log = (workdir / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [executable, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        port = _devtools_port(proc, profile / "DevToolsActivePort", start_timeout_s)
        base = f"http://127.0.0.1:{port}"
        target = httpx.put(f"{base}/json/new?about:blank", timeout=10, trust_env=False).json()
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as socket:
            page = Page(socket)
            for domain in ("Page", "Network", "Runtime"):
                page.send(f"{domain}.enable")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _devtools_port(proc: subprocess.Popen[bytes], port_file: Path, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited with {proc.returncode} at start-up (see chromium.log)")
        if port_file.exists():
            first = port_file.read_text().splitlines()[:1]
            if first and first[0].isdigit():
                return int(first[0])
        time.sleep(0.05)  # the file appears when the browser has bound its port; nothing to wait on but the file
    raise BrowserError(f"chromium opened no DevTools port within {timeout_s} s")
