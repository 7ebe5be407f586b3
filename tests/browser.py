"""A real headless Chromium, driven over its DevTools protocol (CDP, JSON over a WebSocket).

Tests open pages with :meth:`Browser.open` and wait on the page's own state with
:meth:`Page.wait_for`, which evaluates a JavaScript expression until it holds: the
page's sockets run at their own pace, and only the page can say when they are done
(``--virtual-time-budget`` would stop the clock while a socket waits for its reply).
The CDP client is the `websockets` library, an independent peer.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from conftest import TIMEOUT, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


class Browser:
    """One headless Chromium process with a throwaway profile; close() ends it."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="wsbind-chromium-"))
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                # Root in a container has no user namespace for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                f"--user-data-dir={self.profile}",
                # 0: the browser picks a port and writes it to DevToolsActivePort.
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        active = self.profile / "DevToolsActivePort"
        wait_until(
            lambda: (
                self.process.poll() is not None or (active.exists() and active.read_text().count("\n") >= 1)
            ),
            what="Chromium's DevTools port",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"{CHROMIUM} exited with {self.process.returncode}")
        self.port = int(active.read_text().split()[0])
        self.pages: list[Page] = []

    def _json(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.load(response)

    def open(self, url: str) -> Page:
        """A new tab loading ``url``."""
        target = self._json("/json/new?" + urllib.parse.quote(url, safe=":/?&=%"), method="PUT")
        page = Page(target["webSocketDebuggerUrl"], target["id"])
        self.pages.append(page)
        return page

    def close(self) -> None:
        for page in self.pages:
            page.close()
        self.process.terminate()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab, through its DevTools WebSocket."""

    def __init__(self, debugger_url: str, target_id: str) -> None:
        self.target_id = target_id
        self._cdp: ClientConnection = connect(debugger_url, max_size=None, open_timeout=TIMEOUT).__enter__()
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Sends one CDP command and returns its result (events that come meanwhile are skipped)."""
        call_id = next(self._ids)
        self._cdp.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._cdp.recv(timeout=TIMEOUT))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str = "") -> Any:
        """Evaluates ``expression`` until it is truthy; returns that value."""
        return wait_until(lambda: self.evaluate(expression), what=what or expression)

    def close(self) -> None:
        self._cdp.__exit__(None, None, None)
