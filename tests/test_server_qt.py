"""WebSocketServer's Qt API beyond QML: handshake timeout, pending connections,
pause/resume, the clients list, the connection signals, allowed origins and
origin authentication, and the answers to non-WebSocket requests.

Peers are the independent `websockets` client and raw sockets.
"""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect

from conftest import TIMEOUT, Recorder, wait_until
from rawpeer import read_head
from wsbind import WebSocket, WebSocketServer


def echoing(ws: WebSocket) -> None:
    ws.text_message_received.connect(ws.send_text_message)
    ws.binary_message_received.connect(ws.send_binary_message)


def assert_echoes(url: str, message: str = "hello", **kwargs: Any) -> None:
    """A `websockets` client connects to `url` and gets `message` back."""
    with connect(url, open_timeout=TIMEOUT, **kwargs) as client:
        client.send(message)
        assert client.recv(timeout=TIMEOUT) == message


def refused_status(url: str, **kwargs: Any) -> int:
    """The HTTP status of a `websockets` client's refused handshake."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        with connect(url, open_timeout=TIMEOUT, **kwargs):
            pass
    return int(refused.value.response.status_code)


def idle_connection(server: WebSocketServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


def http_exchange(port: int, request: bytes) -> tuple[int, dict[str, str]]:
    """Sends a raw request; returns the response's status and headers (names lowercased)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        data = read_head(sock)
    first, *lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    assert first.startswith(b"HTTP/1.1 "), first
    return int(first.split()[1]), headers


# -- handshake_timeout


def test_a_client_that_sends_nothing_is_dropped_after_handshake_timeout(servers: Any) -> None:
    """handshake_timeout=0.5: a TCP client that never sends its request is disconnected."""
    server = servers(handshake_timeout=0.5, on_client_connected=echoing)
    with idle_connection(server) as idle:
        assert idle.recv(1024) == b""
    assert_echoes(server.url)


def test_a_stalled_request_is_dropped_after_handshake_timeout(servers: Any) -> None:
    """A client that sends half its request and stalls is disconnected too, with no response."""
    server = servers(handshake_timeout=0.5)
    with idle_connection(server) as stalled:
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert stalled.recv(1024) == b""


def test_handshake_timeout_changed_while_listening_applies_to_later_clients(servers: Any) -> None:
    """Lowering handshake_timeout on a listening server applies to the next connections."""
    server = servers()
    server.handshake_timeout = 0.5
    with idle_connection(server) as idle:
        assert idle.recv(1024) == b""


def test_a_negative_handshake_timeout_sets_no_limit(servers: Any) -> None:
    """As in Qt, a negative handshake_timeout disables it (None too): a stalled client that
    outlives another server's short limit still gets its handshake answered."""
    limited = servers(handshake_timeout=0.2)
    unlimited = servers(handshake_timeout=-1)
    assert unlimited.handshake_timeout is None
    with idle_connection(unlimited) as stalled, idle_connection(limited) as dropped:
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert dropped.recv(1024) == b""
        stalled.sendall(
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        assert read_head(stalled).startswith(b"HTTP/1.1 101 ")


def test_idle_connections_do_not_stop_a_real_client(servers: Any) -> None:
    """A thousand TCP connections that never send a request: a websockets client still connects and echoes,
    and the idle ones are still connected (default handshake_timeout of 10 s)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = servers(on_client_connected=echoing)
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(idle_connection(server)) for _ in range(1000)]
        for i in range(3):
            assert_echoes(server.url, f"through the crowd {i}")
        for sock in idle[::30]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)


def test_a_servers_incoming_limits_stay_on_its_sockets(servers: Any) -> None:
    """The server's max_allowed_incoming_message_size is its sockets' own, and stays theirs when
    another option is set on one: a message over it fails with 1009 all the same."""
    accepted = Recorder()
    server = servers(max_allowed_incoming_message_size=1000, on_client_connected=accepted)
    with connect(server.url, open_timeout=TIMEOUT) as client:
        (ws,) = accepted.wait()
        assert ws.max_allowed_incoming_message_size == 1000
        ws.ping_interval = 30  # sends every option to the connection again
        client.send(b"x" * 2000)
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            client.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# -- max_pending_connections


class FirstClientHeld:
    """A client_connected handler that echoes, and holds the event thread in the first
    client's handler until ``release`` is set."""

    def __init__(self) -> None:
        self.accepted: list[WebSocket] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, ws: WebSocket) -> None:
        self.accepted.append(ws)
        echoing(ws)
        if len(self.accepted) == 1:
            self.entered.set()
            self.release.wait(TIMEOUT)


