"""Headless Chromium (Debian's `chromium`) driven through the DevTools protocol over a pipe
(`--remote-debugging-pipe`: JSON messages ended by NUL on fds 3 and 4), so no client
library and no port is needed. A page is opened from a file and we get back what it
rendered (text, DOM), a PNG screenshot, every request the page made and every console
or browser log error: the pages must load nothing and log nothing.

Missing Chromium skips the browser tests, unless DRIPCARE_REQUIRE_BROWSER=1 (CI), where
that fails them."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--remote-debugging-pipe")
TIMEOUT = 30.0  # seconds for one protocol answer or one page load: a bound, not a timing under test


@dataclass
class Rendering:
    url: str
    text: str  # document.body.innerText: what a reader sees
    dom: str  # the document as the browser built it
    png: bytes
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, itself included
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, browser log errors

    @property
    def fetched(self) -> list[str]:
        """Requests beyond the page itself."""
        return [u for u in self.requests if u != self.url]


class Chromium:
    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="dripcare-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Out of the way of 3 and 4 first, so that placing one cannot overwrite the other.
        high_r, high_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        to_browser_r, from_browser_w = high_r, high_w

        def plumb():  # the child reads commands on fd 3 and writes answers on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"], preexec_fn=plumb,
            pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    # --- the protocol ---

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # --- one page ---

    def render(self, path: Path, width: int = 1280, height: int = 900) -> Rendering:
        url = path.resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        text = self._evaluate(session, "document.body.innerText")
        dom = self._evaluate(session, "document.documentElement.outerHTML")
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        rendering = Rendering(url, text, dom, base64.b64decode(shot["data"]))
        self._collect(rendering)
        self.send("Target.closeTarget", {"targetId": target})
        return rendering

    def _evaluate(self, session: str, expression: str) -> str:
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                         session=session)["result"]["value"]

    def _collect(self, rendering: Rendering) -> None:
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                rendering.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                rendering.errors.append("console: " + " ".join(str(a.get("value", a)) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                rendering.errors.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                rendering.errors.append(f"log ({params['entry'].get('source')}): {params['entry']['text']}")
        self.events.clear()


def chromium_executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def launched():
    executable = chromium_executable()
    if executable is None:
        reason = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("DRIPCARE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; DRIPCARE_REQUIRE_BROWSER=1 requires it", pytrace=False)
        pytest.skip(reason)
    browser = Chromium(executable)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session; each render opens and closes its own tab."""
    with launched() as chromium:
        yield chromium
