"""A bot in the asyncio style: connect, say hello, print the replies, close.

The ten-line bot of the README written as websockets users write one:
``async with wsbind.connect(url) as ws``, ``await ws.send()``, ``await
ws.recv()``. The exit status is 0 when every reply came back, and 1 when
the connection failed (the reason is printed: refused, a 403, a timeout...).

Start ``examples/asyncio_server.py`` (or ``examples/echo_server.py --port
8765``) first, then, from the repository root::

    .venv/bin/python examples/asyncio_bot.py                            # ws://127.0.0.1:8765
    .venv/bin/python examples/asyncio_bot.py --url ws://127.0.0.1:8080 --count 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import wsbind


async def main(url: str, count: int) -> int:
    try:
        async with wsbind.connect(url) as ws:
            print(f"connected to {ws.url}")
            for number in range(1, count + 1):
                await ws.send(f"Hello, world! #{number}")
                print(f"message received: {await ws.recv()}")
            latency = await ws.ping()
            print(f"ping: {latency * 1000:.1f} ms")
        # Leaving the block closed the connection with 1000, and waited for it.
        print(f"closed with {ws.close_code}")
    except (OSError, wsbind.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="wsbind bot, asyncio style")
    parser.add_argument(
        "--url", default="ws://127.0.0.1:8765", help="server URL [default: ws://127.0.0.1:8765]"
    )
    parser.add_argument("--count", type=int, default=1, help="messages to send [default: 1]")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.count)))
