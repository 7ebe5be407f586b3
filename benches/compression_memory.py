"""Resident memory per connection of a wsbind server with permessage-deflate
on and off: idle, and after one compressible message each way (when the
compressor and decompressor of each connection exist).

    .venv-bench/bin/python benches/compression_memory.py [--connections 1000]

The clients are the `websockets` library in a second process, offering
compression or not; the server's RSS is read from /proc before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

from wsbind import WebSocketServer

CLIENTS = textwrap.dedent(
    """
    import asyncio, sys, websockets
    url, count, compression, message = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    async def main():
        kwargs = {} if compression == "deflate" else {"compression": None}
        clients = [await websockets.connect(url, **kwargs) for _ in range(count)]
        print("connected", flush=True)
        sys.stdin.readline()
        if message:
            for ws in clients:
                await ws.send(message)
            for ws in clients:
                await ws.recv()
        print("sent", flush=True)
        sys.stdin.readline()
    asyncio.run(main())
    """
)

MESSAGE = json.dumps([{"symbol": f"S{i}", "price": i * 1.5, "volume": i * 100} for i in range(40)])


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(count: int, compression: str | None) -> tuple[float, float]:
    """KiB per connection: idle, and after one message each way."""
    # Memory, not admission, is measured: every client may wait to be taken.
    server = WebSocketServer(listen=True, compression=compression, max_pending_connections=count)
    server.client_connected.connect(lambda ws: ws.text_message_received.connect(ws.send_text_message))
    while not server.url:
        time.sleep(0.01)
    before = rss_kib()
    clients = subprocess.Popen(
        [sys.executable, "-c", CLIENTS, server.url, str(count), compression or "none", MESSAGE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert clients.stdin is not None and clients.stdout is not None
    assert clients.stdout.readline().strip() == "connected"
    while len(server.clients) < count:
        time.sleep(0.01)
    time.sleep(0.5)
    idle = (rss_kib() - before) / count
    clients.stdin.write("\n")
    clients.stdin.flush()
    assert clients.stdout.readline().strip() == "sent"
    time.sleep(0.5)
    used = (rss_kib() - before) / count
    clients.stdin.write("\n")
    clients.stdin.flush()
    clients.wait(30)
    server.listen = False
    return idle, used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.connections} connections, KiB per connection of the server's RSS")
    print("| compression | idle | after one message each way |")
    print("|---|---|---|")
    for compression in (None, "deflate"):
        idle, used = measure(args.connections, compression)
        print(f"| {compression or 'off'} | {idle:.1f} | {used:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
