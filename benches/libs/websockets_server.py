"""websockets' server (its asyncio API): an echo server, or a broadcaster to N clients (see common.py)."""

import asyncio
import time

from common import report, server_args
from websockets.asyncio.server import ServerConnection, broadcast, serve

args = server_args()
everyone_connected = asyncio.Event()


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def wait(ws: ServerConnection) -> None:
    if len(ws.server.connections) >= args.clients:
        everyone_connected.set()
    await ws.wait_closed()


async def main() -> None:
    handler = echo if args.mode == "echo" else wait
    compression = "deflate" if args.compression else None
    async with serve(handler, "127.0.0.1", args.port, max_size=None, compression=compression) as server:
        report(event="listening", port=server.sockets[0].getsockname()[1])
        if args.mode == "broadcast":
            await everyone_connected.wait()
            began = time.perf_counter()
            for _ in range(args.messages):
                broadcast(server.connections, args.payload)
            report(event="sent", secs=time.perf_counter() - began)
        await server.serve_forever()


asyncio.run(main())