def test_over_max_pending_connections_gets_503_and_server_error_1006(servers: Any) -> None:
    """Pending = handshakes done but not yet taken by Python. With the event thread held inside the
    first client's client_connected, a second client is pending; a third gets HTTP 503, and
    server_error(1006) is emitted once the thread is free."""
    held = FirstClientHeld()
    release, entered, accepted = held.release, held.entered, held.accepted
    errors = Recorder()
    # The wait for a place is half the handshake timeout at most: the 503 still goes out.
    server = servers(
        max_pending_connections=1, handshake_timeout=1, on_client_connected=held, on_server_error=errors
    )
    with contextlib.ExitStack() as stack:
        try:
            first = stack.enter_context(connect(server.url, open_timeout=TIMEOUT))
            assert entered.wait(TIMEOUT)
            second = stack.enter_context(connect(server.url, open_timeout=TIMEOUT))
            assert refused_status(server.url) == 503
            assert errors.calls == []  # the event thread is still held
        finally:
            release.set()
        assert errors.wait() == [1006]
        wait_until(lambda: len(accepted) == 2, what="the second client to be taken")
        for client in (first, second):
            client.send("served")
            assert client.recv(timeout=TIMEOUT) == "served"
    assert_echoes(server.url, "pending is back to 0")
    assert errors.values == [1006]


def established(port: int) -> int:
    """TCP connections to ``port`` on this machine that the kernel has established."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "01")


def test_a_burst_over_max_pending_connections_waits_for_places(servers: Any) -> None:
    """Clients over the bound while Python is busy wait for a place (up to 5 s) rather than
    get 503 at once: a restarted server's browser tabs all come back together."""
    held = FirstClientHeld()
    release, entered = held.release, held.entered
    server = servers(max_pending_connections=2, on_client_connected=held)
    results: list[str] = []

    def client() -> None:
        with connect(server.url, open_timeout=TIMEOUT) as ws:
            ws.send("burst")
            results.append(str(ws.recv(timeout=TIMEOUT)))

    with connect(server.url, open_timeout=TIMEOUT):
        assert entered.wait(TIMEOUT)
        burst = [threading.Thread(target=client) for _ in range(6)]
        for thread in burst:
            thread.start()
        # All of them connected while Python is held: two handshakes take the places,
        # the other four wait for them (they got 503 at once before).
        wait_until(lambda: established(server.port) >= 7, what="the burst's connections")
        release.set()
        for thread in burst:
            thread.join(TIMEOUT)
    assert results == ["burst"] * 6


def test_a_client_waiting_for_a_place_is_refused_when_the_server_stops(servers: Any) -> None:
    """A stopped server takes no more connections: a client waiting for a pending place gets
    its 503 then, saying so, not when its wait runs out, as if the server were only busy."""
    held = FirstClientHeld()
    errors = Recorder()
    server = servers(max_pending_connections=1, on_client_connected=held, on_server_error=errors)
    refused: list[websockets.InvalidStatus] = []

    def waiting_client() -> None:
        with pytest.raises(websockets.InvalidStatus) as raised:
            with connect(server.url, open_timeout=TIMEOUT):
                pass
        refused.append(raised.value)

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(connect(server.url, open_timeout=TIMEOUT))  # held in its handler
            assert held.entered.wait(TIMEOUT)
            stack.enter_context(connect(server.url, open_timeout=TIMEOUT))  # pending: the one place
            waiting = threading.Thread(target=waiting_client)
            waiting.start()
            wait_until(lambda: established(server.port) >= 3, what="the third connection")
            server.listen = False
            waiting.join(TIMEOUT)
        finally:
            held.release.set()
    assert [r.response.status_code for r in refused] == [503]
    assert b"the server is stopping" in refused[0].response.body
    assert errors.calls == []  # Not a server error: the server stopped.


