"""Soak run: a wsbind server under mixed load for a while, its memory and
file descriptors watched.

The server runs in a process of its own (this script with ``--serve``): an
echo server that also broadcasts a message to every client 20 times a
second. This process loads it, with the ``websockets`` library and raw
sockets:

- churn: clients that connect, send one message, wait for its echo, close;
- pipelined echo: clients that keep 8 messages of 16 B to 64 KiB in flight;
- listeners: clients that only receive the broadcasts;
- hostile peers: one that floods pings and never reads, slowloris
  handshakes (a byte a second, until the server's handshake timeout ends
  them), and one that sends garbage after its handshake; each starts again
  when the server drops it, or after 30 s.

Every ``--interval`` seconds it prints the server's resident memory and
open file descriptors (from ``/proc``) and what the load did. The first
sample is taken after a warm-up; the exit status is 1 if a later one is
more than ``--rss-bound`` MiB or ``--fd-bound`` descriptors above it, if
the server died, or if the load saw an error it should not have (a wrong
echo, a normal client refused), and 0 otherwise.

From the repository root, with an optimised build (``make build-release``)::

    make soak                                   # 600 s (SOAK_SECONDS=600)
    SOAK_SECONDS=120 make soak
    .venv/bin/python benches/soak.py --seconds 60 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

BROADCAST_EVERY = 0.05
PIPELINE_SIZES = (16, 1024, 65536)


def serve() -> int:
    """The server under test: echoes, broadcasts, prints its port."""
    import wsbind
    from wsbind import WebSocket, WebSocketServer

    def client_connected(ws: WebSocket) -> None:
        ws.text_message_received.connect(ws.send_text_message)
        ws.binary_message_received.connect(ws.send_binary_message)

    def url_changed(url: str) -> None:
        if url:
            print(url.rsplit(":", 1)[1], flush=True)

    server = WebSocketServer(listen=True, on_client_connected=client_connected, on_url_changed=url_changed)

    def broadcast() -> None:
        # Sending is thread-safe: broadcasts go out from this thread.
        message = "b" * 256
        while True:
            time.sleep(BROADCAST_EVERY)
            server.broadcast_text_message(message)

    threading.Thread(target=broadcast, daemon=True).start()
    wsbind.run()
    return 0


@dataclass
class Counts:
    """What the load did, for the report."""

    churned: int = 0
    echoed: int = 0
    broadcasts: int = 0
    hostile: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(what)


def sample(pid: int) -> tuple[float, int]:
    """The server's resident memory in MiB and its open file descriptors."""
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def churn(url: str, counts: Counts, stop: asyncio.Event) -> None:
    import websockets

    number = 0
    while not stop.is_set():
        number += 1
        try:
            async with websockets.connect(url, max_size=None) as ws:
                await ws.send(f"churn {number}")
                # Broadcasts may come before the echo.
                while (reply := await ws.recv()) != f"churn {number}":
                    if not str(reply).startswith("b"):
                        counts.error(f"churn: wrong echo {reply!r:.40}")
                        break
            counts.churned += 1
        except Exception as e:
            counts.error(f"churn: {e!r}")
        await asyncio.sleep(0.01)


async def pipeline(url: str, counts: Counts, stop: asyncio.Event) -> None:
    import websockets

    try:
        async with websockets.connect(url, max_size=None) as ws:
            number = 0
            while not stop.is_set():
                sent = []
                for _ in range(8):
                    number += 1
                    size = PIPELINE_SIZES[number % len(PIPELINE_SIZES)]
                    message = number.to_bytes(8, "big") * (size // 8)
                    sent.append(message)
                    await ws.send(message)
                for message in sent:
                    while isinstance(reply := await ws.recv(), str):
                        pass  # a broadcast
                    if reply != message:
                        counts.error("pipeline: wrong echo")
                    counts.echoed += 1
                await asyncio.sleep(0.01)
    except Exception as e:
        counts.error(f"pipeline: {e!r}")


async def listener(url: str, counts: Counts, stop: asyncio.Event) -> None:
    import websockets

    try:
        async with websockets.connect(url) as ws:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 1)
                    counts.broadcasts += 1
    except Exception as e:
        counts.error(f"listener: {e!r}")


def handshake(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)
    )


