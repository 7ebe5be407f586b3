"""picows's server: an echo server, or a broadcaster to N clients (see common.py).

wss:// (``--tls-cert``) on Python's ``ssl``, given to asyncio's ``create_server``.
"""

import asyncio
import time

from common import MAX_MESSAGE, report, server_args, server_ssl_context
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

args = server_args()
clients: list[WSTransport] = []


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            # The payload is only valid during this call; send() copies it.
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif frame.msg_type is WSMsgType.CLOSE:
            # picows leaves the closing handshake to the listener.
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class Broadcast(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        clients.append(transport)
        if len(clients) < args.clients:
            return
        began = time.perf_counter()
        for _ in range(args.messages):
            for client in clients:
                client.send(WSMsgType.BINARY, args.payload)
        report(event="sent", secs=time.perf_counter() - began)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        clients.remove(transport)


def listener(request: WSUpgradeRequest) -> WSListener:
    return Echo() if args.mode == "echo" else Broadcast()


async def main() -> None:
    server = await ws_create_server(
        listener, "127.0.0.1", args.port, max_frame_size=MAX_MESSAGE, ssl=server_ssl_context(args)
    )
    report(event="listening", port=server.sockets[0].getsockname()[1])
    await server.serve_forever()


asyncio.run(main())