def test_a_client_whose_client_connected_has_not_run_still_counts_as_pending(servers: Any) -> None:
    """max_pending_connections counts "connections that finished their handshake but whose
    client_connected has not run yet". Two clients (A, B) whose events reach Python in one batch
    while a handler is busy: while A's handler runs, B's has not, so B is still pending. With
    max_pending_connections=2, one more client (D) fits and the next (E) gets 503."""
    holds = [threading.Event(), threading.Event()]
    entered = [threading.Event(), threading.Event()]
    calls: list[WebSocket] = []

    def on_client(ws: WebSocket) -> None:
        calls.append(ws)
        if len(calls) <= 2:
            entered[len(calls) - 1].set()
            holds[len(calls) - 1].wait(TIMEOUT)

    server = servers(max_pending_connections=2, handshake_timeout=1, on_client_connected=on_client)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(connect(server.url, open_timeout=TIMEOUT))  # Z: holds the thread
            assert entered[0].wait(TIMEOUT)
            for _ in range(2):  # A and B: both pending, queued together
                client = stack.enter_context(connect(server.url, open_timeout=TIMEOUT))
                # The server queues client_connected after sending its 101 and before it starts
                # reading the connection: a pong means the event is in the queue.
                assert client.ping().wait(TIMEOUT)
            holds[0].set()  # Python takes A and B at once, and A's handler holds the thread
            assert entered[1].wait(TIMEOUT)
            assert len(calls) == 2  # B's client_connected has not run
            stack.enter_context(connect(server.url, open_timeout=TIMEOUT))  # D: B and D pending
            assert refused_status(server.url) == 503  # E: over the limit
        finally:
            for hold in holds:
                hold.set()
        wait_until(lambda: len(calls) >= 4)


def test_under_max_pending_connections_all_are_served(servers: Any) -> None:
    """With the thread held, as many clients as max_pending_connections still get their 101."""
    release, entered = threading.Event(), threading.Event()
    accepted: list[WebSocket] = []
    errors = Recorder()

    def on_client(ws: WebSocket) -> None:
        accepted.append(ws)
        if len(accepted) == 1:
            entered.set()
            release.wait(TIMEOUT)

    server = servers(max_pending_connections=3, on_client_connected=on_client, on_server_error=errors)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(connect(server.url, open_timeout=TIMEOUT))
            assert entered.wait(TIMEOUT)
            for _ in range(3):
                stack.enter_context(connect(server.url, open_timeout=TIMEOUT))
            assert refused_status(server.url) == 503
        finally:
            release.set()
        wait_until(lambda: len(accepted) == 4)
        assert errors.wait() == [1006]


# -- pause_accepting / resume_accepting


def test_pause_and_resume_accepting_toggle_accept(servers: Any) -> None:
    """pause_accepting() sets accept False, resume_accepting() True, with accept_changed each time."""
    changes = Recorder()
    server = servers(on_accept_changed=changes)
    server.pause_accepting()
    assert server.accept is False
    server.pause_accepting()
    server.resume_accepting()
    assert server.accept is True
    assert changes.values == [False, True]


def test_paused_server_does_not_answer_until_resumed(servers: Any) -> None:
    """While paused a client gets no handshake answer; after resume_accepting() clients are served."""
    server = servers(on_client_connected=echoing)
    server.pause_accepting()
    with pytest.raises(TimeoutError):
        with connect(server.url, open_timeout=1):
            pass
    server.resume_accepting()
    assert_echoes(server.url, "resumed")


