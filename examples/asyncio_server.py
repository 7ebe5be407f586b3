"""Echo server in the asyncio style: ``wsbind.serve()`` runs one task per client.

The same server as ``echo_server.py``, written as websockets users write
one: a coroutine per connection, ``async for message in ws``, ``await
ws.send()``. The sockets it hands to the handler are ordinary wsbind
WebSockets, so their properties (``peer_address``, ``close_code``...) and
signals work too. Ctrl-C stops it; open connections are closed with 1001.

From the repository root::

    .venv/bin/python examples/asyncio_server.py               # ws://127.0.0.1:8765
    .venv/bin/python examples/asyncio_server.py --port 8080

then ``examples/asyncio_bot.py`` (or any WebSocket client) talks to it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import wsbind


async def echo(ws: wsbind.WebSocket) -> None:
    """One client: every message goes back as it came, text as text, bytes as bytes."""
    print(f"client connected: {ws.peer_address}:{ws.peer_port}")
    try:
        async for message in ws:
            await ws.send(message)
    finally:
        print(f"client disconnected (close code {ws.close_code})")


async def main(host: str, port: int) -> None:
    async with wsbind.serve(echo, host, port, name="wsbind-asyncio-echo") as server:
        print(f"listening on {server.url}")
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="wsbind echo server, asyncio style")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1]")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on [default: 8765]")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        print("stopped")
    except OSError as e:
        print(f"asyncio server: {e}", file=sys.stderr)
        sys.exit(1)
