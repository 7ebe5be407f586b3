"""WebSocketServer, with the independent `websockets` client and raw sockets as its peers."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect

from conftest import STREAM_SIZES, TIMEOUT, Recorder, numbered, wait_until
from wsbind import Status, WebSocket, WebSocketServer


def echo_server(make: Any, **kwargs: Any) -> tuple[WebSocketServer, list[WebSocket]]:
    """A wsbind server that echoes every message; also returns the sockets it accepted."""
    accepted: list[WebSocket] = []

    def on_client(ws: WebSocket) -> None:
        accepted.append(ws)
        ws.text_message_received.connect(ws.send_text_message)
        ws.binary_message_received.connect(ws.send_binary_message)

    return make(on_client_connected=on_client, **kwargs), accepted


def test_listening_fills_in_port_and_url(servers: Any) -> None:
    ports, urls = Recorder(), Recorder()
    server = servers(on_port_changed=ports, on_url_changed=urls)
    assert server.port != 0
    assert server.url == f"ws://127.0.0.1:{server.port}"
    # On the server's thread, soon after.
    assert ports.wait(1) == [server.port]
    assert urls.wait(1) == [server.url]
    assert server.error_string == ""


def test_not_listening_by_default() -> None:
    server = WebSocketServer()
    assert (server.listen, server.url, server.port, server.host, server.accept) == (
        False,
        "",
        0,
        "127.0.0.1",
        True,
    )


@pytest.mark.parametrize("message", ["héllo ✓ 😀", "", b"\x00\xff", b"", b"x" * (16 << 20)])
def test_echo_with_websockets_client(servers: Any, message: Any) -> None:
    server, _ = echo_server(servers)
    with connect(server.url, max_size=None) as client:
        client.send(message)
        assert client.recv(timeout=15) == message


def test_a_stream_of_same_sized_messages_is_echoed_whole_and_in_order(servers: Any) -> None:
    """Runs of one size from a client, sent without waiting, come back one by one, in order."""
    server, _ = echo_server(servers)
    sent = [numbered(i, size) for i, size in enumerate(STREAM_SIZES)]
    with connect(server.url, max_size=None) as client:
        for message in sent:
            client.send(message)
        received = [client.recv(timeout=TIMEOUT) for _ in sent]
    assert received == sent


def test_threads_sending_large_messages_at_once_never_cut_each_others_frames(servers: Any) -> None:
    """Threads send messages larger than the socket takes at once while the peer pings; all arrive whole."""
    accepted: list[WebSocket] = []
    server = servers(on_client_connected=accepted.append)
    rounds, count, size = 10, 4, 1 << 20
    with connect(server.url, max_size=None) as client:
        wait_until(lambda: accepted, what="the server to accept")
        ws = accepted[0]
        done = threading.Event()

        def send(fill: int) -> None:
            for _ in range(count):
                ws.send_binary_message(bytes([fill]) * (size + fill))

        def ping() -> None:
            # The pongs the task queues must not cut a frame either.
            while not done.wait(0.001):
                client.ping()

        pinger = threading.Thread(target=ping)
        pinger.start()
        received = []
        try:
            # Each round starts on an empty socket, where the threads race.
            for _ in range(rounds):
                senders = [threading.Thread(target=send, args=(fill,)) for fill in range(1, 4)]
                for t in senders:
                    t.start()
                for _ in range(3 * count):
                    # A slow reader: the socket takes part of a message, then more.
                    time.sleep(0.002)
                    received.append(client.recv(timeout=TIMEOUT))
                for t in senders:
                    t.join()
        finally:
            done.set()
            pinger.join()
    for message in received:
        assert set(message) == {len(message) - size}
    assert sorted(len(m) - size for m in received) == sorted(list(range(1, 4)) * count * rounds)


def test_client_connected_gives_an_open_active_socket_with_the_request(servers: Any) -> None:
    got = Recorder()
    server = servers(on_client_connected=got, supported_subprotocols=["v2", "v1"])
    with connect(server.url + "/chat/room?user=ann&x=1", subprotocols=["v1", "v2"]) as client:
        (ws,) = got.wait()
        assert isinstance(ws, WebSocket)
        assert ws.status is Status.OPEN
        assert ws.active is True
        assert ws.url == server.url + "/chat/room?user=ann&x=1"
        assert ws.requested_subprotocols == ["v1", "v2"]
        # The client's first preference that the server supports, as Qt picks.
        assert ws.negotiated_subprotocol == "v1"
        assert client.subprotocol == "v1"


def test_no_common_subprotocol_means_none(servers: Any) -> None:
    got = Recorder()
    server = servers(on_client_connected=got, supported_subprotocols=["v3"])
    with connect(server.url, subprotocols=["v1"]) as client:
        (ws,) = got.wait()
        assert ws.negotiated_subprotocol == ""
        assert client.subprotocol is None


def test_supported_subprotocols_apply_to_later_handshakes(servers: Any) -> None:
    server = servers()
    server.supported_subprotocols = ["late"]
    with connect(server.url, subprotocols=["late"]) as client:
        assert client.subprotocol == "late"


def test_name_is_sent_as_the_server_header(servers: Any) -> None:
    server = servers(name="wsbind-test/1.0")
    with connect(server.url) as client:
        assert client.response.headers["Server"] == "wsbind-test/1.0"
    server.name = "renamed"
    with connect(server.url) as client:
        assert client.response.headers["Server"] == "renamed"


def closed_with(client: Any) -> tuple[int | None, str | None]:
    with contextlib.suppress(websockets.ConnectionClosed):
        client.recv(timeout=15)
    return client.close_code, client.close_reason


def test_a_server_socket_closes_when_made_inactive(servers: Any) -> None:
    got = Recorder()
    server = servers(on_client_connected=got)
    with connect(server.url) as client:
        (ws,) = got.wait()
        ws.active = False
        assert closed_with(client) == (1000, "")
    wait_until(lambda: ws.status is Status.CLOSED)


def test_a_server_socket_closes_with_code_and_reason(servers: Any) -> None:
    got = Recorder()
    server = servers(on_client_connected=got)
    with connect(server.url) as client:
        (ws,) = got.wait()
        ws.close(4000, "enough ✓")
        assert closed_with(client) == (4000, "enough ✓")


def test_the_clients_close_code_reaches_the_server_socket(servers: Any) -> None:
    got = Recorder()
    server = servers(on_client_connected=got)
    with connect(server.url) as client:
        (ws,) = got.wait()
        client.close(4321, "client leaves")
    wait_until(lambda: ws.status is Status.CLOSED)
    assert (ws.close_code, ws.close_reason) == (4321, "client leaves")


def test_listen_false_stops_and_closes_clients_with_1001(servers: Any) -> None:
    server, accepted = echo_server(servers)
    url = server.url
    with connect(url) as client:
        wait_until(lambda: accepted)
        server.listen = False
        assert closed_with(client)[0] == 1001
    assert server.url == ""
    wait_until(lambda: accepted[0].status is Status.CLOSED)
    with pytest.raises(OSError):
        connect(url, open_timeout=2).close()


def test_accept_false_pauses_accepting(servers: Any) -> None:
    server, _ = echo_server(servers)
    server.accept = False
    with pytest.raises(TimeoutError):
        connect(server.url, open_timeout=1).close()
    server.accept = True
    with connect(server.url, open_timeout=10) as client:
        client.send("back")
        assert client.recv(timeout=15) == "back"


def test_address_in_use_raises_and_sets_error_string(servers: Any) -> None:
    """An address held by another program (here a plain socket) raises at once, as
    Qt's listen() returns false; a wsbind server's address is taken over instead
    (test_failures.py)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError) as raised:
            servers(port=other.getsockname()[1])
        assert raised.value.errno == errno.EADDRINUSE
        server = servers(port=other.getsockname()[1], listen=False)
        with pytest.raises(OSError):
            server.listen = True
    assert server.listen is False
    assert "cannot listen" in server.error_string
    assert "in use" in server.error_string.lower()
    assert server.url == ""