def test_pausing_before_listening_starts_paused() -> None:
    """pause_accepting() before listen: the server listens but does not answer until resumed."""
    server = WebSocketServer(on_client_connected=echoing)
    server.pause_accepting()
    server.listen = True
    try:
        wait_until(lambda: server.url)
        with pytest.raises(TimeoutError):
            with connect(server.url, open_timeout=1):
                pass
        server.resume_accepting()
        assert_echoes(server.url, "resumed")
    finally:
        server.listen = False


# -- clients


def test_clients_lists_open_sockets_in_connection_order(servers: Any) -> None:
    """clients holds the open server sockets in connection order; a socket leaves it when it closes;
    clients_changed reports each list."""
    got, changes = Recorder(), Recorder()
    server = servers(on_client_connected=got, on_clients_changed=changes)
    assert server.clients == []
    with connect(server.url) as c1:
        (ws1,) = got.wait(1)
        with connect(server.url):
            _, ws2 = got.wait(2)
            assert server.clients == [ws1, ws2]
            with connect(server.url):
                _, _, ws3 = got.wait(3)
                assert server.clients == [ws1, ws2, ws3]
        wait_until(lambda: server.clients == [ws1], what="the second and third to leave")
        c1.send("still here")
    wait_until(lambda: server.clients == [], what="the first to leave")
    assert changes.values[:3] == [[ws1], [ws1, ws2], [ws1, ws2, ws3]]
    assert changes.values[-1] == []
    assert [ws1] in changes.values[3:]


def test_clients_hands_out_a_copy(servers: Any) -> None:
    """Changing the list clients or clients_changed gave leaves the server's list as it is."""
    got, changes = Recorder(), Recorder()
    server = servers(on_client_connected=got, on_clients_changed=changes)
    with connect(server.url):
        (ws,) = got.wait(1)
        server.clients.clear()
        changes.values[0].append("not a socket")
        assert server.clients == [ws]
    wait_until(lambda: server.clients == [], what="the client to leave")


def test_a_socket_closed_by_the_server_leaves_clients(servers: Any) -> None:
    """A server socket closed from our side (active=False) leaves clients once CLOSED."""
    got = Recorder()
    server = servers(on_client_connected=got)
    with connect(server.url) as client:
        (ws,) = got.wait()
        ws.active = False
        with contextlib.suppress(websockets.ConnectionClosed):
            client.recv(timeout=TIMEOUT)
    wait_until(lambda: server.clients == [])


# -- new_connection and closed


def test_new_connection_is_emitted_before_client_connected(servers: Any) -> None:
    """For each client, new_connection comes just before client_connected."""
    log: list[str] = []
    server = servers(
        on_new_connection=lambda: log.append("new_connection"),
        on_client_connected=lambda ws: log.append("client_connected"),
    )
    with connect(server.url), connect(server.url):
        wait_until(lambda: len(log) == 4)
    assert log == ["new_connection", "client_connected"] * 2


def test_closed_is_emitted_when_listen_goes_false(servers: Any) -> None:
    """closed is emitted once when listen goes False, not again when it already is."""
    closed = Recorder()
    server = servers(on_closed=closed)
    assert closed.calls == []
    server.listen = False
    closed.wait()
    server.listen = False
    # Whatever the second one would have told comes before this, on the server's thread.
    told = threading.Event()
    server._dispatcher.call(told.set)
    assert told.wait(TIMEOUT)
    assert closed.calls == [()]
    assert closed.threads == ["wsbind-events"]


# -- allowed_origins


def test_allowed_origins_lets_a_listed_origin_in(servers: Any) -> None:
    """A client whose Origin is in allowed_origins connects, and no server_error is emitted."""
    errors = Recorder()
    server = servers(
        allowed_origins=["https://good.example"], on_client_connected=echoing, on_server_error=errors
    )
    assert_echoes(server.url, origin="https://good.example")
    assert errors.calls == []


