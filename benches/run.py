"""wsbind's benchmark suite: every library on the same work against the same native peer.

    make bench                      # builds the peer and a release wheel, then runs this
    .venv-bench/bin/python benches/run.py [--quick] [--runs N] [--libs wsbind,picows] [--groups rtt,memory]
    .venv-bench/bin/python benches/run.py --report-only   # table and plots again, from results.json
    .venv-bench/bin/python benches/run.py --libs wsbind,picows --groups mbps --build new=DIR
                                    # and a second build of wsbind, unpacked in DIR, in a column "new"

Each library's side runs in a process of its own (``benches/libs/<lib>_client.py``
and ``<lib>_server.py``, see ``libs/common.py``); the other side is always the
native peer (``benches/peer``, tokio-tungstenite on one thread), so the only
thing that changes from one column to the next is the library. The peer
against itself is shown too, as the ceiling.

The first groups compare wsbind's handlers with each library's own idiom. The
``asyncio-*`` and ``sync-*`` groups (``--groups asyncio,sync``) compare one
style of code: wsbind's asyncio face with ``picows.websockets``, websockets
and aiohttp, and its blocking face with websocket-client and
``websockets.sync``, and check issue 21's targets for them.

Each figure is the median of ``--runs`` runs, with the spread (min to max). The
runs are interleaved (run 1 of every library, then run 2 ...), so that a
burst of load from elsewhere on the machine hits every library alike.

Writes ``benches/results/results.md`` (a table per group, with ratios to
picows), ``results.json`` (every sample, to compare before and after a
change), one PNG per group, and the libraries' stderr under ``logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCHES = Path(__file__).resolve().parent
PEER = BENCHES / "peer" / "target" / "release" / "ws-peer"
LIBS = BENCHES / "libs"
RESULTS = BENCHES / "results"

# Library -> (client script, server script); None where it has no such side.
LIBRARIES: dict[str, tuple[str | None, str | None]] = {
    "wsbind": ("wsbind_client.py", "wsbind_server.py"),
    "picows": ("picows_client.py", "picows_server.py"),
    "websockets": ("websockets_client.py", "websockets_server.py"),
    "aiohttp": ("aiohttp_client.py", "aiohttp_server.py"),
    "websocket-client": ("websocket_client_client.py", None),
    # The asyncio faces (issue 21): wsbind.connect/serve, and picows's
    # websockets-compatible module; websockets and aiohttp above are asyncio too.
    "wsbind-asyncio": ("wsbind_asyncio_client.py", "wsbind_asyncio_server.py"),
    "picows-websockets": ("picows_websockets_client.py", "picows_websockets_server.py"),
    # The blocking faces: wsbind.sync and websockets.sync (websocket-client above is one too).
    "wsbind-sync": ("wsbind_sync_client.py", None),
    "websockets-sync": ("websockets_sync_client.py", None),
}
BASELINE = "picows"
# The peer against itself: what the machine can do with no Python at all.
NATIVE = "native"
COLUMNS = [*LIBRARIES, NATIVE]
# Face -> the columns of its groups. "" is wsbind's handlers (callbacks)
# against each library's own idiom; the others compare one programming style.
# --build adds its columns to each face; NATIVE, the ceiling, is in every one.
FACE_COLUMNS: dict[str, list[str]] = {
    "": ["wsbind", "picows", "websockets", "aiohttp", "websocket-client", NATIVE],
    "asyncio": ["wsbind-asyncio", "picows-websockets", "websockets", "aiohttp", NATIVE],
    "sync": ["wsbind-sync", "websocket-client", "websockets-sync", NATIVE],
}
# Face -> wsbind's column in it, whose scripts a --build column runs too.
OURS = {"": "wsbind", "asyncio": "wsbind-asyncio", "sync": "wsbind-sync"}
# Columns that are a face of a library installed under another name.
DISTRIBUTIONS = {"wsbind-asyncio": "wsbind", "wsbind-sync": "wsbind", "picows-websockets": "picows"}
DISTRIBUTIONS["websockets-sync"] = "websockets"
# Column -> the folder that holds another build of wsbind (--build), put
# first on the path of that column's scripts.
BUILDS: dict[str, Path] = {}

KiB, MiB = 1024, 1024 * 1024
# The report's typography, named so that they read as meant.
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"


@dataclass(frozen=True)
class Row:
    """One line of a table: a figure measured for every library."""

    key: str
    label: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    unit: str
    rows: tuple[Row, ...]
    # Which FACE_COLUMNS, and the column the ratios are to.
    face: str = ""
    baseline: str = BASELINE

    @property
    def ours(self) -> str:
        return OURS[self.face]


@dataclass(frozen=True)
class Echo:
    """An echo workload on one connection: ``window`` messages of ``size`` bytes in flight."""

    size: int
    window: int
    mode: str  # the peer's mode: rtt, pipeline or mbps

    @property
    def figure(self) -> str:
        # What the row shows: messages per second, or MB per second.
        return "mbps" if self.mode == "mbps" else "rate"


# Row key -> its workload, for the two sides of rows 1-3.
ECHO_ROWS: dict[str, Echo] = {
    "rtt": Echo(32, 1, "rtt"),
    "pipe-32": Echo(32, 64, "pipeline"),
    "pipe-1k": Echo(KiB, 64, "pipeline"),
    "mb-64k": Echo(64 * KiB, 8, "mbps"),
    "mb-16m": Echo(16 * MiB, 2, "mbps"),
}
# Echo row key -> the row of the library's CPU time per message on the same work.
CPU_ROWS = {"mb-64k": "cpu-64k", "mb-16m": "cpu-16m"}
# Latency: every one of these connections does 1 KiB round trips, one at a time.
LATENCY_CONNECTIONS = 100
BROADCAST_CLIENTS = 1000
BROADCAST_SIZE = 32
MEMORY_CONNECTIONS = 10_000
# Issue 25. Busy connections: each sends a BUSY_SIZE message every
# BUSY_INTERVAL_MS to the echo server, 100k messages a second in all.
BUSY_CONNECTIONS = 10_000
BUSY_INTERVAL_MS = 100
BUSY_SIZE = 100
# The spin's cost: one connection, one 32 B round trip every 10 ms (100 a
# second), the server's CPU in % of a core.
SPIN_INTERVAL_MS = 10
SPIN_SIZE = 32
# The broadcast row again, with ten times the clients and a tenth of the messages.
BROADCAST_MANY_CLIENTS = 10_000
# The broadcast row again, with twenty times the messages: 760 KB for each
# client, more than its socket buffers and the native server's write buffer
# (128 KiB) hold, so that what is timed is the fan-out itself. With 1,000
# messages the native server writes nothing until its last message is framed
# (see "Broadcast, sustained" in benches/README.md).
BROADCAST_SUSTAINED = 20


def cpu_key(row_key: str) -> str:
    """The key of a row's companion figure: the library's CPU time per message on that work.

    Not a row of its own: ``cell()`` shows it next to the row's figure.
    """
    return f"{row_key}/cpu"


GROUPS = [
    Group(
        "rtt",
        "Round trips per second, 32 B, one connection",
        "round trips/s",
        (Row("client/rtt", "client"), Row("server/rtt", "server")),
    ),
    Group(
        "pipeline",
        "Pipelined messages per second, one connection, 64 in flight",
        "messages/s",
        (
            Row("client/pipe-32", "client, 32 B"),
            Row("client/pipe-1k", "client, 1 KiB"),
            Row("server/pipe-32", "server, 32 B"),
            Row("server/pipe-1k", "server, 1 KiB"),
        ),
    ),
    Group(
        "mbps",
        f"Large messages, one connection, MB/s echoed (8 {TIMES} 64 KiB or 2 {TIMES} 16 MiB in flight)",
        "MB/s",
        (
            Row("client/mb-64k", "client, 64 KiB"),
            Row("client/mb-16m", "client, 16 MiB"),
            Row("server/mb-64k", "server, 64 KiB"),
            Row("server/mb-16m", "server, 16 MiB"),
        ),
    ),
    Group(
        "broadcast",
        f"Broadcast: one server, {BROADCAST_CLIENTS:,} clients, {BROADCAST_SIZE} B messages",
        "messages/s delivered",
        (Row("server/broadcast", "server"),),
    ),
    Group(
        "broadcast-10k",
        f"Broadcast: one server, {BROADCAST_MANY_CLIENTS:,} clients, {BROADCAST_SIZE} B messages",
        "messages/s delivered",
        (Row("server/broadcast-10k", "server"),),
    ),
    Group(
        "broadcast-sustained",
        f"Broadcast, sustained: one server, {BROADCAST_CLIENTS:,} clients, {BROADCAST_SIZE} B messages, "
        f"{BROADCAST_SUSTAINED} times the messages (wsbind and the native peer only)",
        "messages/s delivered",
        (Row("server/broadcast-sustained", "server"),),
    ),
    Group(
        "memory",
        "Resident memory per idle connection on the server",
        "KiB per connection",
        (Row("server/memory", "server", higher_is_better=False),),
    ),
    Group(
        "latency",
        f"Latency of 1 KiB round trips, {LATENCY_CONNECTIONS} busy connections on the server",
        "ms",
        (
            Row("server/p50", "p50", higher_is_better=False),
            Row("server/p99", "p99", higher_is_better=False),
            # wsbind only: what its event thread's spin buys here, and costs.
            Row("server/p50-spin-off", "p50, WSBIND_SPIN_US=0", higher_is_better=False),
            Row("server/p99-spin-off", "p99, WSBIND_SPIN_US=0", higher_is_better=False),
        ),
    ),
    Group(
        "busy",
        f"{BUSY_CONNECTIONS:,} busy connections, each sending {BUSY_SIZE} B every {BUSY_INTERVAL_MS} ms "
        f"to the echo server ({BUSY_CONNECTIONS * 1000 // BUSY_INTERVAL_MS:,} messages/s offered)",
        "messages/s echoed; ms; messages",
        (
            Row("server/busy", "echoed/s"),
            Row("server/busy-p50", "p50, ms", higher_is_better=False),
            Row("server/busy-p99", "p99, ms", higher_is_better=False),
            Row("server/busy-behind", "not echoed at the end", higher_is_better=False),
        ),
    ),
    Group(
        "spin",
        f"The spin's cost: one connection, a {SPIN_SIZE} B round trip every {SPIN_INTERVAL_MS} ms, "
        "the echo server's CPU",
        "% of a core",
        (
            Row("server/spin", "server", higher_is_better=False),
            # wsbind only: its event thread without the 50 µs spin.
            Row("server/spin-off", "server, WSBIND_SPIN_US=0", higher_is_better=False),
        ),
    ),
    # Measured in the same runs as the MB/s rows. Steadier than rates on a
    # small machine, where three busy threads on two cores make the rates
    # depend on where the scheduler puts them: the figure to compare two
    # builds by.
    Group(
        "cpu",
        "CPU time per large message echoed, the library's whole process (all its threads)",
        "µs per message",
        (
            Row("client/cpu-64k", "client, 64 KiB", higher_is_better=False),
            Row("client/cpu-16m", "client, 16 MiB", higher_is_better=False),
            Row("server/cpu-64k", "server, 64 KiB", higher_is_better=False),
            Row("server/cpu-16m", "server, 16 MiB", higher_is_better=False),
        ),
    ),
    # Issue 21: the same echo rows, each library written the asyncio way
    # (`async for message in ws: await ws.send(...)`), then the blocking way.
    Group(
        "asyncio-rtt",
        "asyncio: round trips per second, 32 B, one connection",
        "round trips/s",
        (Row("client/rtt", "client"), Row("server/rtt", "server")),
        face="asyncio",
        baseline="picows-websockets",
    ),
    Group(
        "asyncio-pipeline",
        "asyncio: pipelined messages per second, 32 B, one connection, 64 in flight",
        "messages/s",
        (Row("client/pipe-32", "client"), Row("server/pipe-32", "server")),
        face="asyncio",
        baseline="picows-websockets",
    ),
    Group(
        "asyncio-mbps",
        f"asyncio: 64 KiB messages, one connection, MB/s echoed (8 {TIMES} 64 KiB in flight)",
        "MB/s",
        (Row("client/mb-64k", "client"), Row("server/mb-64k", "server")),
        face="asyncio",
        baseline="picows-websockets",
    ),
    Group(
        "sync-rtt",
        "Blocking: round trips per second, 32 B, one connection",
        "round trips/s",
        (Row("client/rtt", "client"),),
        face="sync",
        baseline="websocket-client",
    ),
    Group(
        "sync-pipeline",
        "Blocking: pipelined messages per second, 32 B, one connection, 64 in flight",
        "messages/s",
        (Row("client/pipe-32", "client"),),
        face="sync",
        baseline="websocket-client",
    ),
    Group(
        "sync-mbps",
        f"Blocking: 64 KiB messages, one connection, MB/s echoed (8 {TIMES} 64 KiB in flight)",
        "MB/s",
        (Row("client/mb-64k", "client"),),
        face="sync",
        baseline="websocket-client",
    ),
]
# The issue's targets for the faces: (face, wsbind's least ratio to each column).
FACE_TARGETS = {
    "asyncio": {"picows-websockets": 1.5, "websockets": 3.0},
    "sync": {"websocket-client": 2.0, "websockets-sync": 2.0},
}


# -- issue 25: the wss:// rows and the stock peers (their own groups, faces
# and functions; see "wss:// and stock peers" in benches/README.md).
#
# wss://: TLS 1.3 with a throwaway CA and localhost certificate made once
# per run (trustme); wsbind on rustls, picows on Python's ssl, and
# `native`, the peer on tokio-rustls against itself. Stock: the libraries
# against an unmodified tokio-tungstenite (`ws-peer stock-client` and
# `stock-server`, default configuration, multi-threaded runtime) and
# websockets' client; `native` is those stock peers against the stock server.
WSS_ROWS: dict[str, Echo] = {
    "rtt": Echo(32, 1, "rtt"),
    "pipe-32": Echo(32, 64, "pipeline"),
    "mb-64k": Echo(64 * KiB, 16, "mbps"),
}
# The issue's workload for stock peers: 64 KiB messages with 64 in flight.
STOCK_ROWS: dict[str, Echo] = {
    "rtt": Echo(32, 1, "rtt"),
    "pipe-32": Echo(32, 64, "pipeline"),
    "mb-64k": Echo(64 * KiB, 64, "mbps"),
}
# The stock clients a library's echo server is measured with: row prefix -> label.
STOCK_CLIENTS = {"stock-tt": "tokio-tungstenite client", "stock-websockets": "websockets client"}
# Connections the handshake client keeps opening at once: enough to keep a
# server busy while one waits for its TCP and TLS round trips.
HANDSHAKE_CONCURRENCY = 4
for _face in ("wss", "stock"):
    FACE_COLUMNS[_face] = ["wsbind", "picows", NATIVE]
    OURS[_face] = "wsbind"
GROUPS += [
    Group(
        "wss-rtt",
        "wss://: round trips per second, 32 B, one connection",
        "round trips/s",
        (Row("wss-client/rtt", "client"), Row("wss-server/rtt", "server")),
        face="wss",
    ),
    Group(
        "wss-pipeline",
        "wss://: pipelined messages per second, 32 B, one connection, 64 in flight",
        "messages/s",
        (Row("wss-client/pipe-32", "client"), Row("wss-server/pipe-32", "server")),
        face="wss",
    ),
    Group(
        "wss-mbps",
        f"wss://: 64 KiB messages, one connection, MB/s echoed (16 {TIMES} 64 KiB in flight)",
        "MB/s",
        (Row("wss-client/mb-64k", "client"), Row("wss-server/mb-64k", "server")),
        face="wss",
    ),
    Group(
        "wss-handshakes",
        f"wss://: TLS and WebSocket handshakes per second on the server ({HANDSHAKE_CONCURRENCY} at a time, "
        "sessions resumed where the server allows)",
        "connections/s",
        (Row("wss-server/handshakes", "server"),),
        face="wss",
    ),
    *(
        Group(
            f"stock-{name}",
            f"Stock peers: {title}",
            unit,
            (
                Row(f"stock-client/{key}", "client, against a tokio-tungstenite server"),
                *(Row(f"{prefix}/{key}", f"server, {label}") for prefix, label in STOCK_CLIENTS.items()),
            ),
            face="stock",
        )
        for name, key, title, unit in [
            ("rtt", "rtt", "round trips per second, 32 B, one connection", "round trips/s"),
            ("pipeline", "pipe-32", "pipelined messages per second, 32 B, 64 in flight", "messages/s"),
            ("mbps", "mb-64k", f"64 KiB messages, MB/s echoed (64 {TIMES} 64 KiB in flight)", "MB/s"),
        ]
    ),
]


class BenchError(Exception):
    """One measurement failed; the suite goes on and the table says why."""


@dataclass
class Settings:
    runs: int
    warmup: float
    duration: float
    memory_connections: int
    broadcast_messages: int
    libs: list[str]
    groups: list[str]
    notes: list[str] = field(default_factory=list)
    # --build: column -> folder.
    builds: dict[str, str] = field(default_factory=dict)
    busy_connections: int = BUSY_CONNECTIONS

    def timing(self) -> list[str]:
        return ["--warmup", str(self.warmup), "--duration", str(self.duration)]

    def timeout(self) -> float:
        # Generous: a 16 MiB round trip on a slow library, on a loaded machine.
        return self.warmup + self.duration + 60


# -- processes


class Child:
    """A long-running process (a server, or the peer holding connections).

    It reads nothing from its stdin: closing it is how the child is told to go.
    """

    def __init__(self, argv: list[str], log_name: str) -> None:
        RESULTS.joinpath("logs").mkdir(parents=True, exist_ok=True)
        self.log = RESULTS.joinpath("logs", f"{log_name}.log").open("a")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_json(self, timeout: float) -> dict[str, Any]:
        """The next JSON line it prints (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"no answer within {timeout:.0f} s") from None
            if line is None:
                raise BenchError(f"exited with code {self.proc.wait()}; see {self.log.name}")
            with contextlib.suppress(json.JSONDecodeError):
                return dict(json.loads(line))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@contextlib.contextmanager
