"""Bounds that hold against a hostile or stuck peer (issue 24): what one peer can
make wsbind hold in memory or keep waiting, measured on real sockets."""

from __future__ import annotations

import selectors
import socket
import subprocess
from typing import Any

import wsbind
from conftest import TIMEOUT


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
