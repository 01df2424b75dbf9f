"""Headless Chromium driven over the DevTools protocol (a websocket; no Selenium or Playwright to install): open a
page with cookies set, wait until some text shows, and save a screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.services import free_port

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Page:
    """One tab of a headless Chromium started for it."""

    def __init__(self) -> None:
        binary = chromium()
        if binary is None:
            raise RuntimeError("no Chromium: apt-get install chromium (make test does)")
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="docflow-chromium-")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--remote-debugging-port={self.port}", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self._socket: Any = None

    def __enter__(self) -> Page:
        from websockets.sync.client import connect

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=2) as response:
                    targets = json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        page = next(t for t in targets if t["type"] == "page")
        self._socket = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        self.call("Page.enable")
        self.call("Network.enable")
        return self

    def __exit__(self, *_: object) -> None:
        if self._socket is not None:
            self._socket.close()
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            reply = json.loads(self._socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.call("Network.setCookie", url=url, name=name, value=value)

    def open(self, url: str, wait_for_text: str, timeout_s: float = 60) -> str:
        """Navigate and wait until the page's text contains `wait_for_text`; returns the text."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            evaluated = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
            text = str(evaluated.get("result", {}).get("value", ""))
            if wait_for_text in text:
                time.sleep(1.0)  # images and late widgets finish drawing
                return text
            time.sleep(0.5)
        raise TimeoutError(f"{url} never showed {wait_for_text!r}; it shows: {text[:300]!r}")

    def screenshot(self, out: Path) -> Path:
        shot = self.call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out
