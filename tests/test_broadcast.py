"""Broadcasting: one message to many sockets, framed once in the native core."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import pytest
from websockets.sync.client import connect

from conftest import PausingWebSocket, Recorder, open_socket, wait_until, websockets_server
from rawpeer import stuck_client
from wsbind import BufferFullError, Status, WebSocket, WebSocketServer, broadcast


def server_with_clients(servers: Any, count: int) -> tuple[WebSocketServer, list[Any], contextlib.ExitStack]:
    server = servers()
    stack = contextlib.ExitStack()
    clients = [stack.enter_context(connect(server.url, max_size=None)) for _ in range(count)]
    wait_until(lambda: len(server.clients) == count)
    return server, clients, stack


@pytest.mark.parametrize("message", ["to all ✓", b"\x00\xffbytes", bytes(1 << 20)])
def test_a_server_broadcasts_to_every_client(servers: Any, message: Any) -> None:
    server, clients, stack = server_with_clients(servers, 5)
    with stack:
        send = server.broadcast_text_message if isinstance(message, str) else server.broadcast_binary_message
        assert send(message) == 5
        for client in clients:
            assert client.recv(timeout=15) == message


def test_closed_clients_are_skipped(servers: Any) -> None:
    server, clients, stack = server_with_clients(servers, 3)
    with stack:
        server.clients[0].close()
        wait_until(lambda: len(server.clients) == 2)
        assert server.broadcast_text_message("the rest") == 2
        for client in clients[1:]:
            assert client.recv(timeout=15) == "the rest"


def test_broadcast_without_listening_reaches_nobody() -> None:
    assert WebSocketServer().broadcast_text_message("anyone?") == 0


def test_broadcast_type_checks(servers: Any) -> None:
    server = servers()
    with pytest.raises(TypeError):
        server.broadcast_text_message(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        server.broadcast_binary_message("text")


def test_broadcast_over_any_sockets_client_and_server_side(servers: Any, sockets: Any) -> None:
    """Client sockets are masked each; a server's sockets share frames; closed ones are skipped."""
    accepted: list[WebSocket] = []
    server = servers(on_client_connected=accepted.append)
    got = [Recorder(), Recorder()]
    ours = [open_socket(sockets, server.url, on_text_message_received=r) for r in got]
    wait_until(lambda: len(accepted) == 2)
    heard = [Recorder(), Recorder()]
    for ws, recorder in zip(accepted, heard, strict=True):
        ws.text_message_received.connect(recorder)
    never_opened = WebSocket()
    assert broadcast([*ours, *accepted, never_opened], "everyone") == 4
    for recorder in [*got, *heard]:
        assert recorder.wait() == ["everyone"]


def test_broadcast_racing_the_end_of_a_connection_skips_it() -> None:
    """broadcast() from another thread just as the peer's close ends one socket's connection (the
    event thread clears it between broadcast's look and its use): that socket is skipped, and no
    error comes from a connection that went away."""

    def close_on_request(conn: Any) -> None:
        conn.recv()
        conn.close(4000, "bye")

    with websockets_server(close_on_request) as (url, _):
        ws = PausingWebSocket(url=url, active=True)
        wait_until(lambda: ws.status is Status.OPEN, what="the socket to open")
        taken: list[Any] = []
        go = threading.Event()

        def racer() -> None:
            go.wait()
            try:
                taken.append(broadcast([ws], "late"))
            except BaseException as e:
                taken.append(e)

        thread = threading.Thread(target=racer)
        thread.start()
        ws.pause_in = thread.ident
        go.set()
        ws.send_text_message("close, please")
        thread.join(15)
        wait_until(lambda: ws.status is Status.CLOSED, what="the socket to close")
    assert taken == [0]


def test_a_socket_whose_queue_is_full_is_skipped_with_a_warning_or_an_exception_group(
    servers: Any, sockets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """As websockets' broadcast(): a client that stopped reading is skipped once its queue is
    full, with a warning, or with raise_exceptions=True an ExceptionGroup after the others got
    the message; nothing is skipped quietly but sockets that are not open."""
    accepted: list[WebSocket] = []

    def accept(ws: WebSocket) -> None:
        # A client that never reads never answers a ping either.
        ws.ping_interval = None
        accepted.append(ws)

    server = servers(on_client_connected=accept, compression=None)
    stuck_sock = stuck_client(server.port)
    heard = Recorder()
    open_socket(sockets, server.url, on_binary_message_received=heard)
    wait_until(lambda: len(accepted) == 2, what="both clients")
    stuck = next(ws for ws in accepted if ws.peer_port == stuck_sock.getsockname()[1])
    big = bytes(1 << 20)
    sent = 0
    with caplog.at_level(logging.WARNING, logger="wsbind"):
        while broadcast([*accepted, WebSocket()], big) == 2:
            sent += 1
            assert sent < 1000, "the stuck client's queue never filled"
    sent += 1
    [warning] = [r for r in caplog.records if r.name == "wsbind"]
    assert warning.getMessage().startswith(f"broadcast skipped {stuck!r}: cannot send: ")
    assert "from 127.0.0.1:" in repr(stuck)
    with pytest.raises(ExceptionGroup) as raised:
        broadcast(accepted, big, raise_exceptions=True)
    sent += 1
    [error] = raised.value.exceptions
    assert isinstance(error, BufferFullError)
    assert error.__notes__ == [f"skipped by broadcast: {stuck!r}"]
    # The reading client got every message, the one that raised included.
    assert len(heard.wait(count=sent)) == sent
    stuck_sock.close()
