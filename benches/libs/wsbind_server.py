"""wsbind's server: an echo server, or a broadcaster to N clients (see common.py).

Handlers run on wsbind's event thread, as in a script that calls wsbind.run().
"""

import time

from common import MAX_MESSAGE, report, server_args

import wsbind
from wsbind import WebSocket, WebSocketServer

args = server_args()


def on_url(url: str) -> None:
    # From the URL: a server that listens at once reports it from inside
    # its constructor, before `server` is assigned.
    if url:
        report(event="listening", port=int(url.rstrip("/").rsplit(":", 1)[1]))


def echo(ws: WebSocket) -> None:
    ws.max_allowed_incoming_frame_size = MAX_MESSAGE
    ws.max_allowed_incoming_message_size = MAX_MESSAGE
    ws.binary_message_received.connect(ws.send_binary_message)


def broadcast(ws: WebSocket) -> None:
    if len(server.clients) < args.clients:
        return
    began = time.perf_counter()
    # Framed once per message in the native core, no Python loop per client.
    for _ in range(args.messages):
        server.broadcast_binary_message(args.payload)
    report(event="sent", secs=time.perf_counter() - began)


server = WebSocketServer(
    port=args.port,
    compression="deflate" if args.compression else None,
    # Qt's default of 30 connections waiting for client_connected would turn
    # away part of the peer's burst of connections with HTTP 503.
    max_pending_connections=100_000,
    on_url_changed=on_url,
    # wss:// with the run's localhost certificate (rustls, TLS 1.3).
    secure_mode=args.tls_cert is not None,
    certificate=args.tls_cert or "",
    private_key=args.tls_key or "",
    on_client_connected=echo if args.mode == "echo" else broadcast,
    listen=True,
)
wsbind.run()
