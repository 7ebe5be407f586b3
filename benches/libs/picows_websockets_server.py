"""picows's websockets-compatible server (``picows.websockets``): an echo server (see common.py).

The same echo as ``websockets_server.py``, with picows's module in place of
websockets'. Echo only, as ``wsbind_asyncio_server.py``.
"""

import asyncio

from common import report, server_args
from picows.websockets import ServerConnection, serve

args = server_args()


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    if args.mode != "echo":
        raise SystemExit("picows_websockets_server.py only echoes")
    compression = "deflate" if args.compression else None
    async with serve(echo, "127.0.0.1", args.port, max_size=None, compression=compression) as server:
        report(event="listening", port=server.sockets[0].getsockname()[1])
        await server.serve_forever()


asyncio.run(main())
