"""aiohttp's server: an echo server, or a broadcaster to N clients (see common.py)."""

import asyncio
import time

from aiohttp import WSMsgType, web
from common import report, server_args

args = server_args()
clients: list[web.WebSocketResponse] = []
everyone_connected = asyncio.Event()


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=0, compress=args.compression)
    await ws.prepare(request)
    if args.mode == "echo":
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
    else:
        clients.append(ws)
        if len(clients) >= args.clients:
            everyone_connected.set()
        async for _ in ws:
            pass
        clients.remove(ws)
    return ws


async def main() -> None:
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    report(event="listening", port=runner.addresses[0][1])
    if args.mode == "broadcast":
        await everyone_connected.wait()
        began = time.perf_counter()
        # aiohttp has no broadcast call: each send is awaited, as its docs do it.
        for _ in range(args.messages):
            for ws in clients:
                await ws.send_bytes(args.payload)
        report(event="sent", secs=time.perf_counter() - began)
    await asyncio.Event().wait()


asyncio.run(main())