def child(argv: list[str], log_name: str) -> Iterator[Child]:
    proc = Child(argv, log_name)
    try:
        yield proc
    finally:
        proc.stop()


def run_once(argv: list[str], log_name: str, timeout: float) -> dict[str, Any]:
    """Runs a measuring command to its end; returns the last JSON line it printed."""
    RESULTS.joinpath("logs").mkdir(parents=True, exist_ok=True)
    log = RESULTS.joinpath("logs", f"{log_name}.log")
    with log.open("a") as stderr:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"no result within {timeout:.0f} s; see {log}") from None
    if done.returncode != 0:
        raise BenchError(f"exited with code {done.returncode}; see {log}")
    for line in reversed(done.stdout.splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            return dict(json.loads(line))
    raise BenchError(f"printed no result; see {log}")


def start_server(argv: list[str], log_name: str) -> tuple[Child, str]:
    """Starts a server and waits until it listens; returns it and its URL."""
    server = Child(argv, log_name)
    try:
        port = server.next_json(30)["port"]
    except BenchError:
        server.stop()
        raise
    return server, f"ws://127.0.0.1:{port}/"


def python(lib: str) -> list[str]:
    """How a library's script starts: another build of wsbind first on the path."""
    build = BUILDS.get(lib)
    return [sys.executable] if build is None else ["env", f"PYTHONPATH={build}", sys.executable]


def library_server(lib: str, *args: str) -> list[str]:
    script = LIBRARIES[lib][1]
    assert script is not None
    return [*python(lib), str(LIBS / script), *args]


def add_builds(builds: dict[str, str]) -> list[str]:
    """Adds columns that run wsbind's scripts for each other build of wsbind; returns them.

    Build ``old`` is column ``old`` in the callback groups, ``old-asyncio``
    and ``old-sync`` in the asyncio and blocking ones.
    """
    added = []
    for name, folder in builds.items():
        for face, ours in OURS.items():
            column = f"{name}-{face}" if face else name
            LIBRARIES[column] = LIBRARIES[ours]
            BUILDS[column] = Path(folder)
            COLUMNS.insert(COLUMNS.index(NATIVE), column)
            FACE_COLUMNS[face].insert(-1, column)
            added.append(column)
    return added


# -- measurements: each returns {row key: value} for one library, one run


Measured = dict[str, float]
Failures = dict[str, str]


def measure_client_side(lib: str, echo_url: str, s: Settings, failures: Failures) -> Measured:
    """The library's client against the native echo server."""
    script = LIBRARIES[lib][0]
    out: Measured = {}
    for key, work in ECHO_ROWS.items():
        rows = wanted(s, lib, "client", key)
        if not rows:
            continue
        mode = "rtt" if work.mode == "rtt" else "pipeline"
        argv = [*python(lib), str(LIBS / str(script)), "--url", echo_url, "--mode", mode]
        argv += ["--size", str(work.size), "--window", str(work.window), *s.timing()]
        try:
            result = run_once(argv, f"{lib}-client", s.timeout())
            figures = {f"client/{key}": result[work.figure]}
            if key in CPU_ROWS:
                figures[f"client/{CPU_ROWS[key]}"] = result["cpu_us"]
            out |= {row: figures[row] for row in rows}
            if f"client/{key}" in rows:
                out[cpu_key(f"client/{key}")] = result["cpu_us"]
        except BenchError as e:
            failures |= dict.fromkeys(rows, str(e))
    return out


def peer_echo_rows(
    lib: str, url: str, prefix: str, s: Settings, failures: Failures, server: Child | None
) -> Measured:
    """The native client against ``lib``'s echo server at ``url``: rows 1-3, and the
    server's CPU time per message (warm-up included, at the same rate)."""
    out: Measured = {}
    for key, work in ECHO_ROWS.items():
        # Against the native server (server is None) there is no library's CPU to measure.
        rows = [r for r in wanted(s, lib, prefix, key) if server is not None or r == f"{prefix}/{key}"]
        if not rows:
            continue
        argv = [str(PEER), "client", "--url", url, "--mode", work.mode]
        argv += ["--size", str(work.size), "--window", str(work.window), *s.timing()]
        try:
            used = server_cpu(server)
            result = run_once(argv, "peer", s.timeout())
            used = server_cpu(server) - used
            msgs = result["msgs"] * (s.warmup + s.duration) / s.duration
            figures = {f"{prefix}/{key}": result[work.figure]}
            if key in CPU_ROWS and msgs:
                figures[f"{prefix}/{CPU_ROWS[key]}"] = used / msgs * 1e6
            out |= {row: figures[row] for row in rows if row in figures}
            if server is not None and msgs and f"{prefix}/{key}" in rows:
                out[cpu_key(f"{prefix}/{key}")] = used / msgs * 1e6
        except BenchError as e:
            failures |= dict.fromkeys(rows, explain(e, server))
        if server is not None and not server.alive:
            # Whatever comes next would fail too, for the same reason.
            failures.setdefault(f"{prefix}/{key}", f"the server died; see {server.log.name}")
            break
    return out


def peer_latency(
    lib: str, url: str, s: Settings, failures: Failures, server: Child | None, rows: str = ""
) -> Measured:
    """The native client's 1 KiB round trips on many connections at once, against ``url``;
    ``rows`` is what the rows' keys end with (``-spin-off``)."""
    p50, p99 = f"server/p50{rows}", f"server/p99{rows}"
    if not selected(s, p50, lib) or (server is not None and not server.alive):
        return {}
    argv = [str(PEER), "client", "--url", url, "--mode", "latency", "--size", str(KiB)]
    argv += ["--connections", str(LATENCY_CONNECTIONS), *s.timing()]
    try:
        used = server_cpu(server)
        result = run_once(argv, "peer", s.timeout())
        used = server_cpu(server) - used
    except BenchError as e:
        failures[p50] = failures[p99] = explain(e, server)
        return {}
    out = {p50: result["p50_us"] / 1000, p99: result["p99_us"] / 1000}
    # The server's whole run, warm-up included, at the same rate.
    msgs = result["msgs"] * (s.warmup + s.duration) / s.duration
    if server is not None and msgs:
        out[cpu_key(p50)] = used / msgs * 1e6
    return out


def latency_without_spin(lib: str, s: Settings, failures: Failures) -> Measured:
    """The latency rows against wsbind's echo server with its event thread's spin off."""
    if not selected(s, "server/p50-spin-off", lib) or LIBRARIES[lib] != LIBRARIES["wsbind"]:
        return {}
    try:
        argv = ["env", "WSBIND_SPIN_US=0", *library_server(lib, "--mode", "echo")]
        server, url = start_server(argv, f"{lib}-server")
    except BenchError as e:
        failures["server/p50-spin-off"] = failures["server/p99-spin-off"] = f"server did not start: {e}"
        return {}
    try:
        return peer_latency(lib, url, s, failures, server, "-spin-off")
    finally:
        server.stop()


def server_cpu(server: Child | None) -> float:
    """CPU seconds the server process has used, all its threads (0 for none).

    From each thread's ``schedstat`` (nanoseconds): the user and system
    times of ``stat`` count in ticks of 10 ms, too coarse for the spin's
    row, where a server uses a few ms a second. A thread that ended is no
    longer counted; the servers keep theirs to the end.
    """
    if server is None:
        return 0.0
    total = 0
    for task in Path(f"/proc/{server.proc.pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(task.read_text().split()[0])
    if total:
        return total / 1e9
    times = psutil.Process(server.proc.pid).cpu_times()
    return float(times.user + times.system)


def explain(error: BenchError, server: Child | None) -> str:
    if server is not None and not server.alive:
        return f"{error} (the server exited; see {server.log.name})"
    return str(error)


def measure_server_side(lib: str, s: Settings, failures: Failures) -> Measured:
    out: Measured = {}
    # The rows measured against the library's echo server.
    echo_rows = [f"server/{k}" for k in [*ECHO_ROWS, *CPU_ROWS.values(), "p50", "p99"]]
    if any(selected(s, row, lib) for row in echo_rows):
        try:
            server, url = start_server(library_server(lib, "--mode", "echo"), f"{lib}-server")
        except BenchError as e:
            failures |= dict.fromkeys(echo_rows, f"server did not start: {e}")
        else:
            try:
                # Latency before the large messages, which leave big buffers behind.
                out.update(peer_latency(lib, url, s, failures, server))
                out.update(peer_echo_rows(lib, url, "server", s, failures, server))
            finally:
                server.stop()
    out |= latency_without_spin(lib, s, failures)
    if selected(s, "server/broadcast", lib):
        try:
            out |= measure_broadcast(lib, s, failures)
        except BenchError as e:
            failures["server/broadcast"] = str(e)
    out |= measure_scale(lib, s, failures, None)
    if selected(s, "server/memory", lib):
        try:
            out["server/memory"] = measure_memory(lib, s, failures)
        except BenchError as e:
            failures["server/memory"] = str(e)
    return out


def measure_broadcast(
    lib: str,
    s: Settings,
    failures: Failures,
    row: str = "server/broadcast",
    clients: int = BROADCAST_CLIENTS,
    messages: int | None = None,
) -> Measured:
    """Messages delivered per second, and the server's CPU time per delivered message.

    The CPU time is counted from when every client is connected (the sink's
    "ready"; the server starts once its last client is, so it may have
    sent a little before), to keep the handshakes out of it.
    """
    messages = messages or s.broadcast_messages
    work = ["--clients", str(clients), "--messages", str(messages), "--size", str(BROADCAST_SIZE)]
    if lib == NATIVE:
        argv = [str(PEER), "broadcast-server", *work]
    else:
        argv = library_server(lib, "--mode", "broadcast", *work)
    server, url = start_server(argv, f"{lib}-broadcast")
    try:
        sink = [str(PEER), "broadcast-sink", "--url", url, "--count", str(clients)]
        sink += ["--expect", str(messages)]
        with child(sink, "peer") as peer:
            peer.next_json(300)
            used = server_cpu(server if lib != NATIVE else None)
            result = peer.next_json(600)
            used = server_cpu(server if lib != NATIVE else None) - used
    finally:
        server.stop()
    if result["msgs"] < result["expected"]:
        failures[row] = f"delivered {result['msgs']:,} of {result['expected']:,} messages"
    if not result["rate"]:
        raise BenchError("no message arrived")
    out = {row: float(result["rate"])}
    if lib != NATIVE:
        out[cpu_key(row)] = used / result["msgs"] * 1e6
    return out


def measure_scale(lib: str, s: Settings, failures: Failures, echo_url: str | None) -> Measured:
    """Issue 25's rows on the server side: the spin's cost, busy connections, broadcast to 10,000.

    ``echo_url`` is the native echo server's, for the native column (whose
    CPU is not measured); a library's echo server is started here.
    """
    out: Measured = {}
    if selected(s, "server/spin", lib) and lib != NATIVE:
        out |= peer_busy(lib, s, failures, "spin", echo_url)
        # What the event thread's spin costs: wsbind's server again without it.
        if lib != NATIVE and LIBRARIES[lib] == LIBRARIES["wsbind"]:
            out |= peer_busy(lib, s, failures, "spin-off", None)
    if selected(s, "server/busy", lib):
        out |= peer_busy(lib, s, failures, "busy", echo_url)
    # wsbind's callback face and the native peer only: picows would take
    # over a minute a run, websockets many.
    ours = lib == NATIVE or LIBRARIES[lib] == LIBRARIES["wsbind"]
    if selected(s, "server/broadcast-sustained", lib) and ours:
        try:
            messages = s.broadcast_messages * BROADCAST_SUSTAINED
            out |= measure_broadcast(lib, s, failures, "server/broadcast-sustained", messages=messages)
        except BenchError as e:
            failures["server/broadcast-sustained"] = str(e)
    if selected(s, "server/broadcast-10k", lib):
        try:
            # A tenth of the messages: websockets would take minutes a run otherwise.
            messages = max(1, s.broadcast_messages // 10)
            out |= measure_broadcast(
                lib, s, failures, "server/broadcast-10k", BROADCAST_MANY_CLIENTS, messages
            )
        except BenchError as e:
            failures["server/broadcast-10k"] = str(e)
    return out


def peer_busy(lib: str, s: Settings, failures: Failures, which: str, echo_url: str | None) -> Measured:
    """The peer's open-loop ``busy`` client against an echo server: ``which`` is
    "busy" (many connections) or "spin"/"spin-off" (one, 100 messages a second)."""
    rows = {
        "busy": ["server/busy", "server/busy-p50", "server/busy-p99", "server/busy-behind"],
        "spin": ["server/spin"],
        "spin-off": ["server/spin-off"],
    }[which]
    if which == "busy":
        work = ["--connections", str(s.busy_connections), "--interval-ms", str(BUSY_INTERVAL_MS)]
        work += ["--size", str(BUSY_SIZE)]
    else:
        work = ["--connections", "1", "--interval-ms", str(SPIN_INTERVAL_MS), "--size", str(SPIN_SIZE)]
    server: Child | None = None
    try:
        if echo_url is None:
            argv = library_server(lib, "--mode", "echo")
            if which == "spin-off":
                argv = ["env", "WSBIND_SPIN_US=0", *argv]
            server, url = start_server(argv, f"{lib}-server")
        else:
            url = echo_url
        argv = [str(PEER), "client", "--url", url, "--mode", "busy", *work, *s.timing()]
        with child(argv, "peer") as peer:
            peer.next_json(300)  # every connection open
            peer.next_json(s.timeout())  # the measured window opens
            used = server_cpu(server)
            result = peer.next_json(s.timeout())
            used = server_cpu(server) - used
            # The server goes first: thousands of connections dropped under
            # it would only fill its log with their errors.
            if server is not None:
                server.stop()
    except BenchError as e:
        failures |= dict.fromkeys(rows, explain(e, server))
        return {}
    finally:
        if server is not None:
            server.stop()
    if which != "busy":
        out = {rows[0]: used / result["secs"] * 100} if server is not None else {}
        return out
    out = {
        "server/busy": result["rate"],
        "server/busy-p50": result["p50_us"] / 1000,
        "server/busy-p99": result["p99_us"] / 1000,
        "server/busy-behind": float(result["in_flight"]),
    }
    if server is not None and result["msgs"]:
        out[cpu_key("server/busy")] = used / result["msgs"] * 1e6
    return out


def measure_memory(lib: str, s: Settings, failures: Failures) -> float:
    """RSS growth of the library's server per idle connection, in KiB."""
    server, url = start_server(library_server(lib, "--mode", "echo"), f"{lib}-memory")
    try:
        rss = psutil.Process(server.proc.pid).memory_info
        time.sleep(0.5)
        before = rss().rss
        argv = [str(PEER), "connect-many", "--url", url, "--count", str(s.memory_connections)]
        with child(argv, "peer") as peer:
            try:
                opened = peer.next_json(300)
                # The peer's handshakes are done; the server may still be handing
                # connections to Python. Measure once its memory stops growing.
                after = settle(lambda: rss().rss)
            finally:
                # The server goes first: thousands of connections dropped
                # under it would only fill its log with their errors.
                server.stop()
    finally:
        server.stop()
    count = int(opened["open"])
    if count < s.memory_connections:
        failures["server/memory"] = f"only {count:,} of {s.memory_connections:,} connections opened"
    if not count:
        raise BenchError("no connection opened")
    return (after - before) / count / KiB


def settle(sample: Callable[[], int], quiet: float = 1.0, limit: float = 30.0) -> int:
    """Samples until the value has not grown by more than 0.5 % for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    value, stable_since = sample(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = sample()
        if now > value * 1.005:
            value, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            break
    return max(value, sample())


def selected(s: Settings, row_key: str, column: str) -> bool:
    """Whether a selected group has the row and the column."""
    return any(
        row_key in {r.key for r in g.rows} and column in FACE_COLUMNS[g.face]
        for g in GROUPS
        if g.key in s.groups
    )


def wanted(s: Settings, column: str, side: str, key: str) -> list[str]:
    """The selected rows that one run of the echo workload ``key`` measures on ``side``."""
    rows = [f"{side}/{key}"] + ([f"{side}/{CPU_ROWS[key]}"] if key in CPU_ROWS else [])
    return [row for row in rows if selected(s, row, column)]


# -- issue 25: wss:// and the stock peers


@dataclass
class Issue25Peers:
    """The run's native servers and certificate files for the wss:// and stock groups."""

    wss_url: str = ""
    stock_url: str = ""
    # PEM files: the CA, and the localhost certificate chain with its key.
    ca: str = ""
    cert: str = ""
    key: str = ""


def wants_face(s: Settings, face: str) -> bool:
    return any(g.face == face for g in GROUPS if g.key in s.groups)


@contextlib.contextmanager
def issue25_peers(s: Settings) -> Iterator[Issue25Peers]:
    """Makes the throwaway CA and certificate, and starts the native TLS and stock echo servers."""
    peers = Issue25Peers()
    with contextlib.ExitStack() as stack:
        if wants_face(s, "wss"):
            import tempfile

            import trustme

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsbind-bench-tls-")))
            ca = trustme.CA()
            issued = ca.issue_cert("127.0.0.1", "localhost")
            peers.ca, peers.cert, peers.key = (str(folder / n) for n in ("ca.pem", "cert.pem", "key.pem"))
            ca.cert_pem.write_to_path(peers.ca)
            Path(peers.cert).write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
            issued.private_key_pem.write_to_path(peers.key)
            argv = [str(PEER), "echo-server", "--port", "0", "--tls-cert", peers.cert, "--tls-key", peers.key]
            server = stack.enter_context(child(argv, "peer-wss-echo-server"))
            peers.wss_url = f"wss://127.0.0.1:{server.next_json(10)['port']}/"
        if wants_face(s, "stock"):
            argv = [str(PEER), "stock-server", "--port", "0"]
            server = stack.enter_context(child(argv, "peer-stock-server"))
            peers.stock_url = f"ws://127.0.0.1:{server.next_json(10)['port']}/"
        yield peers


def measure_issue25(lib: str, s: Settings, failures: Failures, peers: Issue25Peers) -> Measured:
    """The wss:// and stock rows of one column, one run."""
    out: Measured = {}
    tls = ["--tls-cert", peers.cert, "--tls-key", peers.key]
    if lib == NATIVE:
        out |= issue25_echo(lib, "wss-client", WSS_ROWS, peers.wss_url, peer_client(peers), s, failures)
        out |= copy_rows(out, "wss-client/", "wss-server/", failures)
        out |= issue25_handshakes(lib, peers.wss_url, peers, s, failures)
        out |= issue25_echo(lib, "stock-client", STOCK_ROWS, peers.stock_url, stock_client(), s, failures)
        out |= copy_rows(out, "stock-client/", "stock-tt/", failures)
        stock = peers.stock_url
        out |= issue25_echo(lib, "stock-websockets", STOCK_ROWS, stock, websockets_client(), s, failures)
        return out
    script = [*python(lib), str(LIBS / str(LIBRARIES[lib][0]))]
    out |= issue25_echo(lib, "wss-client", WSS_ROWS, peers.wss_url, [*script, "--ca", peers.ca], s, failures)
    out |= issue25_echo(lib, "stock-client", STOCK_ROWS, peers.stock_url, script, s, failures)
    wss_rows = [f"wss-server/{k}" for k in [*WSS_ROWS, "handshakes"]]
    with issue25_server(lib, "wss", wss_rows, tls, s, failures) as url:
        if url:
            url = url.replace("ws://", "wss://", 1)
            out |= issue25_echo(lib, "wss-server", WSS_ROWS, url, peer_client(peers), s, failures)
            out |= issue25_handshakes(lib, url, peers, s, failures)
    stock_rows = [f"{p}/{k}" for p in STOCK_CLIENTS for k in STOCK_ROWS]
    with issue25_server(lib, "stock", stock_rows, [], s, failures) as url:
        if url:
            out |= issue25_echo(lib, "stock-tt", STOCK_ROWS, url, stock_client(), s, failures)
            out |= issue25_echo(lib, "stock-websockets", STOCK_ROWS, url, websockets_client(), s, failures)
    return out


def peer_client(peers: Issue25Peers) -> list[str]:
    return [str(PEER), "client", "--ca", peers.ca]


def stock_client() -> list[str]:
    return [str(PEER), "stock-client"]


def websockets_client() -> list[str]:
    return [sys.executable, str(LIBS / "websockets_client.py")]


def copy_rows(measured: Measured, old: str, new: str, failures: Failures) -> Measured:
    """The native column's client rows are its server rows too: the same peer on both ends."""
    for key in [k for k in failures if k.startswith(old)]:
        failures[key.replace(old, new, 1)] = failures[key]
    return {k.replace(old, new, 1): v for k, v in measured.items() if k.startswith(old)}


@contextlib.contextmanager
def issue25_server(
    lib: str, name: str, rows: list[str], extra: list[str], s: Settings, failures: Failures
) -> Iterator[str | None]:
    """The library's echo server for the ``rows`` selected, or None (and the failure noted)."""
    if not LIBRARIES[lib][1] or not any(selected(s, row, lib) for row in rows):
        yield None
        return
    try:
        server, url = start_server(library_server(lib, "--mode", "echo", *extra), f"{lib}-{name}-server")
    except BenchError as e:
        failures |= {row: f"server did not start: {e}" for row in rows if selected(s, row, lib)}
        yield None
        return
    try:
        yield url
    finally:
        server.stop()


def issue25_echo(
    lib: str, prefix: str, work: dict[str, Echo], url: str, argv: list[str], s: Settings, failures: Failures
) -> Measured:
    """One echo command per selected row ``prefix/key``: ``argv`` against ``url``."""
    out: Measured = {}
    for key, echo in work.items():
        row = f"{prefix}/{key}"
        if not selected(s, row, lib):
            continue
        # Python clients take rtt or pipeline; the peer's clients name mbps too.
        mode = echo.mode if argv[0] == str(PEER) else ("rtt" if echo.mode == "rtt" else "pipeline")
        command = [*argv, "--url", url, "--mode", mode, "--size", str(echo.size)]
        command += ["--window", str(echo.window), *s.timing()]
        try:
            out[row] = run_once(command, f"{lib}-{prefix}", s.timeout())[echo.figure]
        except BenchError as e:
            failures[row] = str(e)
    return out


def issue25_handshakes(lib: str, url: str, peers: Issue25Peers, s: Settings, failures: Failures) -> Measured:
    row = "wss-server/handshakes"
    if not selected(s, row, lib):
        return {}
    argv = [*peer_client(peers), "--url", url, "--mode", "handshakes"]
    argv += ["--concurrency", str(HANDSHAKE_CONCURRENCY), *s.timing()]
    try:
        result = run_once(argv, f"{lib}-handshakes", s.timeout())
    except BenchError as e:
        failures[row] = str(e)
        return {}
    if result["failed"]:
        failures[row] = f"{result['failed']} handshakes failed"
    if result["resumed"] < result["msgs"]:
        s.notes.append(
            f"{lib}, handshakes: {result['resumed']:,} of {result['msgs']:,} TLS sessions resumed."
        )
    return {row: float(result["rate"])}


def check_issue25_targets(results: Results, s: Settings) -> list[str]:
    """Issue 25's targets for the wss:// and stock rows, each with what this run measured."""
    checks = []
    for group in GROUPS:
        if group.key not in s.groups or group.face not in ("wss", "stock"):
            continue
        for r in group.rows:
            ours = median_of(results, r, "wsbind")
            least = {BASELINE: 1.0}
            if group.face == "wss" and group.key != "wss-handshakes":
                least[NATIVE] = 0.8
            for other, lowest in least.items():
                theirs = median_of(results, r, other)
                if ours is None or not theirs:
                    continue
                x = ratio(r, ours, theirs)
                checks.append(
                    f"- {'✅' if x >= lowest else '❌'} {group.key} {r.label}: ≥ {lowest:g}{TIMES} {other}: "
                    f"{x:.2f}{TIMES} ({compact(ours)} against {compact(theirs)})"
                )
    return checks


# -- the whole run


@dataclass
class Results:
    # row key -> column -> one value per run that succeeded
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # row key -> column -> why a run failed (the last reason)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, column: str, measured: Measured, failures: Failures) -> None:
        for key, value in measured.items():
            self.samples.setdefault(key, {}).setdefault(column, []).append(value)
        for key, why in failures.items():
            self.failures.setdefault(key, {})[column] = why


def run_all(s: Settings) -> Results:
    results = Results()
    with (
        child([str(PEER), "echo-server", "--port", "0"], "peer-echo-server") as echo,
        issue25_peers(s) as peers,
    ):
        echo_url = f"ws://127.0.0.1:{echo.next_json(10)['port']}/"
        for run in range(1, s.runs + 1):
            for lib in [*s.libs, NATIVE]:
                if not any(lib in FACE_COLUMNS[g.face] for g in GROUPS if g.key in s.groups):
                    continue
                began = time.monotonic()
                measured: Measured = {}
                failures: Failures = {}
                if lib == NATIVE:
                    # The same native client against the native server: the
                    # ceiling for both the client and the server rows.
                    measured = peer_latency(NATIVE, echo_url, s, failures, None)
                    for key, value in peer_echo_rows(NATIVE, echo_url, "client", s, failures, None).items():
                        measured[key] = value
                        measured[key.replace("client/", "server/", 1)] = value
                    for key in [k for k in failures if k.startswith("client/")]:
                        failures[key.replace("client/", "server/", 1)] = failures[key]
                    measured = {k: v for k, v in measured.items() if selected(s, k, NATIVE)}
                    if selected(s, "server/broadcast", NATIVE):
                        try:
                            measured |= measure_broadcast(NATIVE, s, failures)
                        except BenchError as e:
                            failures["server/broadcast"] = str(e)
                    measured |= measure_scale(NATIVE, s, failures, echo_url)
                else:
                    client, server = LIBRARIES[lib]
                    if client:
                        measured |= measure_client_side(lib, echo_url, s, failures)
                    if server:
                        measured |= measure_server_side(lib, s, failures)
                measured |= measure_issue25(lib, s, failures, peers)
                results.add(lib, measured, failures)
                status = f"{len(failures)} failed" if failures else "ok"
                print(
                    f"run {run}/{s.runs}  {lib:<17} {time.monotonic() - began:5.1f} s  {status}", flush=True
                )
    return results


# -- reporting


def compact(value: float) -> str:
    """Three significant digits, with k and M: 123k, 1.23M, 45.6, 0.123."""
    suffix = ""
    if abs(value) >= 1e6:
        value, suffix = value / 1e6, "M"
    elif abs(value) >= 1e3:
        value, suffix = value / 1e3, "k"
    if abs(value) >= 100:
        return f"{value:.0f}{suffix}"
    if abs(value) >= 10:
        return f"{value:.1f}{suffix}"
    if abs(value) >= 1 or not value:
        return f"{value:.2f}{suffix}"
    return f"{value:.3f}"


def ratio(row: Row, value: float, baseline: float) -> float:
    """How many times better than the baseline: above 1 is better, for every row."""
    return value / baseline if row.higher_is_better else baseline / value


def median_of(results: Results, row: Row | str, column: str) -> float | None:
    """The median of a row's (or a row key's) runs in ``column``; None without any."""
    key = row if isinstance(row, str) else row.key
    values = results.samples.get(key, {}).get(column)
    return statistics.median(values) if values else None


def cell(results: Results, group: Group, row: Row, column: str, notes: list[str]) -> str:
    values = results.samples.get(row.key, {}).get(column, [])
    why = results.failures.get(row.key, {}).get(column)
    mark = ""
    if why:
        notes.append(f"{column}, {row.label}: {why}")
        mark = f" [{len(notes)}]"
    if not values:
        return f"failed{mark}" if why else "—"
    median = statistics.median(values)
    text = f"**{compact(median)}**"
    if len(values) > 1:
        text += f" ({compact(min(values))}{DASH}{compact(max(values))})"
    baseline = median_of(results, row, group.baseline)
    if column != group.baseline and baseline and median:
        text += f" {ratio(row, median, baseline):.2f}{TIMES}"
    cpu = results.samples.get(cpu_key(row.key), {}).get(column)
    if cpu:
        text += f", {compact(statistics.median(cpu))} µs CPU/msg"
    return text + mark


def markdown(results: Results, s: Settings, env: dict[str, Any]) -> str:
    lines = [
        "# wsbind benchmarks",
        "",
        f"Made by `make bench` (`{env.get('command', 'benches/run.py')}`) on {env['date']}.",
        "",
        f"- Machine: {env['cpu']}, {env['cores']} cores, load average {env['load']} when it started; "
        f"Linux {env['kernel']}; Python {env['python']}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        f"- Each cell: **median** (min{DASH}max) of {s.runs} run(s), then the ratio to {BASELINE} — how many "
        f"times better, so above 1{TIMES} is better on every row, including memory and latency "
        f"(in the asyncio tables, the ratio to picows-websockets; in the blocking ones, to "
        f"websocket-client). "
        f"Each run: {s.warmup} s of warm-up, then {s.duration} s measured.",
        "- The other end is always the native peer (tokio-tungstenite, one thread), binary messages; "
        f"`{NATIVE}` is that peer against itself. The asyncio libraries run on asyncio's default loop; "
        "wsbind runs its handlers on its event thread, as a script does. The asyncio tables compare "
        "one style, `async for message in ws: await ws.send(...)`: wsbind-asyncio is `wsbind.connect`/"
        "`wsbind.serve`, picows-websockets is `picows.websockets`; the blocking ones `send()`/`recv()` "
        "on the main thread: wsbind-sync is `wsbind.sync`, websockets-sync `websockets.sync`.",
        *(f"- {note}" for note in s.notes),
        "",
    ]
    targets = check_targets(results)
    if targets:
        lines += ["## Targets (issue 5)", "", *targets, ""]
    targets = check_scale_targets(results, s)
    if targets:
        lines += ["## Targets (issue 25)", "", *targets, ""]
    targets = check_face_targets(results, s)
    if targets:
        lines += ["## Targets of the asyncio and blocking faces (issue 21)", "", *targets, ""]
    targets = check_issue25_targets(results, s)
    if targets:
        lines += ["## Targets of the wss:// and stock-peer rows (issue 25)", "", *targets, ""]
    for group in GROUPS:
        if group.key not in s.groups:
            continue
        columns = [
            c
            for c in FACE_COLUMNS[group.face]
            if any(
                c in results.samples.get(r.key, {}) or c in results.failures.get(r.key, {})
                for r in group.rows
            )
        ]
        if not columns:
            continue
        notes: list[str] = []
        better = "higher" if group.rows[0].higher_is_better else "lower"
        if len({r.higher_is_better for r in group.rows}) > 1:
            # The busy group: a rate, then latencies and a backlog.
            better = f"the ratio above 1{TIMES}"
        lines += [
            f"## {group.title}",
            "",
            f"{group.unit}, {better} is better. ![{group.key}]({group.key}.png)",
            "",
        ]
        lines.append("| | " + " | ".join(columns) + " |")
        lines.append("|---|" + "---|" * len(columns))
        for row in group.rows:
            cells = [cell(results, group, row, c, notes) for c in columns]
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"[{i}] {note}  " for i, note in enumerate(notes, 1)]
        if notes:
            lines.append("")
    return "\n".join(lines)


def check_targets(results: Results) -> list[str]:
    """The issue's targets for wsbind, each with what this run measured."""
    checks = []
    times = "{:.2f}" + TIMES

    def check(text: str, value: float | None, ok: Callable[[float], bool], shown: str) -> None:
        if value is not None:
            checks.append(f"- {'✅' if ok(value) else '❌'} {text}: {shown.format(value)}")

    def row(key: str) -> Row:
        return next(r for g in GROUPS for r in g.rows if r.key == key)

    for group in GROUPS[:3]:
        for r in group.rows:
            w, p = median_of(results, r, "wsbind"), median_of(results, r, BASELINE)
            if w is not None and p:
                check(
                    f"{group.key} {r.label}: ≥ 1.0{TIMES} picows", ratio(r, w, p), lambda x: x >= 1.0, times
                )
    for side in ("client", "server"):
        r = row(f"{side}/mb-16m")
        w, n = median_of(results, r, "wsbind"), median_of(results, r, NATIVE)
        if w is not None and n:
            check(f"16 MiB {side}: ≥ 0.9{TIMES} native", w / n, lambda x: x >= 0.9, times)
    r = row("server/broadcast")
    w, b = median_of(results, r, "wsbind"), median_of(results, r, "websockets")
    if w is not None and b:
        check(f"broadcast: ≥ 10{TIMES} websockets", w / b, lambda x: x >= 10, times)
    w = median_of(results, row("server/memory"), "wsbind")
    check("memory: ≤ 16 KiB per idle connection", w, lambda x: x <= 16, "{:.1f} KiB")
    return checks


def check_scale_targets(results: Results, s: Settings) -> list[str]:
    """Issue 25's targets: CPU per message on every row, busy connections, memory, broadcast to 10,000."""
    checks = []

    def median(key: str, column: str) -> float | None:
        return median_of(results, key, column)

    def check(text: str, ok: bool, shown: str) -> None:
        checks.append(f"- {'✅' if ok else '❌'} {text}: {shown}")

    for group in GROUPS:
        if group.key not in s.groups or not group.baseline.startswith(BASELINE):
            continue
        for r in group.rows:
            ours, theirs = median(cpu_key(r.key), group.ours), median(cpu_key(r.key), group.baseline)
            if ours is not None and theirs:
                check(
                    f"{group.key} {r.label}: CPU per message ≤ {group.baseline}'s",
                    ours <= theirs,
                    f"{ours:.1f} against {theirs:.1f} µs",
                )
    rate = median("server/busy", "wsbind")
    behind, offered = median("server/busy-behind", "wsbind"), s.busy_connections * 1000 / BUSY_INTERVAL_MS
    if rate is not None and behind is not None:
        # Keeping up: nearly all the offered rate echoed, and no more left
        # unanswered at the end than a tenth of a second's worth.
        check(
            f"{s.busy_connections:,} busy connections: keeps up ({offered:,.0f}/s offered)",
            rate >= 0.95 * offered and behind <= offered / 10,
            f"{rate:,.0f}/s echoed, {behind:,.0f} not echoed at the end",
        )
    for key, what in [("server/busy-p99", "p99"), (cpu_key("server/busy"), "CPU per message")]:
        ours, theirs = median(key, "wsbind"), median(key, BASELINE)
        if ours is not None and theirs:
            check(f"busy connections: {what} ≤ picows'", ours <= theirs, f"{ours:.3g} against {theirs:.3g}")
    ours, theirs = median("server/spin", "wsbind"), median("server/spin", BASELINE)
    if ours is not None and theirs is not None:
        off = median("server/spin-off", "wsbind")
        shown = f"{ours:.2f}% against picows' {theirs:.2f}%" + (
            f" (wsbind without the spin: {off:.2f}%)" if off is not None else ""
        )
        checks.append(f"- the spin's cost at 100 round trips/s, CPU of a core: {shown}")
    p50_row = "server/p50-spin-off"
    cpu_off, p50_off = median(cpu_key(p50_row), "wsbind"), median(p50_row, "wsbind")
    cpu_theirs, p50_theirs = median(cpu_key("server/p50"), BASELINE), median("server/p50", BASELINE)
    if cpu_off is not None and p50_off is not None and cpu_theirs is not None and p50_theirs is not None:
        checks.append(
            f"- the latency rows without the spin: {cpu_off:.2f} µs CPU per message against picows' "
            f"{cpu_theirs:.2f}, p50 {p50_off:.3g} against {p50_theirs:.3g} ms"
        )
    w = median("server/memory", "wsbind")
    if w is not None:
        check(
            f"memory at {s.memory_connections:,} connections: ≤ 8 KiB per idle connection",
            w <= 8,
            f"{w:.1f} KiB",
        )
    for row in ("server/broadcast", "server/broadcast-sustained"):
        ours, theirs = median(row, "wsbind"), median(row, NATIVE)
        if ours is not None and theirs:
            check(
                f"{row.split('/')[1]} to {BROADCAST_CLIENTS:,}: ≥ 0.8{TIMES} native",
                ours >= 0.8 * theirs,
                f"{ours / theirs:.2f}{TIMES}",
            )
    ours, theirs = median("server/broadcast-10k", "wsbind"), median("server/broadcast-10k", "websockets")
    if ours is not None and theirs:
        check(
            f"broadcast to {BROADCAST_MANY_CLIENTS:,}: ≥ 10{TIMES} websockets",
            ours >= 10 * theirs,
            f"{ours / theirs:.2f}{TIMES}",
        )
    return checks


def check_face_targets(results: Results, s: Settings) -> list[str]:
    """Issue 21's targets: wsbind's asyncio and blocking faces against the same style elsewhere."""
    checks = []
    for group in GROUPS:
        if group.key not in s.groups or group.face not in FACE_TARGETS:
            continue
        for r in group.rows:
            ours = median_of(results, r, group.ours)
            for other, least in FACE_TARGETS[group.face].items():
                theirs = median_of(results, r, other)
                if ours is None or not theirs:
                    continue
                x = ratio(r, ours, theirs)
                checks.append(
                    f"- {'✅' if x >= least else '❌'} {group.key} {r.label}: ≥ {least:g}{TIMES} {other}: "
                    f"{x:.2f}{TIMES} ({compact(ours)} against {compact(theirs)})"
                )
    return checks


def plot(results: Results, s: Settings) -> list[Path]:
    """One bar chart per group: the median, the spread as error bars, wsbind's ratio to picows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    colours = {
        "wsbind": "#d62728",
        "picows": "#1f77b4",
        "websockets": "#2ca02c",
        "aiohttp": "#9467bd",
        "websocket-client": "#8c564b",
        "wsbind-asyncio": "#d62728",
        "wsbind-sync": "#d62728",
        "picows-websockets": "#1f77b4",
        "websockets-sync": "#2ca02c",
        NATIVE: "#7f7f7f",
    }
    # Other builds of wsbind (--build), in shades of wsbind's red.
    shades = ["#ff9896", "#e377c2", "#f7b6d2"]
    for i, build in enumerate(BUILDS):
        colours[build] = shades[i % len(shades)]
    written = []
    for group in GROUPS:
        if group.key not in s.groups:
            continue
        columns = [
            c
            for c in FACE_COLUMNS[group.face]
            if any(c in results.samples.get(r.key, {}) for r in group.rows)
        ]
        if not columns:
            continue
        stats = {
            (row.key, column): (statistics.median(v), min(v), max(v))
            for row in group.rows
            for column in columns
            if (v := results.samples.get(row.key, {}).get(column))
        }
        # The native peer can be several times faster than any library: its
        # bars are cut at the top of the libraries' scale, with their value
        # written on them, so that the libraries stay comparable.
        tops = [top for (_, column), (_, _, top) in stats.items() if column != NATIVE]
        ceiling = 1.2 * max(tops) if tops else None
        fig, ax = plt.subplots(figsize=(3.2 + 0.32 * len(group.rows) * len(columns), 4.2))
        width = 0.8 / len(columns)
        labelled: set[str] = set()
        for i, column in enumerate(columns):
            for j, row in enumerate(group.rows):
                if (row.key, column) not in stats:
                    continue
                median, low, high = stats[row.key, column]
                x = j + (i - (len(columns) - 1) / 2) * width
                cut = column == NATIVE and ceiling is not None and median > ceiling
                ax.bar(
                    x,
                    ceiling if cut else median,
                    width,
                    yerr=None if cut else [[median - low], [high - median]],
                    capsize=2,
                    label=None if column in labelled else column,
                    color=colours[column],
                    hatch="//" if column == NATIVE else None,
                    alpha=0.5 if column == NATIVE else 1.0,
                )
                labelled.add(column)
                baseline = stats.get((row.key, group.baseline))
                if cut:
                    ax.text(x, ceiling, f"{compact(median)}↑", ha="center", va="bottom", fontsize=7)
                elif column == group.ours and baseline and baseline[0] and median:
                    text = f"{ratio(row, median, baseline[0]):.2f}{TIMES}"
                    ax.text(x, high, text, ha="center", va="bottom", fontsize=7, color=colours[column])
        if group.key == "memory":
            ax.axhline(8, color="black", linestyle="--", linewidth=0.8, label="target: 8 KiB")
        ax.set_xticks(range(len(group.rows)), [r.label for r in group.rows])
        ax.set_ylabel(group.unit + ("" if group.rows[0].higher_is_better else " (lower is better)"))
        ax.set_title(group.title, fontsize=9)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(v) if v >= 1000 else f"{v:g}"))
        ax.set_ylim(0, ax.get_ylim()[1] * 1.05)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        fig.tight_layout()
        path = RESULTS / f"{group.key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def environment(quick: bool) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").open()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    versions = {}
    for name in ["wsbind", *[n for n in LIBRARIES if n != "wsbind"]]:
        if name in DISTRIBUTIONS or (name in BUILDS and LIBRARIES[name] != LIBRARIES["wsbind"]):
            continue  # a face of a library (or build) listed under its own name
        if name in BUILDS:
            versions[name] = f"wsbind built in {BUILDS[name]}"
            continue
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "-C", str(BENCHES), "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip()
        versions["wsbind"] += f" ({commit})" if commit else ""
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "quick": quick,
        "command": " ".join(["benches/run.py", *sys.argv[1:]]),
    }


def raise_file_limit(wanted: int) -> int:
    """Lifts the open-file limit to its hard maximum (children inherit it); returns the usable count."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    # Room for the server's own files (the interpreter, the listening socket, logs).
    return min(wanted, soft - 200) if soft != resource.RLIM_INFINITY else wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short runs, fewer connections: to check the suite"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the table shows the median")
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="comma-separated libraries to measure")
    parser.add_argument("--groups", default=",".join(g.key for g in GROUPS), help="comma-separated groups")
    parser.add_argument(
        "--connections",
        type=int,
        help=f"idle connections for the memory row (default {MEMORY_CONNECTIONS:,})",
    )
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also measure the wsbind unpacked in DIR (a wheel's contents), as column NAME: "
        "two builds in one interleaved run",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite results.md and the plots from results.json"
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(RESULTS.joinpath("results.json").read_text())
        settings = Settings(**saved["settings"])
        add_builds(settings.builds)
        report(Results(saved["samples"], saved["failures"]), settings, saved["environment"])
        return
    builds = {}
    for build in args.build:
        name, _, folder = build.partition("=")
        if not folder or not Path(folder, "wsbind").is_dir():
            parser.error(f"--build takes NAME=DIR, DIR holding a wsbind package, not {build!r}")
        if name in LIBRARIES or name == NATIVE:
            parser.error(f"--build {name!r}: that name is taken")
        builds[name] = str(Path(folder).resolve())
    libs = [lib for lib in args.libs.split(",") if lib] + add_builds(builds)
    groups = []
    for name in [g for g in args.groups.split(",") if g]:
        # "asyncio" stands for every asyncio-... group.
        family = [g.key for g in GROUPS if g.key.startswith(f"{name}-")]
        groups += family if name not in {g.key for g in GROUPS} and family else [name]
    for name in libs:
        if name not in LIBRARIES:
            parser.error(f"unknown library {name!r}; known: {', '.join(LIBRARIES)}")
    for name in groups:
        if name not in {g.key for g in GROUPS}:
            parser.error(f"unknown group {name!r}; known: {', '.join(g.key for g in GROUPS)}")
    if not PEER.exists():
        sys.exit(f"{PEER} is missing: cargo build --release --manifest-path benches/peer/Cargo.toml")
    settings = Settings(
        runs=args.runs,
        warmup=0.2 if args.quick else 0.5,
        duration=0.5 if args.quick else 3.0,
        memory_connections=args.connections or (1000 if args.quick else MEMORY_CONNECTIONS),
        broadcast_messages=100 if args.quick else 1000,
        busy_connections=1000 if args.quick else BUSY_CONNECTIONS,
        libs=libs,
        groups=groups,
        builds=builds,
    )
    usable = raise_file_limit(max(settings.memory_connections, settings.busy_connections))
    if usable < settings.memory_connections:
        settings.notes.append(
            f"Memory row at {usable:,} connections, not {settings.memory_connections:,}: "
            f"the open-file limit allows no more."
        )
        settings.memory_connections = usable
    settings.notes.append(
        f"Memory: RSS growth of the server process / {settings.memory_connections:,} idle connections. "
        f"Broadcast: {settings.broadcast_messages:,} messages to each client."
    )
    RESULTS.mkdir(exist_ok=True)
    for log in RESULTS.joinpath("logs").glob("*.log"):
        log.unlink()
    env = environment(args.quick)
    print(f"benchmarking {', '.join(libs)} ({', '.join(groups)}), {settings.runs} run(s)", flush=True)
    results = run_all(settings)
    RESULTS.joinpath("results.json").write_text(
        json.dumps(
            {
                "environment": env,
                "settings": settings.__dict__,
                "samples": results.samples,
                "failures": results.failures,
            },
            indent=1,
        )
    )
    report(results, settings, env)


def report(results: Results, settings: Settings, env: dict[str, Any]) -> None:
    RESULTS.joinpath("results.md").write_text(markdown(results, settings, env))
    plots = plot(results, settings)
    print(f"\nresults: {RESULTS / 'results.md'}")
    for path in plots:
        print(f"plot:    {path}")


if __name__ == "__main__":
    main()
