"""wsbind's asyncio face as a server: ``wsbind.serve()`` with an echo handler (see common.py).

Written as a websockets user writes it (compare ``websockets_server.py``):
one task per connection, ``async for message in ws: await ws.send(message)``.
Echo only: the broadcast row measures the server object, which the callback
script (``wsbind_server.py``) already does.
"""

import asyncio

from common import MAX_MESSAGE, report, server_args

import wsbind

args = server_args()


async def echo(ws: wsbind.WebSocket) -> None:
    ws.max_allowed_incoming_frame_size = MAX_MESSAGE
    ws.max_allowed_incoming_message_size = MAX_MESSAGE
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    if args.mode != "echo":
        raise SystemExit("wsbind_asyncio_server.py only echoes")
    compression = "deflate" if args.compression else None
    async with wsbind.serve(echo, "127.0.0.1", args.port, compression=compression) as server:
        report(event="listening", port=server.port)
        await server.serve_forever()


asyncio.run(main())
