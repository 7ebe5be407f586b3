"""aiohttp's client: echo round trips against the native echo server (see common.py)."""

import asyncio

import aiohttp
from common import Meter, client_args

args = client_args()
meter = Meter(args)


async def main() -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(args.url, max_msg_size=0, compress=15 if args.compression else 0) as ws,
    ):
        for _ in range(args.window):
            await ws.send_bytes(args.payload)
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.BINARY:
                break
            if not meter.tick():
                break
            await ws.send_bytes(args.payload)


asyncio.run(main())
meter.report()