def test_changing_port_listens_anew(servers: Any) -> None:
    server, _ = echo_server(servers)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server.port = port
    wait_until(lambda: server.url == f"ws://127.0.0.1:{port}")
    with connect(server.url) as client:
        client.send("moved")
        assert client.recv(timeout=15) == "moved"


def raw(server: WebSocketServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def test_broken_clients_do_not_stop_the_server(servers: Any) -> None:
    """Garbage, a broken handshake, a stalled handshake and a protocol violation,
    each from its own client, while a real client keeps talking."""
    server, _ = echo_server(servers)
    with connect(server.url) as good:
        garbage = raw(server)
        garbage.sendall(b"\x00\xff" * 1000)
        broken = raw(server)
        broken.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        stalled = raw(server)
        stalled.sendall(b"GET / HTTP/1.1\r\n")
        with connect(server.url) as violator:
            # An unmasked frame from a client breaks RFC 6455 §5.1.
            violator.socket.sendall(b"\x81\x02hi")
            with contextlib.suppress(websockets.ConnectionClosed):
                violator.recv(timeout=15)
            assert violator.close_code == 1002
        for i in range(3):
            good.send(f"still here {i}")
            assert good.recv(timeout=15) == f"still here {i}"
        with connect(server.url) as late:
            late.send("late")
            assert late.recv(timeout=15) == "late"
        for s in (garbage, broken, stalled):
            s.close()
    assert server.listen and server.url


def test_many_clients_at_once(servers: Any) -> None:
    server, accepted = echo_server(servers)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.url)) for _ in range(20)]
        for i, client in enumerate(clients):
            client.send(f"n{i}")
        for i, client in enumerate(clients):
            assert client.recv(timeout=15) == f"n{i}"
        assert len(accepted) == 20
