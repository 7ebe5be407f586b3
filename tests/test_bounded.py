"""Bounds that hold against a hostile or stuck peer (issue 24): what one peer can
make wsbind hold in memory or keep waiting, measured on real sockets."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

import wsbind
from conftest import TIMEOUT, wait_until
from rawpeer import BINARY, CONTINUATION, accept_key, drain, stuck_client, tcp_server
from wsbind import Status, WebSocket


def test_a_burst_of_connects_waits_in_the_backlog_not_for_the_kernels_retry(servers: Any) -> None:
    """500 clients connecting at once to a server that is not accepting yet are all queued by
    the kernel (the default backlog is 1024): none waits a second for its SYN to be retried."""
    server = servers(accept=False)
    assert server.listen_backlog_size == wsbind._wsbind.LISTEN_BACKLOG == 1024
    selector = selectors.DefaultSelector()
    clients = []
    try:
        for _ in range(500):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", server.port))
            selector.register(client, selectors.EVENT_WRITE)
            clients.append(client)
        connected = 0
        # Each connect completes once the kernel queues it; with a backlog of
        # 128 the rest would stay unanswered while the server does not accept.
        while connected < len(clients):
            ready = selector.select(timeout=TIMEOUT)
            assert ready, f"only {connected} of {len(clients)} connects completed"
            for key, _ in ready:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                selector.unregister(sock)
                connected += 1
    finally:
        selector.close()
        for client in clients:
            client.close()


def test_the_backlog_is_a_property_applied_when_listening(servers: Any) -> None:
    """listen_backlog_size (Qt: listenBacklogSize) is what the kernel is asked for."""
    server = servers(listen_backlog_size=200)
    # ss shows a listening socket's backlog as its Send-Q.
    out = subprocess.run(["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True).stdout
    assert out.split()[:3] == ["LISTEN", "0", "200"], out


# -- memory under floods from a peer that never reads

MiB = 1 << 20


def in_fresh_process(test: Callable[..., None]) -> Callable[..., None]:
    """Runs the test in a pytest of its own, so that the memory it measures is not memory
    that earlier tests freed and the allocator kept (which would hide growth)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        node = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]
        if os.environ.get("WSBIND_FRESH_TEST") == node:
            test(*args, **kwargs)
            return
        env = {**os.environ, "WSBIND_FRESH_TEST": node}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

    return run


def rss() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def accepted_by(servers: Any) -> tuple[Any, list[WebSocket]]:
    accepted: list[WebSocket] = []

    # No keepalive: a client that never reads never answers a ping either,
    # and would be dropped after ping_interval + ping_timeout (40 s), which a
    # flood of 5,000,000 sends can outlast on a loaded machine.
    def accept(ws: WebSocket) -> None:
        ws.ping_interval = None
        accepted.append(ws)

    server = servers(on_client_connected=accept, compression=None)
    return server, accepted


def flood(sock: socket.socket, frame: bytes, total: int) -> int:
    """Sends `frame` over and over, `total` bytes in all; returns the peak RSS seen meanwhile."""
    burst = frame * (MiB // len(frame))
    peak = rss()
    for _ in range(total // len(burst)):
        sock.sendall(burst)
        peak = max(peak, rss())
    return peak


@in_fresh_process
def test_a_ping_flood_from_a_client_that_never_reads_holds_one_pong(servers: Any) -> None:
    """Defect 1: 16 MiB of empty pings (2.8 million) from a client that never reads. Before,
    a pong was queued for each (+240 MB here); now only the latest unsent ping is answered."""
    server, accepted = accepted_by(servers)
    sock = stuck_client(server.port)
    wait_until(lambda: accepted, what="the server to accept")
    before = rss()
    # An empty ping, masked (a client's frames are): 0x89, 0x80 | 0, and the key.
    peak = flood(sock, bytes([0x89, 0x80]) + os.urandom(4), 16 * MiB)
    assert peak - before < 32 * MiB, f"RSS grew by {(peak - before) / MiB:.0f} MiB"
    assert accepted[0].status is Status.OPEN
    sock.close()


@in_fresh_process
def test_a_ping_flood_from_a_server_that_never_reads_holds_one_pong(sockets: Any) -> None:
    """Defect 1 in the client role: 64 MiB of 125-byte pings from a server that never reads
    (before, a pong was queued for each: +120 MB)."""
    opened, checked = threading.Event(), threading.Event()

    def serve(conn: socket.socket) -> None:
        # Its receive buffer stays at the default: with a tiny one too, both
        # ends' windows close and TCP itself stalls the flood.
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", head, re.IGNORECASE)
        assert key
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key.group(1)) + b"\r\n\r\n"
        )
        opened.wait(TIMEOUT)
        with contextlib.suppress(OSError):
            peaks.append(flood(conn, bytes([0x89, 125]) + bytes(125), 64 * MiB))
        checked.wait(TIMEOUT)

    peaks: list[int] = []
    with tcp_server(serve) as url:
        before = rss()
        ws = sockets(url=url, active=True, compression=None)
        wait_until(lambda: ws.status is Status.OPEN, what="the client to open")
        opened.set()
        wait_until(lambda: peaks, what="the flood to end")
        assert peaks[0] - before < 32 * MiB, f"RSS grew by {(peaks[0] - before) / MiB:.0f} MiB"
        assert ws.status is Status.OPEN, ws.error_string
        checked.set()


