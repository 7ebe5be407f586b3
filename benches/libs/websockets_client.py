"""websockets' client (its asyncio API): echo round trips against the native echo server (see common.py)."""

import asyncio

from common import Meter, client_args
from websockets.asyncio.client import connect

args = client_args()
meter = Meter(args)


async def main() -> None:
    compression = "deflate" if args.compression else None
    async with connect(args.url, max_size=None, compression=compression) as ws:
        for _ in range(args.window):
            await ws.send(args.payload)
        async for _message in ws:
            if not meter.tick():
                break
            await ws.send(args.payload)
        # Read the echoes still in flight while closing: with its receive
        # queue full, websockets would not read the peer's close frame and
        # would wait out its close timeout instead.
        closing = asyncio.create_task(ws.close())
        async for _message in ws:
            pass
        await closing


asyncio.run(main())
meter.report()
