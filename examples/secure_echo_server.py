"""Secure echo server: wsbind's version of Qt's "SSL Echo Server" example
(qtwebsockets/examples/sslechoserver).

A WebSocketServer in secure mode (wss://) that sends every message back,
with the throwaway localhost certificate in examples/certs/ (as Qt ships
localhost.cert and localhost.key with its example).

Run it from the repository root with the project's virtualenv::

    .venv/bin/python examples/secure_echo_server.py               # wss://localhost:1234
    .venv/bin/python examples/secure_echo_server.py --port 8443

then talk to it with ``examples/secure_echo_client.py``. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import wsbind
from wsbind import WebSocket, WebSocketServer

CERTS = Path(__file__).parent / "certs"


def main() -> int:
    parser = argparse.ArgumentParser(description="wsbind secure echo server (Qt's SSL Echo Server example)")
    parser.add_argument("-p", "--port", type=int, default=1234, help="port to listen on [default: 1234]")
    parser.add_argument("--certificate", default=str(CERTS / "localhost.pem"), help="PEM certificate chain")
    parser.add_argument("--private-key", default=str(CERTS / "localhost.key"), help="PEM private key")
    args = parser.parse_args()

    def client_connected(ws: WebSocket) -> None:
        print(f"client connected: {ws.url} from {ws.peer_address}", flush=True)
        ws.text_message_received.connect(ws.send_text_message)
        ws.binary_message_received.connect(ws.send_binary_message)
        ws.disconnected.connect(lambda: print("client disconnected", flush=True))

    server = WebSocketServer(
        name="wsbind SSL Echo Server",
        port=args.port,
        secure_mode=True,
        certificate=args.certificate,
        private_key=args.private_key,
        on_client_connected=client_connected,
        on_ssl_errors=lambda errors: print(f"TLS errors: {errors}", flush=True),
        on_url_changed=lambda url: url and print(f"SSL echo server listening on {url}", flush=True),
        on_error_string_changed=lambda error: error and (print(error, file=sys.stderr), wsbind.quit()),
        listen=True,
    )
    wsbind.run()
    return 1 if server.error_string else 0


if __name__ == "__main__":
    sys.exit(main())
