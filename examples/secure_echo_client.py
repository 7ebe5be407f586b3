"""Secure echo client: wsbind's version of Qt's "SSL Echo Client" example
(qtwebsockets/examples/sslechoclient).

Connects over wss:// trusting the example CA in examples/certs/, sends
"Hello, world!" once OPEN, prints the reply, closes and quits. Exit status 0
when the reply came back, 1 when the connection failed (the reason, for
instance a certificate that does not verify, is printed).

Start ``examples/secure_echo_server.py`` first, then, from the repository root::

    .venv/bin/python examples/secure_echo_client.py                 # wss://localhost:1234
    .venv/bin/python examples/secure_echo_client.py --url wss://localhost:8443
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import wsbind
from wsbind import SslConfiguration, Status, WebSocket

CERTS = Path(__file__).parent / "certs"


def main() -> int:
    parser = argparse.ArgumentParser(description="wsbind secure echo client (Qt's SSL Echo Client example)")
    parser.add_argument(
        "--url", default="wss://localhost:1234", help="server URL [default: wss://localhost:1234]"
    )
    parser.add_argument("--ca", default=str(CERTS / "ca.pem"), help="CA certificate to trust (PEM)")
    args = parser.parse_args()
    replies: list[str] = []

    def status_changed(status: Status) -> None:
        if status is Status.OPEN:
            print(f"connected to {ws.url}", flush=True)
            ws.send_text_message("Hello, world!")
        elif status is Status.ERROR:
            print(f"error: {ws.error_string}", file=sys.stderr, flush=True)
            wsbind.quit()
        elif status is Status.CLOSED:
            wsbind.quit()

    def message_received(message: str) -> None:
        print(f"message received: {message}", flush=True)
        replies.append(message)
        ws.close()

    ws = WebSocket(
        url=args.url,
        ssl_configuration=SslConfiguration(ca_certificates=[args.ca]),
        on_status_changed=status_changed,
        on_text_message_received=message_received,
        active=True,
    )
    wsbind.run()
    return 0 if replies else 1


if __name__ == "__main__":
    sys.exit(main())
