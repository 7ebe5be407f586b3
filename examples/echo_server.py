"""Echo server: wsbind's version of Qt's "Echo Server" example (qtwebsockets/examples/echoserver).

A WebSocketServer that sends every text and binary message back to the client
that sent it, and says when clients connect and disconnect.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python examples/echo_server.py                # listens on ws://127.0.0.1:1234
    .venv/bin/python examples/echo_server.py --port 8080 --debug

then talk to it with ``examples/echo_client.py``. Stop it with Ctrl-C: open
connections are closed with 1001 (going away) on the way out.
"""

from __future__ import annotations

import argparse
import sys

import wsbind
from wsbind import Status, WebSocket, WebSocketServer


def main() -> int:
    parser = argparse.ArgumentParser(description="wsbind echo server (Qt's Echo Server example)")
    parser.add_argument("-p", "--port", type=int, default=1234, help="port to listen on [default: 1234]")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1]")
    parser.add_argument("-d", "--debug", action="store_true", help="print every message echoed")
    args = parser.parse_args()
    failed = False

    def client_connected(ws: WebSocket) -> None:
        # Qt: connect textMessageReceived and binaryMessageReceived to the echo slots.
        print(f"client connected: {ws.url}")

        def echo_text(message: str) -> None:
            if args.debug:
                print(f"text message received: {message!r}")
            ws.send_text_message(message)

        def echo_binary(message: bytes) -> None:
            if args.debug:
                print(f"binary message received: {message!r}")
            ws.send_binary_message(message)

        def status_changed(status: Status) -> None:
            if status in (Status.CLOSED, Status.ERROR):
                detail = f" ({ws.error_string})" if status is Status.ERROR else ""
                print(f"client disconnected: {ws.url}, close code {ws.close_code}{detail}")

        ws.text_message_received.connect(echo_text)
        ws.binary_message_received.connect(echo_binary)
        ws.status_changed.connect(status_changed)

    def url_changed(url: str) -> None:
        if url:
            print(f"echo server listening on {url}")

    def error_string_changed(error: str) -> None:
        nonlocal failed
        if error:
            print(f"echo server: {error}", file=sys.stderr)
            failed = True
            wsbind.quit()

    # No need to keep a reference: wsbind holds a listening server until it stops.
    try:
        WebSocketServer(
            host=args.host,
            port=args.port,
            listen=True,
            on_client_connected=client_connected,
            on_url_changed=url_changed,
            on_error_string_changed=error_string_changed,
        )
    except OSError:
        # Raised as Qt's listen() returns false; error_string_changed said why.
        return 1
    wsbind.run()  # Qt: app.exec(); returns on Ctrl-C
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
