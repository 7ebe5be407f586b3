"""Unix domain sockets: wsbind's servers and clients on a path rather than a port, against
websockets' own unix_serve() and unix_connect(), and in the QML style."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import unix_connect as websockets_unix_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import unix_serve as websockets_unix_serve

import wsbind
from conftest import Recorder, async_echo, run, tls_server, trusting, wait_until
from wsbind import Status, WebSocket, WebSocketServer
from wsbind.sync import unix_connect as sync_unix_connect


@pytest.fixture
def path(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "app.sock")


def test_unix_serve_answers_websockets_unix_connect(path: str) -> None:
    """A websockets client over the socket: its request's path reaches the handler, the socket
    has no peer address, the server's url names the file, and the file goes when it stops."""
    seen: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        seen.append((ws.request.path if ws.request else None, ws.remote_address, ws.peer_port))
        await async_echo(ws)

    async def main() -> None:
        async with wsbind.unix_serve(handler, path) as server:
            assert server.url == f"ws+unix://{os.path.abspath(path)}"
            assert server.port == 0
            assert Path(path).is_socket()
            async with websockets_unix_connect(path, "ws://localhost/chat") as client:
                await client.send("over a file")
                assert await client.recv() == "over a file"
        assert not Path(path).exists()

    run(main())
    assert seen == [("/chat", None, 0)]


def test_unix_connect_reaches_websockets_unix_serve_in_both_faces(path: str) -> None:
    hosts: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        hosts.append(f"{ws.request.headers['Host']} {ws.request.path}")
        await async_echo(ws)

    async def main() -> None:
        async with websockets_unix_serve(handler, path):
            async with wsbind.unix_connect(path) as ws:
                await ws.send(b"\x00binary")
                assert await ws.recv() == b"\x00binary"
                assert ws.remote_address is None
            async with wsbind.unix_connect(path, "ws://app.internal/feed?x=1") as ws:
                await ws.send("text")
                assert await ws.recv() == "text"

            def blocking() -> None:
                with sync_unix_connect(path, "ws://localhost/sync") as sync_ws:
                    sync_ws.send("from a thread")
                    assert sync_ws.recv(timeout=10) == "from a thread"

            await asyncio.to_thread(blocking)

    run(main())
    assert hosts == ["localhost /", "app.internal /feed?x=1", "localhost /sync"]


def test_the_qml_style_server_and_socket_on_a_path(servers: Any, sockets: Any, path: str) -> None:
    """unix_socket_path on both objects, with handlers; changing the server's path listens anew
    there and removes the old file."""
    accepted: list[WebSocket] = []

    def echo(ws: WebSocket) -> None:
        ws.text_message_received.connect(ws.send_text_message)
        accepted.append(ws)

    server: WebSocketServer = servers(unix_socket_path=path, on_client_connected=echo)
    assert server.error_string == ""
    heard = Recorder()
    ws = sockets(url="ws://localhost/qml", unix_socket_path=path, on_text_message_received=heard, active=True)
    wait_until(lambda: ws.status is Status.OPEN, what="the socket to open")
    ws.send_text_message("declared")
    assert heard.wait() == ["declared"]
    assert (ws.peer_address, ws.peer_port, accepted[0].peer_address) == ("", 0, "")
    assert "from :0" in repr(accepted[0])
    moved = path + ".2"
    server.unix_socket_path = moved
    wait_until(lambda: server.url.endswith(".2"), what="the server to listen on the new path")
    assert Path(moved).is_socket()
    wait_until(lambda: not Path(path).exists(), what="the old file to go")
    server.listen = False
    wait_until(lambda: not Path(moved).exists(), what="the file to go")


def test_wss_over_a_unix_socket_checks_the_certificate_against_the_urls_host(
    servers: Any, sockets: Any, path: str
) -> None:
    """TLS runs over the file as over TCP: the URL's host is the name the certificate must have."""
    ca = trustme.CA()
    tls_server(servers, ca, names=("app.internal",), unix_socket_path=path)
    heard = Recorder()
    ws = sockets(
        url="wss://app.internal/",
        unix_socket_path=path,
        ssl_configuration=trusting(ca),
        on_text_message_received=heard,
        active=True,
    )
    wait_until(lambda: ws.status is Status.OPEN, what="the TLS socket to open")
    ws.send_text_message("secret")
    assert heard.wait() == ["secret"]
    wrong = sockets(
        url="wss://other.name/", unix_socket_path=path, ssl_configuration=trusting(ca), active=True
    )
    wait_until(lambda: wrong.status is Status.ERROR, what="the wrong name to fail")
    assert "other.name" in wrong.error_string


def test_a_stale_file_is_replaced_and_a_live_one_or_another_file_refused(path: str) -> None:
    # A file left by a server that is gone: nothing accepts on it.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    server = WebSocketServer(unix_socket_path=path, listen=True)
    assert server.listen and server.url
    # Another process's server (here, a plain socket of this one that is no wsbind server).
    server.listen = False
    wait_until(lambda: not Path(path).exists(), what="the server's file to go")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(OSError, match="address already in use") as in_use:
            WebSocketServer(unix_socket_path=path, listen=True)
        assert path in str(in_use.value)
    finally:
        live.close()
        os.unlink(path)
    Path(path).write_text("not a socket")
    with pytest.raises(OSError):
        WebSocketServer(unix_socket_path=path, listen=True)
    assert Path(path).read_text() == "not a socket"


def test_a_second_server_on_the_path_takes_it_over_as_on_a_port(path: str) -> None:
    """A notebook cell run again: the new server listens in the old one's place."""
    first = WebSocketServer(unix_socket_path=path, listen=True)
    second = WebSocketServer(unix_socket_path=path, listen=True)
    try:
        wait_until(lambda: not first.listen, what="the first server to stop")
        assert second.listen and Path(path).is_socket()
    finally:
        second.listen = False
    wait_until(lambda: not Path(path).exists(), what="the file to go")


def test_what_process_request_sets_reaches_its_own_socket_though_clients_share_no_address(
    path: str,
) -> None:
    """Every client of a Unix socket has the same address, none: what a two-argument
    process_request sets must still go to the socket of its own handshake."""

    def process_request(connection: Any, request: Any) -> None:
        connection.username = request.query["user"]

    async def handler(ws: Any) -> None:
        await ws.send(ws.username)
        await ws.wait_closed()

    async def main() -> list[str]:
        async with wsbind.unix_serve(handler, path, process_request=process_request):

            async def client(user: str) -> str:
                async with websockets_unix_connect(path, f"ws://localhost/?user={user}") as c:
                    return str(await c.recv())

            return list(await asyncio.gather(*(client(u) for u in ["ann", "bob", "cy", "dee"])))

    assert run(main()) == ["ann", "bob", "cy", "dee"]


def test_a_path_is_checked_when_given(sockets: Any) -> None:
    with pytest.raises(ValueError, match="at most 107 bytes"):
        WebSocketServer(unix_socket_path="/tmp/" + "x" * 200)
    with pytest.raises(ValueError, match="None for TCP"):
        sockets(unix_socket_path="")
    with pytest.raises(TypeError, match="unix_socket_path must be"):
        sockets(unix_socket_path=3)
    assert sockets(unix_socket_path=Path("/tmp/p.sock")).unix_socket_path == "/tmp/p.sock"
