"""picows's websockets-compatible client (``picows.websockets``): echo round trips (see common.py).

The same script as ``websockets_client.py``, with picows's module in place of
websockets': it is what a websockets user gets by changing the import.
"""

import asyncio

from common import Meter, client_args
from picows.websockets import connect

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
        # Read the echoes still in flight while closing, as websockets_client.py does.
        closing = asyncio.create_task(ws.close())
        async for _message in ws:
            pass
        await closing


asyncio.run(main())
meter.report()
