"""permessage-deflate, compression on both ends: wsbind against websockets and aiohttp.

    .venv-bench/bin/python benches/compression.py [--runs 3] [--duration 3]
        [--broadcast-messages 100] [--build NAME=DIR]

Each library's client pipelines compressible JSON-like messages (1 KiB and
64 KiB, 16 in flight, binary frames) to the same library's echo server,
both offering and accepting permessage-deflate with their defaults, so both
ends compress and decompress every message. The scripts are those of
``make bench`` (benches/libs/, with ``--compression --json``). Rows: echoes
per second, MB/s of message payload, and CPU time per message of the client
process and of the server process (all their threads), the medians of
``--runs`` interleaved runs.

The broadcast row: 1,000 clients of the native peer (``ws-peer
broadcast-sink --deflate 1``) offer permessage-deflate as Chromium does;
the library's server broadcasts ``--broadcast-messages`` JSON-like 1 KiB
messages to all of them, each compressed for each connection as the
negotiated parameters require. The sink counts messages without inflating
them (RSV1 on a first frame says one came compressed), so it costs the same
whatever the server. Rate: messages delivered per second, all clients.

``--build NAME=DIR`` adds a column for another build of wsbind, an unpacked
wheel, as in run.py (benches/README.md, "Comparing two builds").
``make bench`` installs what it needs into .venv-bench; the tables go to
stdout and ``benches/results/compression.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil
from run import (
    BROADCAST_CLIENTS,
    BUILDS,
    LIBS,
    PEER,
    RESULTS,
    BenchError,
    Child,
    python,
    run_once,
    start_server,
)

LIBRARIES = {
    "wsbind": ("wsbind_client.py", "wsbind_server.py"),
    "websockets": ("websockets_client.py", "websockets_server.py"),
    "aiohttp": ("aiohttp_client.py", "aiohttp_server.py"),
}
SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024}
BROADCAST_LIBRARIES = ["wsbind", "websockets"]
BROADCAST_SIZE = 1024
WINDOW = 16
TARGET = 1.5  # issue 23: at least 1.5x websockets on every compression row


def cpu_seconds(server: Child) -> float:
    times = psutil.Process(server.proc.pid).cpu_times()
    return times.user + times.system


def measure(lib: str, size: int, duration: float) -> dict[str, float]:
    client, server_script = LIBRARIES[lib]
    flags = ["--compression", "--json"]
    server_argv = [*python(lib), str(LIBS / server_script), "--mode", "echo", *flags]
    server, url = start_server(server_argv, f"{lib}-deflate")
    try:
        cpu_before, began = cpu_seconds(server), time.perf_counter()
        argv = [*python(lib), str(LIBS / client), "--url", url, "--mode", "pipeline", *flags]
        argv += ["--size", str(size), "--window", str(WINDOW), "--duration", str(duration)]
        result = run_once(argv, f"{lib}-deflate-client", duration * 10 + 30)
        elapsed = time.perf_counter() - began
        server_cpu = cpu_seconds(server) - cpu_before
    finally:
        server.stop()
    # The server's CPU over the client's whole run (warm-up and closing too),
    # per message at the measured rate: a slight overestimate, alike for all.
    echoed = result["rate"] * elapsed
    return {
        "rate": result["rate"],
        "mbps": result["mbps"],
        "client_cpu_us": result["cpu_us"],
        "server_cpu_us": server_cpu / echoed * 1e6,
    }


def measure_broadcast(lib: str, messages: int) -> dict[str, float]:
    work = ["--clients", str(BROADCAST_CLIENTS), "--messages", str(messages), "--size", str(BROADCAST_SIZE)]
    server_script = LIBRARIES[lib][1]
    argv = [*python(lib), str(LIBS / server_script), "--mode", "broadcast", "--compression", "--json", *work]
    server, url = start_server(argv, f"{lib}-deflate-broadcast")
    try:
        cpu_before = cpu_seconds(server)
        sink = [str(PEER), "broadcast-sink", "--url", url, "--count", str(BROADCAST_CLIENTS)]
        sink += ["--expect", str(messages), "--deflate", "1"]
        result = run_once(sink, "peer-deflate", 300)
        server_cpu = cpu_seconds(server) - cpu_before
    finally:
        server.stop()
    # Only a row of compressed messages measures compression.
    if result["deflate"] != result["open"] or result["compressed"] != result["msgs"]:
        raise BenchError(
            f"{result['deflate']} of {result['open']} connections agreed to deflate, "
            f"{result['compressed']} of {result['msgs']} messages came compressed"
        )
    if result["msgs"] < result["expected"]:
        raise BenchError(f"delivered {result['msgs']:,} of {result['expected']:,} messages")
    return {"rate": result["rate"], "server_cpu_us": server_cpu / result["msgs"] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    parser.add_argument("--broadcast-messages", type=int, default=100)
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another build of wsbind (an unpacked wheel) measured as library NAME, as in run.py",
    )
    args = parser.parse_args()
    for build in args.build:
        name, folder = build.split("=", 1)
        LIBRARIES[name] = LIBRARIES["wsbind"]
        BUILDS[name] = Path(folder)
        BROADCAST_LIBRARIES.insert(1, name)
        args.libs += f",{name}"
    libs = [lib for lib in args.libs.split(",") if lib]
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in range(args.runs):
        for label, size in SIZES.items():
            # Interleaved: every library once per round, so that a slower
            # moment of the machine falls on all of them.
            for lib in libs:
                try:
                    samples.setdefault((lib, label), []).append(measure(lib, size, args.duration))
                except BenchError as e:
                    print(f"{lib} {label}: {e}", file=sys.stderr)
        for lib in [lib for lib in BROADCAST_LIBRARIES if lib in libs]:
            try:
                samples.setdefault((lib, "broadcast"), []).append(
                    measure_broadcast(lib, args.broadcast_messages)
                )
            except BenchError as e:
                print(f"{lib} broadcast: {e}", file=sys.stderr)
        print(f"run {run + 1} of {args.runs} done", file=sys.stderr, flush=True)

    def median(lib: str, label: str, key: str) -> float:
        values = [s[key] for s in samples.get((lib, label), [])]
        return statistics.median(values) if values else float("nan")

    lines = [
        f"Compression on both ends, JSON-like messages, {WINDOW} in flight, median of {args.runs} runs",
        "",
        "| library | size | messages/s | MB/s | x websockets | client CPU µs/msg | server CPU µs/msg |",
        "|---|---|---|---|---|---|---|",
    ]
    misses = []
    for label in SIZES:
        for lib in libs:
            rate = median(lib, label, "rate")
            ratio = rate / median("websockets", label, "rate") if "websockets" in libs else float("nan")
            if lib == "wsbind" and ratio < TARGET:
                misses.append(f"{label}: {ratio:.2f}x websockets")
            lines.append(
                f"| {lib} | {label} | {rate:,.0f} | {median(lib, label, 'mbps'):,.1f} | {ratio:.2f} "
                f"| {median(lib, label, 'client_cpu_us'):,.1f} | {median(lib, label, 'server_cpu_us'):,.1f} |"
            )
    lines += [
        "",
        f"Broadcast of {args.broadcast_messages} JSON-like {BROADCAST_SIZE} B messages to "
        f"{BROADCAST_CLIENTS:,} clients offering permessage-deflate, median of {args.runs} runs",
        "",
        "| library | messages delivered/s | x websockets | server CPU µs/msg delivered |",
        "|---|---|---|---|",
    ]
    for lib in [lib for lib in BROADCAST_LIBRARIES if lib in libs]:
        rate = median(lib, "broadcast", "rate")
        ratio = rate / median("websockets", "broadcast", "rate") if "websockets" in libs else float("nan")
        if lib == "wsbind" and ratio < TARGET:
            misses.append(f"broadcast: {ratio:.2f}x websockets")
        lines.append(
            f"| {lib} | {rate:,.0f} | {ratio:.2f} | {median(lib, 'broadcast', 'server_cpu_us'):,.2f} |"
        )
    lines.append("")
    verdict = "met" if not misses else "missed (" + "; ".join(misses) + ")"
    lines.append(f"Target {TARGET}x websockets: {verdict}")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    RESULTS.joinpath("compression.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
