"""wsbind's asyncio face: echo round trips against the native echo server (see common.py).

Written as a websockets user writes it (compare ``websockets_client.py``):
``async with connect()``, ``await send()``, ``async for message in ws``.
Column ``wsbind-asyncio`` of ``run.py``'s asyncio groups.
"""

import asyncio

from common import MAX_MESSAGE, Meter, client_args

import wsbind

args = client_args()
meter = Meter(args)


async def main() -> None:
    async with wsbind.connect(
        args.url,
        compression=None,
        max_allowed_incoming_frame_size=MAX_MESSAGE,
        max_allowed_incoming_message_size=MAX_MESSAGE,
    ) as ws:
        for _ in range(args.window):
            await ws.send(args.payload)
        async for _message in ws:
            if not meter.tick():
                break
            await ws.send(args.payload)


asyncio.run(main())
meter.report()
