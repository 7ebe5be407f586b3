"""picows's client: echo round trips against the native echo server (see common.py).

Over wss:// (``--ca``) on Python's ``ssl``, as picows does TLS.

picows hands over frames, not messages; the peer sends each message as one
frame, so a frame with ``fin`` set is a whole echo.
"""

import asyncio

from common import MAX_MESSAGE, Meter, client_args, client_ssl_context
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

args = client_args()
meter = Meter(args)


class Client(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        for _ in range(args.window):
            transport.send(WSMsgType.BINARY, args.payload)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE or not frame.fin:
            return
        if meter.tick():
            transport.send(WSMsgType.BINARY, args.payload)
        else:
            transport.disconnect()


async def main() -> None:
    transport, _ = await ws_connect(
        Client, args.url, max_frame_size=MAX_MESSAGE, ssl_context=client_ssl_context(args)
    )
    await transport.wait_disconnected()


asyncio.run(main())
meter.report()