async def open_raw(
    port: int, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if receive_buffer:
        # Set before connecting, so that the window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def ping_flooder(port: int, counts: Counts, stop: asyncio.Event) -> None:
    """Pings as fast as the server takes them, and never reads a byte."""
    ping = bytes([0x89, 0x80]) + os.urandom(4)
    while not stop.is_set():
        # It never reads: the reader is left alone.
        _, writer = await open_raw(port, receive_buffer=4096)
        counts.hostile += 1
        writer.write(handshake(port))
        began = time.monotonic()
        with contextlib.suppress(OSError, EOFError):
            while not stop.is_set() and time.monotonic() - began < 30:
                writer.write(ping * 256)
                # The server stops reading while its pongs wait: drain waits too.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(writer.drain(), 1)
        writer.transport.abort()


async def slowloris(port: int, counts: Counts, stop: asyncio.Event) -> None:
    """A handshake a byte a second, until the server's timeout ends it."""
    while not stop.is_set():
        reader, writer = await open_raw(port)
        counts.hostile += 1
        with contextlib.suppress(OSError, EOFError):
            for byte in handshake(port)[:-2]:
                if stop.is_set() or reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    # The server's 400 or its closing ends the wait early.
                    if await asyncio.wait_for(reader.read(1024), 1) == b"":
                        break
        writer.transport.abort()


async def garbage(port: int, counts: Counts, stop: asyncio.Event) -> None:
    """A good handshake, then random bytes, until the server drops it."""
    while not stop.is_set():
        reader, writer = await open_raw(port)
        counts.hostile += 1
        writer.write(handshake(port))
        with contextlib.suppress(OSError, EOFError):
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                counts.error(f"garbage: handshake refused: {head[:40]!r}")
            for _ in range(30):
                writer.write(random.randbytes(random.randrange(1, 4096)))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(65536), 0.1):
                        break
        writer.transport.abort()
        await asyncio.sleep(0.05)


async def load(args: argparse.Namespace, pid: int, port: int) -> int:
    url = f"ws://127.0.0.1:{port}/"
    counts = Counts()
    stop = asyncio.Event()
    tasks = [
        *(churn(url, counts, stop) for _ in range(4)),
        *(pipeline(url, counts, stop) for _ in range(2)),
        *(listener(url, counts, stop) for _ in range(8)),
        ping_flooder(port, counts, stop),
        *(slowloris(port, counts, stop) for _ in range(4)),
        garbage(port, counts, stop),
    ]
    running = [asyncio.create_task(task) for task in tasks]
    print(f"soak: {args.seconds:.0f} s against the server {pid} on {url}", flush=True)
    print("  time   RSS MiB   fds  connections churned  echoed  broadcasts  hostile", flush=True)
    began = time.monotonic()
    samples = []
    failed = False
    while (elapsed := time.monotonic() - began) < args.seconds:
        await asyncio.sleep(min(args.interval, args.seconds - elapsed))
        if not os.path.exists(f"/proc/{pid}/status"):
            print("soak: FAILED: the server died", flush=True)
            failed = True
            break
        rss, fds = sample(pid)
        samples.append((rss, fds))
        print(
            f"{time.monotonic() - began:6.0f} {rss:9.1f} {fds:5d} {counts.churned:19d}"
            f" {counts.echoed:7d} {counts.broadcasts:11d} {counts.hostile:8d}",
            flush=True,
        )
    stop.set()
    for task in running:
        task.cancel()
    for result in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(result, Exception):
            counts.error(f"a load task failed: {result!r}")
    if len(samples) >= 2:
        (rss0, fds0), later = samples[0], samples[1:]
        rss_max, fds_max = max(s[0] for s in later), max(s[1] for s in later)
        print(
            f"soak: after the warm-up sample ({rss0:.1f} MiB, {fds0} fds): RSS at most "
            f"{rss_max:.1f} MiB ({rss_max - rss0:+.1f}, bound +{args.rss_bound}), "
            f"fds at most {fds_max} ({fds_max - fds0:+d}, bound +{args.fd_bound})"
        )
        if rss_max - rss0 > args.rss_bound:
            print("soak: FAILED: the server's memory grew past its bound")
            failed = True
        if fds_max - fds0 > args.fd_bound:
            print("soak: FAILED: the server's file descriptors grew past their bound")
            failed = True
    if counts.errors:
        print("soak: FAILED: errors the load should not have seen:")
        for error in counts.errors:
            print(f"  {error}")
        failed = True
    if not (counts.churned and counts.echoed and counts.broadcasts):
        print("soak: FAILED: some of the load never got through")
        failed = True
    print("soak: FAILED" if failed else "soak: passed")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="wsbind soak run (make soak)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("SOAK_SECONDS", 600)),
        help="how long the load runs [default: $SOAK_SECONDS or 600]",
    )
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples [default: 60]")
    parser.add_argument(
        "--rss-bound",
        type=float,
        default=32,
        help="MiB the server's RSS may grow after the first sample [default: 32]",
    )
    parser.add_argument(
        "--fd-bound",
        type=int,
        default=32,
        help="file descriptors the server may gain after the first sample [default: 32]",
    )
    args = parser.parse_args()
    if args.serve:
        return serve()
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return asyncio.run(load(args, server.pid, port))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