def test_allowed_origins_refuses_another_origin_with_403_and_server_error_1008(servers: Any) -> None:
    """An Origin not in allowed_origins gets HTTP 403 and server_error(1008); no client_connected."""
    errors, got = Recorder(), Recorder()
    server = servers(
        allowed_origins=["https://good.example"], on_client_connected=got, on_server_error=errors
    )
    assert refused_status(server.url, origin="https://evil.example") == 403
    assert errors.wait() == [1008]
    assert got.calls == []


def test_allowed_origins_changed_while_listening_applies(servers: Any) -> None:
    """Setting allowed_origins on a listening server applies to later handshakes; None allows any again."""
    errors = Recorder()
    server = servers(on_client_connected=echoing, on_server_error=errors)
    assert_echoes(server.url, origin="https://evil.example")
    server.allowed_origins = ["https://good.example"]
    assert refused_status(server.url, origin="https://evil.example") == 403
    assert errors.wait() == [1008]
    server.allowed_origins = None
    assert_echoes(server.url, origin="https://evil.example")


@pytest.mark.parametrize("origin", [None, "https://any.example", "null"])
def test_allowed_origins_none_allows_any(servers: Any, origin: str | None) -> None:
    """allowed_origins=None lets any Origin connect, and a client without one."""
    server = servers(allowed_origins=None, on_client_connected=echoing)
    assert_echoes(server.url, origin=origin)


def test_allowed_origins_takes_patterns_as_websockets_origins(servers: Any) -> None:
    """A compiled pattern among allowed_origins lets in an origin it matches whole; strings are
    still compared; anything else gets 403 and server_error(1008), set at once or later. The
    handler is asked only about origins the list let in."""
    errors, seen = Recorder(), Recorder()

    def ask(authenticator: Any) -> None:
        seen(authenticator.origin)

    subdomains = re.compile(r"https://[a-z]+\.good\.example")
    server = servers(
        allowed_origins=[subdomains, "https://exact.example"],
        on_client_connected=echoing,
        on_server_error=errors,
        on_origin_authentication_required=ask,
    )
    assert_echoes(server.url, origin="https://chat.good.example")
    assert_echoes(server.url, origin="https://exact.example")
    # Matched whole: a prefix or a longer origin is not enough.
    assert refused_status(server.url, origin="https://chat.good.example.evil") == 403
    assert refused_status(server.url, origin="https://good.example") == 403
    assert refused_status(server.url) == 403
    assert errors.wait(3) == [1008] * 3
    assert seen.values == ["https://chat.good.example", "https://exact.example"]
    # Taken off while listening: the native list applies again, without the handler's help.
    server.origin_authentication_required.disconnect(ask)
    server.allowed_origins = ["https://exact.example"]
    assert refused_status(server.url, origin="https://chat.good.example") == 403
    server.allowed_origins = [re.compile("https://.*")]
    assert_echoes(server.url, origin="https://anything.example")
    with pytest.raises(TypeError, match="patterns of str"):
        server.allowed_origins = [re.compile(b"https://.*")]


# -- origin_authentication_required


@pytest.mark.parametrize("when", ["keyword", "connected-while-listening"])
def test_origin_authentication_can_refuse_an_origin(servers: Any, when: str) -> None:
    """A handler that calls set_allowed(False) for one origin: that client gets 403 and
    server_error(1008); others connect. authenticator.origin is the client's Origin."""
    seen: list[str] = []

    def authenticate(authenticator: Any) -> None:
        seen.append(authenticator.origin)
        assert authenticator.allowed is True
        if authenticator.origin == "https://bad.example":
            authenticator.set_allowed(False)

    errors = Recorder()
    kwargs = {"on_origin_authentication_required": authenticate} if when == "keyword" else {}
    server = servers(on_client_connected=echoing, on_server_error=errors, **kwargs)
    if when != "keyword":
        server.origin_authentication_required.connect(authenticate)
    assert refused_status(server.url, origin="https://bad.example") == 403
    assert errors.wait() == [1008]
    assert_echoes(server.url, origin="https://good.example")
    assert seen == ["https://bad.example", "https://good.example"]


