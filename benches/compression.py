"""permessage-deflate, compression on both ends: wsbind against websockets and aiohttp.

    .venv-bench/bin/python benches/compression.py [--runs 3] [--duration 3]

Each library's client pipelines compressible JSON-like messages (1 KiB and
64 KiB, 16 in flight, binary frames) to the same library's echo server,
both offering and accepting permessage-deflate with their defaults, so both
ends compress and decompress every message. The scripts are those of
``make bench`` (benches/libs/, with ``--compression --json``). Rows: echoes
per second, MB/s of message payload, and CPU time per message of the client
process and of the server process (all their threads), the medians of
``--runs`` interleaved runs. ``make bench`` installs what it needs into
.venv-bench; the table goes to stdout and ``benches/results/compression.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import psutil
from run import LIBS, RESULTS, BenchError, Child, python, run_once, start_server

LIBRARIES = {
    "wsbind": ("wsbind_client.py", "wsbind_server.py"),
    "websockets": ("websockets_client.py", "websockets_server.py"),
    "aiohttp": ("aiohttp_client.py", "aiohttp_server.py"),
}
SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024}
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    args = parser.parse_args()
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
    lines.append("")
    verdict = "met" if not misses else "missed (" + "; ".join(misses) + ")"
    lines.append(f"Target {TARGET}x websockets: {verdict}")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    RESULTS.joinpath("compression.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
