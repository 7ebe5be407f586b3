"""Runs the scripts in examples/ as their docstrings say, in subprocesses, against
each other and against the independent `websockets` library."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import free_port, wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Every subprocess is given this long; a passing one takes a few seconds at most.
TIMEOUT = 60
# Unbuffered, so that a background server's lines can be waited for as they come.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# Started in the background from a shell without job control, this process and
# its children ignore SIGINT, so that Ctrl-C cannot be simulated.
CAN_INTERRUPT = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=ENV,
    )


class Background:
    """An example running in the background, whose output lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / args[0]), *args[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None and not self.reader.is_alive():
                pytest.fail(f"{self.proc.args} exited with {self.proc.returncode}:\n{self.output}")
            return text in self.output

        wait_until(seen, TIMEOUT, f"{text!r} in the output of {self.proc.args}")

    def interrupt(self) -> int:
        """Stops it as Ctrl-C does, and returns its exit status."""
        self.proc.send_signal(signal.SIGINT if CAN_INTERRUPT else signal.SIGTERM)
        status = self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


@contextmanager
def background(*args: str) -> Iterator[Background]:
    example = Background(*args)
    try:
        yield example
    finally:
        example.kill()


# -- echo server and client


def test_echo_client_gets_the_echo_from_the_echo_server() -> None:
    port = free_port()
    with background("echo_server.py", "--port", str(port), "--debug") as server:
        server.wait_for(f"listening on ws://127.0.0.1:{port}")

        client = run_example("echo_client.py", "--url", f"ws://127.0.0.1:{port}")
        assert client.returncode == 0, client
        assert "message received: Hello, world!" in client.stdout
        assert client.stderr == ""
        server.wait_for("client disconnected")
        assert "text message received: 'Hello, world!'" in server.output

        # Binary messages come back as they went, and Ctrl-C closes open clients with 1001.
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send(b"\x00\xffbinary")
            assert ws.recv(timeout=TIMEOUT) == b"\x00\xffbinary"
            ws.send("text")
            assert ws.recv(timeout=TIMEOUT) == "text"
            status = server.interrupt()
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            assert ws.close_code == (1001 if CAN_INTERRUPT else 1006)
    if CAN_INTERRUPT:
        assert status == 0, server.output
        assert server.output.count("client connected") == 2
        assert server.output.count("client disconnected") == 2


def test_secure_echo_client_gets_the_echo_over_tls() -> None:
    """Qt's SSL echo examples, with the example certificate for localhost."""
    port = free_port()
    with background("secure_echo_server.py", "--port", str(port)) as server:
        server.wait_for(f"listening on wss://127.0.0.1:{port}")
        client = run_example("secure_echo_client.py", "--url", f"wss://localhost:{port}")
        assert client.returncode == 0, client
        assert "message received: Hello, world!" in client.stdout
        server.wait_for("client disconnected")
        # A client that does not trust the example CA is refused, in words.
        untrusting = run_example(
            "secure_echo_client.py",
            "--url",
            f"wss://localhost:{port}",
            "--ca",
            str(EXAMPLES / "certs/localhost.pem"),
        )
        assert untrusting.returncode == 1
        assert "certificate verify failed" in untrusting.stderr
        server.wait_for("TLS errors")


def test_echo_server_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_example("echo_server.py", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 1
    assert "echo server: " in result.stderr
    assert "Traceback" not in result.stderr


def test_echo_client_with_nothing_listening_exits_1_with_the_error() -> None:
    result = run_example("echo_client.py", "--url", f"ws://127.0.0.1:{free_port()}")
    assert result.returncode == 1, result
    assert re.search(r"^error: .*(refused|cannot connect)", result.stderr, re.MULTILINE | re.IGNORECASE), (
        result
    )
    assert "Traceback" not in result.stderr


# -- asyncio bot and server


def test_asyncio_bot_gets_the_echo_from_the_asyncio_server() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    with background("asyncio_server.py", "--port", str(port)) as server:
        server.wait_for(f"listening on {url}")
        bot = run_example("asyncio_bot.py", "--url", url, "--count", "2")
        assert bot.returncode == 0, bot
        assert "message received: Hello, world! #1" in bot.stdout
        assert "message received: Hello, world! #2" in bot.stdout
        assert "closed with 1000" in bot.stdout
        assert bot.stderr == ""
        server.wait_for("client disconnected (close code 1000)")

        # Binary comes back as binary, and Ctrl-C closes open clients with 1001.
        with connect(url) as ws:
            ws.send(b"\x00\xffbinary")
            assert ws.recv(timeout=TIMEOUT) == b"\x00\xffbinary"
            status = server.interrupt()
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            assert ws.close_code == (1001 if CAN_INTERRUPT else 1006)
    if CAN_INTERRUPT:
        assert status == 0, server.output
        assert "Traceback" not in server.output


def test_asyncio_bot_with_nothing_listening_exits_1_with_the_error() -> None:
    port = free_port()
    result = run_example("asyncio_bot.py", "--url", f"ws://127.0.0.1:{port}")
    assert result.returncode == 1, result
    assert f"error: cannot connect to 127.0.0.1:{port}: Connection refused" in result.stderr
    assert "Traceback" not in result.stderr


# -- QML WebSocket server


def test_qml_server_prints_the_reply_and_quits() -> None:
    result = run_example("qml_server.py")
    assert result.returncode == 0, result
    assert "Hello Client!" in result.stdout.splitlines()
    assert result.stderr == ""


# -- stock ticker

UPDATE = re.compile(r"^client (\w+): ([A-Z]+) (\d+\.\d\d)$")


def test_stock_ticker_demo_clients_receive_only_their_symbols() -> None:
    result = run_example("stock_ticker.py", "demo", "--seconds", "2")
    assert result.returncode == 0, result
    assert result.stderr == ""
    received: dict[str, set[str]] = {}
    for line in result.stdout.splitlines():
        match = UPDATE.match(line)
        if match:
            received.setdefault(match[1], set()).add(match[2])
    # The server answers a subscription with the current prices at once.
    assert received == {"A": {"ACME", "GLOBEX"}, "B": {"INITECH"}}, result.stdout
    assert "client A disconnected (close code 1001)" in result.stdout


def receive(ws: Any) -> dict[str, Any]:
    message = ws.recv(timeout=TIMEOUT)
    assert isinstance(message, str)
    update: dict[str, Any] = json.loads(message)
    return update


def test_stock_ticker_server_serves_websockets_clients() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    with background("stock_ticker.py", "server", "--port", str(port), "--interval", "0.05") as server:
        server.wait_for(f"stock ticker listening on {url}")
        with connect(url) as acme, connect(url) as both:
            acme.send(json.dumps({"subscribe": ["ACME"]}))
            both.send(json.dumps({"subscribe": ["INITECH", "GLOBEX"]}))
            acme_updates = [receive(acme) for _ in range(10)]
            both_updates = [receive(both) for _ in range(10)]
            assert {u["symbol"] for u in acme_updates} == {"ACME"}
            assert {u["symbol"] for u in both_updates} == {"INITECH", "GLOBEX"}
            for update in acme_updates + both_updates:
                assert set(update) == {"symbol", "price"}
                assert isinstance(update["price"], float) and update["price"] > 0

            # After unsubscribing, only the one tick already being sent may still bring INITECH
            # (then just after GLOBEX, as symbols move in a fixed order).
            both.send(json.dumps({"unsubscribe": ["INITECH"]}))
            both.send(json.dumps({"subscribe": ["NOSUCH"]}))
            while "error" not in (update := receive(both)):
                pass
            assert update == {"error": "unknown symbol(s): NOSUCH"}
            later = [receive(both)["symbol"] for _ in range(10)]
            assert later.count("INITECH") <= 1 and "INITECH" not in later[2:], later

            acme.send("not json")
            while "error" not in (update := receive(acme)):
                pass
            assert update == {"error": "not JSON"}
        status = server.interrupt()
    if CAN_INTERRUPT:
        assert status == 0, server.output