def test_a_raising_origin_handler_leaves_the_client_allowed_and_is_logged(
    servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An origin_authentication_required handler that raises: the client stays allowed (the default),
    and the exception is logged on the wsbind logger."""

    def broken(authenticator: Any) -> None:
        raise RuntimeError("authenticator exploded")

    errors = Recorder()
    server = servers(
        on_client_connected=echoing, on_server_error=errors, on_origin_authentication_required=broken
    )
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        assert_echoes(server.url, origin="https://bad.example")
    failures = [r for r in caplog.records if r.exc_info and "authenticator exploded" in str(r.exc_info[1])]
    assert len(failures) == 1
    assert "origin_authentication_required" in failures[0].getMessage()
    assert errors.calls == []


def test_without_an_origin_handler_every_origin_connects(servers: Any) -> None:
    """No handler connected (or the last one disconnected): every origin may connect."""

    def refuse(authenticator: Any) -> None:
        authenticator.set_allowed(False)

    server = servers(on_client_connected=echoing)
    assert_echoes(server.url, origin="https://bad.example")
    server.origin_authentication_required.connect(refuse)
    assert refused_status(server.url, origin="https://bad.example") == 403
    server.origin_authentication_required.disconnect(refuse)
    assert_echoes(server.url, origin="https://bad.example")


def test_origin_handler_sees_empty_origin_for_a_client_without_one(servers: Any) -> None:
    """A client without an Origin header is asked about with authenticator.origin ""."""
    seen = Recorder()
    server = servers(on_client_connected=echoing, on_origin_authentication_required=lambda a: seen(a.origin))
    assert_echoes(server.url)
    assert seen.values == [""]


def test_allowed_origins_refuses_before_asking_the_handler(servers: Any) -> None:
    """An origin outside allowed_origins is refused without reaching origin_authentication_required."""
    seen = Recorder()
    server = servers(
        allowed_origins=["https://good.example"],
        on_client_connected=echoing,
        on_origin_authentication_required=lambda a: seen(a.origin),
    )
    assert refused_status(server.url, origin="https://evil.example") == 403
    assert_echoes(server.url, origin="https://good.example")
    assert seen.values == ["https://good.example"]


# -- not a WebSocket handshake


def test_other_versions_get_400_and_plain_http_426_and_the_server_keeps_serving(servers: Any) -> None:
    """Version 8 gets 400 with Sec-WebSocket-Version: 13; a GET without Upgrade gets 426; then a
    real client is served."""
    server = servers(on_client_connected=echoing)
    host = f"127.0.0.1:{server.port}"
    status, headers = http_exchange(
        server.port,
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n".encode(),
    )
    assert status == 400
    assert headers["sec-websocket-version"] == "13"
    status, _ = http_exchange(server.port, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert status == 426
    assert_echoes(server.url, "still serving")


def test_refused_handshakes_do_not_count_as_pending(servers: Any) -> None:
    """With max_pending_connections=1, many refused handshakes in a row do not fill the pending count."""
    server = servers(max_pending_connections=1, on_client_connected=echoing)
    for _ in range(5):
        status, _ = http_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 426
    for i in range(3):
        assert_echoes(server.url, f"served {i}")


def test_accept_error_when_out_of_file_descriptors() -> None:
    """A server process out of file descriptors reports accept_error and keeps listening."""
    script = """
        import os, resource, time, wsbind
        report = lambda message: print("accept_error", message, flush=True)
        server = wsbind.WebSocketServer(listen=True, on_accept_error=report)
        while not server.url:
            time.sleep(0.01)
        # Leave room for only a few more descriptors.
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 3, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        print(server.port, flush=True)
        time.sleep(30)  # Only keeps the server up until the test kills it; nothing waits on it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(10)]
        line = proc.stdout.readline()
        assert line.startswith("accept_error accept failed:"), line
        assert "Too many open files" in line
        assert proc.poll() is None
        for client in clients:
            client.close()
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
