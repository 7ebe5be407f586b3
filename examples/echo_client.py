"""Echo client: wsbind's version of Qt's "Echo Client" example (qtwebsockets/examples/echoclient).

Connects to an echo server, sends "Hello, world!" once the socket is OPEN,
prints the reply, closes the connection and quits. The exit status is 0 when
the reply came back, and 1 when the connection ended in ERROR (the error
string is printed) or closed without a reply.

Start ``examples/echo_server.py`` first, then, from the repository root::

    .venv/bin/python examples/echo_client.py                      # ws://127.0.0.1:1234
    .venv/bin/python examples/echo_client.py --url ws://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import sys

import wsbind
from wsbind import Status, WebSocket


def main() -> int:
    parser = argparse.ArgumentParser(description="wsbind echo client (Qt's Echo Client example)")
    parser.add_argument(
        "--url", default="ws://127.0.0.1:1234", help="server URL [default: ws://127.0.0.1:1234]"
    )
    args = parser.parse_args()
    replies: list[str] = []
    exit_status = 1

    def status_changed(status: Status) -> None:
        nonlocal exit_status
        if status is Status.OPEN:
            print(f"connected to {ws.url}")
            ws.send_text_message("Hello, world!")
        elif status is Status.ERROR:
            print(f"error: {ws.error_string}", file=sys.stderr)
            wsbind.quit()
        elif status is Status.CLOSED:
            exit_status = 0 if replies else 1
            if not replies:
                print(f"closed without a reply (close code {ws.close_code})", file=sys.stderr)
            wsbind.quit()

    def text_message_received(message: str) -> None:
        replies.append(message)
        print(f"message received: {message}")
        ws.close()  # the CLOSED status then quits

    ws = WebSocket(
        url=args.url,
        active=True,
        on_status_changed=status_changed,
        on_text_message_received=text_message_received,
    )
    wsbind.run()  # Qt: app.exec(); returns when a handler calls wsbind.quit()
    return exit_status


if __name__ == "__main__":
    sys.exit(main())
