"""The ``wsbind`` command: an interactive client, and a server for trying pages and bots.

::

    wsbind ws://127.0.0.1:8765/chat          # prints what arrives, sends each line typed
    wsbind serve --port 8765 --echo          # sends every message back to its sender
    wsbind serve --port 8765 --broadcast     # sends every message to every client

The client prints each message on standard output, a text message as
``< text`` and a binary one as ``< [binary N bytes] hex``; a line typed is
sent as a text message, ``/ping [payload]`` sends a ping (its pong prints
``< pong N ms``), and Ctrl-D (end of input) closes with 1000. What the
connection does (open, closed, errors) goes to standard error, so standard
output holds only what the peer sent. It exits with 0 after a normal close
(1000, 1001 or 1005), and 1 when the connection failed or closed otherwise.

``python -m wsbind`` is the same command.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import dispatch
from .errors import NotOpenError
from .server import WebSocketServer
from .status import Status
from .tls import SslConfiguration
from .websocket import WebSocket

__all__ = ["main"]


def _say(*parts: object, file: Any = None) -> None:
    # Flushed at once: the other end of a pipe waits for each line.
    print(*parts, file=file or sys.stdout, flush=True)


def _header(value: str) -> tuple[str, str]:
    name, colon, content = value.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', not {value!r}")
    return name.strip(), content.strip()


def _show(message: str | bytes) -> str:
    if isinstance(message, str):
        return f"< {message}"
    return f"< [binary {len(message)} bytes] {message.hex()}"


def client(url: str, headers: Sequence[tuple[str, str]], subprotocols: Sequence[str], insecure: bool) -> int:
    """Talks to ``url`` through standard input and output until either side closes."""
    opened = threading.Event()
    # Set when the connection is over, for good or for ill.
    done = threading.Event()
    ws = WebSocket(
        url=url,
        request_headers=dict(headers),
        requested_subprotocols=list(subprotocols),
        ssl_configuration=SslConfiguration(peer_verify=False) if insecure else None,
        on_text_message_received=lambda message: _say(_show(message)),
        on_binary_message_received=lambda message: _say(_show(message)),
        on_pong=lambda elapsed_ms, payload: _say(f"< pong {elapsed_ms:.1f} ms"),
    )

    @ws.status_changed.connect
    def status_changed(status: Status) -> None:
        if status is Status.OPEN:
            chosen = f" (subprotocol {ws.negotiated_subprotocol})" if ws.negotiated_subprotocol else ""
            _say(f"connected to {url}{chosen}; Ctrl-D closes", file=sys.stderr)
            opened.set()
        elif status is Status.ERROR:
            _say(f"error: {ws.error_string}", file=sys.stderr)
            done.set()
        elif status is Status.CLOSED:
            reason = f" {ws.close_reason!r}" if ws.close_reason else ""
            _say(f"closed with {ws.close_code}{reason}", file=sys.stderr)
            done.set()

    def type_lines() -> None:
        for line in sys.stdin:
            line = line.rstrip("\r\n")
            if not _wait_open(opened, done):
                return
            try:
                if line == "/ping" or line.startswith("/ping "):
                    ws.ping(line[6:].encode())
                else:
                    ws.send_text_message(line)
            except Exception as e:  # The connection ended meanwhile, a payload too long...
                _say(f"error: {e}", file=sys.stderr)
        # Ctrl-D, or the end of a piped input.
        if _wait_open(opened, done):
            ws.close(1000)

    # A daemon: when the server closes first, the process exits while it reads.
    threading.Thread(target=type_lines, name="wsbind-stdin", daemon=True).start()
    ws.active = True
    _wait(done)
    # A close with another code than 1000, 1001 or 1005 is a failure, as for ConnectionClosedError.
    normal = ws.status is Status.CLOSED and ws.close_code in (1000, 1001, 1005)
    return 0 if normal else 1


def _wait_open(opened: threading.Event, done: threading.Event) -> bool:
    """Waits until the socket is open (True) or its connection is over (False)."""
    while not opened.wait(0.1):
        if done.is_set():
            return False
    return not done.is_set()


def _wait(event: threading.Event) -> None:
    # In short waits, so that Ctrl-C is seen at once.
    while not event.wait(0.5):
        pass


def serve(host: str, port: int, mode: str | None, static: str | None) -> int:
    """Serves until Ctrl-C or SIGTERM: echo, broadcast, or print what arrives."""
    server = WebSocketServer(host=host, port=port, listen=True)
    if static is not None:
        server.static_dir = static

    @server.client_connected.connect
    def client_connected(ws: WebSocket) -> None:
        peer = f"{ws.peer_address}:{ws.peer_port}"
        _say(f"{peer} connected to {ws.url}", file=sys.stderr)

        def received(message: str | bytes) -> None:
            if mode == "echo":
                # A client that closed right after its message is owed no answer.
                with contextlib.suppress(NotOpenError):
                    if isinstance(message, str):
                        ws.send_text_message(message)
                    else:
                        ws.send_binary_message(message)
            elif mode == "broadcast":
                if isinstance(message, str):
                    server.broadcast_text_message(message)
                else:
                    server.broadcast_binary_message(message)
            else:
                _say(f"{peer} {_show(message)}")

        ws.text_message_received.connect(received)
        ws.binary_message_received.connect(received)
        ws.disconnected.connect(lambda: _say(f"{peer} closed with {ws.close_code}", file=sys.stderr))

    # Standard output: a script that started the server reads its URL there.
    _say(f"listening on {server.url}")
    signal.signal(signal.SIGTERM, lambda *_: dispatch.quit())
    dispatch.run()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsbind",
        description="An interactive WebSocket client (wsbind URL) or a server (wsbind serve).",
        epilog="Client: each line typed is sent as a text message; '/ping [payload]' sends a ping; "
        "Ctrl-D closes with 1000. Messages that arrive are printed as '< message'.",
    )
    parser.add_argument("url", help="ws:// or wss:// URL to connect to, or 'serve' to run a server")
    parser.add_argument(
        "-H", "--header", action="append", type=_header, default=[], help="'Name: value' to send (repeatable)"
    )
    parser.add_argument(
        "-s", "--subprotocol", action="append", default=[], help="a subprotocol to ask for (repeatable)"
    )
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="wss:// without checking the server's certificate"
    )
    return parser


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsbind serve",
        description="A WebSocket server for trying pages and bots; Ctrl-C stops it.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on; 0 picks one (default 8765)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--echo", dest="mode", action="store_const", const="echo", help="send each message back"
    )
    mode.add_argument(
        "--broadcast", dest="mode", action="store_const", const="broadcast", help="send each message to all"
    )
    parser.add_argument("--static", metavar="DIR", help="serve the files of DIR over plain HTTP")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command with ``argv`` (default: the process's arguments); returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["serve"]:
            options = _serve_parser().parse_args(args[1:])
            return serve(options.host, options.port, options.mode, options.static)
        options = _parser().parse_args(args)
        return client(options.url, options.header, options.subprotocol, options.insecure)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as e:
        # A port in use, a URL that is not ws://: said in one line, not a traceback.
        _say(f"wsbind: {e}", file=sys.stderr)
        return 2