@pytest.mark.parametrize("message", ["", "x", "0123456789abcdef"])
@in_fresh_process
def test_tiny_messages_to_a_client_that_never_reads_are_refused_before_memory_grows(
    servers: Any, message: str
) -> None:
    """Defect 2: each queued message counts its frame and bookkeeping, not only its payload, so
    the 64 MiB send limit refuses empty messages too, and bounds memory (before: 5,000,000
    empty messages took 350 MB with bytes_to_write == 0 and no BufferFullError)."""
    server, accepted = accepted_by(servers)
    sock = stuck_client(server.port)
    ws = wait_until(lambda: accepted, what="the server to accept")[0]
    before = rss()
    with pytest.raises(wsbind.BufferFullError):
        for _ in range(5_000_000):
            ws.send_text_message(message)
    grown = rss() - before
    assert wsbind._wsbind.MAX_OUTGOING_BUFFER // 2 < ws.bytes_to_write <= wsbind._wsbind.MAX_OUTGOING_BUFFER
    assert grown < 96 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"
    sock.close()


@in_fresh_process
def test_broadcasts_to_a_client_that_never_reads_are_refused_before_memory_grows(servers: Any) -> None:
    """Defect 2 for broadcasts: before, 3,000,000 broadcasts of 8 bytes to one stuck client took
    326 MB while 20 MB were counted."""
    server, accepted = accepted_by(servers)
    sock = stuck_client(server.port)
    ws = wait_until(lambda: accepted, what="the server to accept")[0]
    before = rss()
    sent = 0
    while server.broadcast_text_message("x" * 8) == 1:
        sent += 1
        assert sent < 3_000_000, "the stuck client was never refused"
    grown = rss() - before
    assert ws.bytes_to_write > wsbind._wsbind.MAX_OUTGOING_BUFFER // 2
    assert grown < 96 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"
    sock.close()


def peak_rss() -> int:
    """The most this process has held resident, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@in_fresh_process
def test_a_message_over_the_limit_is_refused_without_holding_it_twice(sockets: Any) -> None:
    """Defect 3: a message that passes max_allowed_incoming_message_size (64 MiB) in 1 MiB
    fragments fails with 1009, and the client's memory peaks near the limit, not at twice it."""
    fragment = bytes(MiB)
    opened = threading.Event()

    def serve(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", head, re.IGNORECASE)
        assert key
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key.group(1)) + b"\r\n\r\n"
        )
        opened.wait(TIMEOUT)
        with contextlib.suppress(OSError):
            for n in range(80):
                first = BINARY if n == 0 else CONTINUATION
                conn.sendall(bytes([first, 127]) + struct.pack("!Q", len(fragment)))
                conn.sendall(fragment)
            drain(conn)

    with tcp_server(serve) as url:
        ws = sockets(url=url, active=True, compression=None)
        wait_until(lambda: ws.status is Status.OPEN, what="the client to open")
        before = rss()
        opened.set()
        wait_until(lambda: ws.status is Status.ERROR, what="the message to be refused")
        assert ws.close_code == 1009, ws.error_string
        grown = peak_rss() - before
        assert grown < 80 * MiB, f"memory peaked {grown / MiB:.0f} MiB above where it was"
