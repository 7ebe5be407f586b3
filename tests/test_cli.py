"""The ``wsbind`` command, run as a subprocess and driven through its standard input
and output, against the `websockets` library's server and client."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import websockets
from websockets.sync.client import connect

from conftest import TIMEOUT, free_port, websockets_server


class Command:
    """``python -m wsbind ARGS`` with pipes; its output lines are read on threads."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wsbind", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.put(line.rstrip("\n"))

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def end_input(self) -> None:
        """Ctrl-D."""
        assert self.process.stdin is not None
        self.process.stdin.close()

    @staticmethod
    def line(lines: queue.Queue[str], containing: str = "") -> str:
        """The next line that contains ``containing``; fails the test if none comes."""
        while True:
            try:
                line = lines.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"no line containing {containing!r}")
            if containing in line:
                return line

    def out(self, containing: str = "") -> str:
        return self.line(self.stdout, containing)

    def err(self, containing: str = "") -> str:
        return self.line(self.stderr, containing)

    def wait(self) -> int:
        return self.process.wait(timeout=TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=TIMEOUT)


@contextlib.contextmanager
def command(*args: str) -> Iterator[Command]:
    cmd = Command(*args)
    try:
        yield cmd
    finally:
        cmd.stop()


def recording(seen: list[Any]) -> Any:
    """A `websockets` handler that greets, records the handshake and echoes upper-cased."""

    def handler(ws: Any) -> None:
        seen.append(ws.request.headers)
        ws.send("welcome")
        ws.send(b"\x00\xff")
        try:
            for message in ws:
                ws.send(message.upper())
        except websockets.ConnectionClosed:
            pass
        seen.append(ws.close_code)

    return handler


def test_client_prints_what_arrives_sends_lines_and_closes_with_1000_on_ctrl_d() -> None:
    seen: list[Any] = []
    with (
        websockets_server(recording(seen), subprotocols=["chat"]) as (url, _),
        command(url + "/room", "--header", "X-Token: secret", "--subprotocol", "chat") as cli,
    ):
        assert cli.err("connected") == f"connected to {url}/room (subprotocol chat); Ctrl-D closes"
        assert cli.out() == "< welcome"
        assert cli.out() == "< [binary 2 bytes] 00ff"
        cli.type("hello there")
        assert cli.out() == "< HELLO THERE"
        cli.type("/ping abc")
        assert cli.out().startswith("< pong ")
        cli.end_input()
        assert cli.wait() == 0
        assert cli.err("closed") == "closed with 1000"
    assert seen[0]["X-Token"] == "secret"
    assert seen[-1] == 1000


@pytest.mark.parametrize(("code", "status"), [(1001, 0), (4000, 1), (1011, 1)])
def test_client_exits_when_the_server_closes(code: int, status: int) -> None:
    """With 0 after a normal close (1000, 1001, 1005), as ConnectionClosedOK; 1 otherwise."""

    def handler(ws: Any) -> None:
        ws.close(code, "bye")

    with websockets_server(handler) as (url, _), command(url) as cli:
        assert cli.err("closed") == f"closed with {code} 'bye'"
        assert cli.wait() == status


def test_client_says_why_it_cannot_connect() -> None:
    with command(f"ws://127.0.0.1:{free_port()}") as cli:
        assert "error: cannot connect to 127.0.0.1" in cli.err("error")
        assert cli.wait() == 1


def test_a_url_without_scheme_is_refused_with_a_hint() -> None:
    with command("localhost:8080") as cli:
        assert "use ws://localhost:8080" in cli.err()
        assert cli.wait() == 2


@pytest.mark.parametrize("mode", ["--echo", "--broadcast"])
def test_serve_echoes_or_broadcasts(mode: str) -> None:
    with command("serve", "--port", "0", mode) as cli:
        url = cli.out("listening on ").removeprefix("listening on ")
        with connect(url, open_timeout=10) as a, connect(url, open_timeout=10) as b:
            # Both connected before the message: a broadcast reaches them both.
            cli.err("connected")
            cli.err("connected")
            a.send("hi all")
            assert a.recv(timeout=TIMEOUT) == "hi all"
            if mode == "--broadcast":
                assert b.recv(timeout=TIMEOUT) == "hi all"
            else:
                b.send(b"\x01")
                assert b.recv(timeout=TIMEOUT) == b"\x01"


def test_serve_static_serves_a_folder_and_its_page_talks_back(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>wsbind</h1>")
    with command("serve", "--port", "0", "--echo", "--static", str(tmp_path)) as cli:
        url = cli.out("listening on ").removeprefix("listening on ")
        http_url = url.replace("ws://", "http://", 1)
        with urllib.request.urlopen(http_url, timeout=TIMEOUT) as response:
            assert response.headers["Content-Type"].startswith("text/html")
            assert response.read() == b"<h1>wsbind</h1>"
        # The same port still upgrades sockets.
        with connect(url, open_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"


def test_serve_prints_what_clients_send_and_stops_on_sigterm() -> None:
    port = free_port()
    with command("serve", "--port", str(port)) as cli:
        assert cli.out("listening") == f"listening on ws://127.0.0.1:{port}"
        with connect(f"ws://127.0.0.1:{port}/bot", open_timeout=10) as ws:
            ws.send("status?")
            assert cli.out("status?").endswith("< status?")
            cli.process.terminate()
            assert cli.wait() == 0
            with pytest.raises(websockets.ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1001


def test_serve_on_a_port_in_use_says_so() -> None:
    with (
        websockets_server(lambda ws: None) as (_url, server),
        command("serve", "--port", str(server.socket.getsockname()[1])) as cli,
    ):
        assert "cannot listen" in cli.err()
        assert cli.wait() == 2
