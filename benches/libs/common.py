"""What every library's benchmark script shares: its command line and its report.

Each ``<lib>_client.py`` and ``<lib>_server.py`` is run by ``benches/run.py`` in
a process of its own, against the native peer (``benches/peer``), and speaks
to run.py in JSON lines on stdout:

client:  ``--url U --mode rtt|pipeline --size B --window W --warmup S --duration S``
         runs echo round trips against the peer's echo server, keeping ``window``
         messages in flight (rtt is a window of one), and prints
         ``{"msgs", "secs", "rate", "mbps", "cpu_us"}`` for the measured part
         (``cpu_us``: the process's CPU time per message, all its threads).
server:  ``--port P --mode echo|broadcast [--clients N --messages M --size B]``
         prints ``{"event": "listening", "port": P}``, then echoes every message
         (``echo``), or, once ``clients`` clients are connected, sends each of
         them ``messages`` messages of ``size`` bytes (``broadcast``).

Every message is binary and every size limit is raised out of the way, so
that all libraries do the same work. Compression is off unless
``--compression`` is given (to client and server alike, for
``benches/compression.py``); ``--json`` makes the payload compressible
JSON-like text of the same size instead of one repeated byte. ``--ca`` (a
client, for a wss:// URL) and ``--tls-cert``/``--tls-key`` (a server: wss://)
are PEM files of the run's throwaway CA and localhost certificate (TLS 1.3,
the wss:// rows). A script ends when run.py closes its
stdin, so that no benchmark process outlives the harness.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import ssl
import sys
import threading
import time
from typing import Any

# Above the largest message of the suite (16 MiB), for every library's limit.
MAX_MESSAGE = 64 * 1024 * 1024


def client_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=["rtt", "pipeline"], default="rtt")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--json", action="store_true", help="send JSON-like text, not one repeated byte")
    parser.add_argument("--ca", help="PEM file of the CA that signed the wss:// server's certificate")
    args = parser.parse_args()
    if args.mode == "rtt":
        args.window = 1
    args.payload = json_like(args.size) if args.json else b"x" * args.size
    return args


def server_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=["echo", "broadcast"], default="echo")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--compression", action="store_true", help="accept permessage-deflate")
    parser.add_argument("--json", action="store_true", help="send JSON-like text, not one repeated byte")
    parser.add_argument("--tls-cert", help="serve wss:// with this PEM certificate chain")
    parser.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    args = parser.parse_args()
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    args.payload = json_like(args.size) if args.json else b"x" * args.size
    exit_with_parent()
    raise_file_limit()
    return args


def raise_file_limit() -> None:
    """Lifts the soft limit on open files to the hard one: the busy and memory
    rows hold 10,000 connections (run.py lifts its own, which its children
    inherit; this is for a server started by hand)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client's ``ssl`` context for a wss:// URL, trusting ``--ca``: TLS 1.3, as the rows say."""
    if args.ca is None:
        return None
    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def server_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's ``ssl`` context from ``--tls-cert``/``--tls-key``, or None for ws://."""
    if args.tls_cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


def json_like(size: int) -> bytes:
    """``size`` bytes of JSON as a price feed sends it: repeated keys, varying numbers.

    The same bytes every time (a fixed seed), so every library compresses
    the same message; deflate shrinks it to about a third.
    """
    rng = random.Random(size)
    records = []
    length = 2
    while length < size:
        record = json.dumps(
            {
                "symbol": rng.choice(["ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI"]),
                "price": round(rng.uniform(10, 500), 2),
                "volume": rng.randrange(1, 100_000),
                "time": 1_764_900_000_000 + rng.randrange(10**6),
            }
        )
        records.append(record)
        length += len(record) + 2
    text = "[" + ", ".join(records) + "]"
    # Cut to the size, with a closing bracket: JSON-like, not parseable, which no library checks.
    return (text[: size - 1] + "]").encode()


def report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def exit_with_parent() -> None:
    """Ends the process when run.py closes our stdin (or dies), whatever the library is doing."""

    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class Meter:
    """Counts echoes after the warm-up, until the measured time is over.

    ``tick()`` is called once per echo received and says whether to go on. The
    clock is read on every message, which costs every library the same; the
    process's CPU time only when the measured window opens and closes.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.size = args.size
        self.warm_until = time.perf_counter() + args.warmup
        self.duration = args.duration
        self.began = 0.0
        self.ended = 0.0
        # The process's CPU time when the window opened, then what it used in it.
        self.cpu_began = 0.0
        self.cpu_used = 0.0
        self.count = 0

    def tick(self) -> bool:
        now = time.perf_counter()
        if not self.began:
            # The first echo after the warm-up opens the measured window.
            if now >= self.warm_until:
                self.began = now
                self.cpu_began = time.process_time()
            return True
        self.count += 1
        if now - self.began >= self.duration:
            self.ended = now
            self.cpu_used = time.process_time() - self.cpu_began
            return False
        return True

    def report(self) -> None:
        secs = self.ended - self.began
        report(
            msgs=self.count,
            secs=round(secs, 6),
            rate=self.count / secs,
            mbps=self.count * self.size / secs / 1e6,
            cpu_us=self.cpu_used / self.count * 1e6,
        )
