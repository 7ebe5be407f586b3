"""websockets' everyday names on wsbind's sockets: ``remote_address``, ``subprotocol``,
``request`` and ``recv(decode=...)``, on the asyncio face and the blocking one, against
the independent `websockets` library both ways."""

from __future__ import annotations

import contextlib
import re
import socket
import uuid
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve

import wsbind
from conftest import TIMEOUT, async_echo, echo, eventually, free_port, run, wait_until, websockets_server
from wsbind import ConnectionClosedError, Request, WebSocket
from wsbind.sync import connect as sync_connect

# Not UTF-8: 0xff starts no character.
NOT_UTF8 = b"\xffabc"


# -- a server's socket, with a websockets client


def test_a_server_socket_gives_its_peer_request_and_subprotocol_by_websockets_names() -> None:
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        request = ws.request
        assert isinstance(request, Request)
        seen.update(
            remote_address=ws.remote_address,
            subprotocol=ws.subprotocol,
            path=request.path,
            target=request.target,
            query=request.query,
            custom=request.headers["x-custom"],
            host=request.headers["HOST"],
            method=request.method,
            body=request.body,
            upgrade=request.upgrade,
            answered=request.answered,
            peer=(request.peer_address, request.peer_port),
            same_headers=request.headers.raw is ws.request_headers.raw,
        )
        with pytest.raises(wsbind.Error, match="answered with 101"):
            request.respond("too late")
        await ws.send("seen")
        await ws.wait_closed()
        seen["after_close"] = (ws.remote_address, ws.subprotocol)

    async def main() -> None:
        async with wsbind.serve(handler, "127.0.0.1", 0, supported_subprotocols=["chat"]) as server:
            url = f"{server.url}/chat%20room/x?a=1&b=two%20words"
            async with websockets_connect(
                url, subprotocols=["chat"], additional_headers={"X-Custom": "yes"}
            ) as client:
                assert await client.recv() == "seen"
                seen["local"] = client.local_address[:2]
        # Leaving serve() waited for the handler, after_close included.

    run(main())
    local = seen["local"]
    assert seen["remote_address"] == local
    assert seen["subprotocol"] == "chat"
    assert seen["path"] == "/chat room/x"
    assert seen["target"] == "/chat%20room/x?a=1&b=two%20words"
    assert seen["query"] == {"a": "1", "b": "two words"}
    assert seen["custom"] == "yes"
    assert seen["host"].startswith("127.0.0.1:")
    assert (seen["method"], seen["body"], seen["upgrade"], seen["answered"]) == ("GET", b"", True, True)
    assert seen["peer"] == local
    # The socket's own headers, not a copy.
    assert seen["same_headers"]
    # As websockets, the peer stays known once the connection is over; as Qt's
    # negotiated_subprotocol (not as websockets), the subprotocol does not.
    assert seen["after_close"] == (local, None)


def test_no_subprotocol_reads_none_where_qt_reads_empty() -> None:
    seen: list[tuple[str, str | None]] = []

    async def handler(ws: WebSocket) -> None:
        seen.append((ws.negotiated_subprotocol, ws.subprotocol))
        await ws.send("ok")

    async def main() -> None:
        async with wsbind.serve(handler, "127.0.0.1", 0) as server:
            async with websockets_connect(server.url) as client:
                assert await client.recv() == "ok"
                assert client.subprotocol is None

    run(main())
    assert seen == [("", None)]


# -- a client's socket, with a websockets server


def test_a_client_socket_gives_its_server_and_the_request_it_sent() -> None:
    served: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        served.update(path=ws.request.path, custom=ws.request.headers["X-Custom"], remote=ws.remote_address)
        await async_echo(ws)

    async def main() -> None:
        async with websockets_serve(handler, "127.0.0.1", 0, subprotocols=["v2", "v1"]) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}/feed?x=1"
            unopened = WebSocket(url=url)
            assert (unopened.remote_address, unopened.subprotocol, unopened.request) == (None, None, None)
            async with wsbind.connect(
                url,
                requested_subprotocols=["v1"],
                request_headers={"X-Custom": "yes"},
                origin="http://example.com",
            ) as ws:
                assert ws.remote_address == ("127.0.0.1", port)
                assert ws.subprotocol == "v1"
                request = ws.request
                assert request is not None
                assert request.target == served["path"] == "/feed?x=1"
                assert request.path == "/feed"
                assert request.query == {"x": "1"}
                assert request.headers["x-custom"] == served["custom"] == "yes"
                assert request.headers["origin"] == "http://example.com"
                # The client of this request is this side.
                assert (request.peer_address, request.peer_port) == served["remote"][:2]
                assert (ws.local_address, ws.local_port) == served["remote"][:2]

    run(main())


# -- recv(decode=...) on the asyncio face


def test_recv_decode_converts_as_websockets_does() -> None:
    async def main() -> None:
        async with websockets_serve(async_echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with wsbind.connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send("héllo")
                assert await ws.recv(decode=False) == "héllo".encode()
                await ws.send("café".encode())
                assert await ws.recv(decode=True) == "café"
                # The other way round leaves them as they came.
                await ws.send("text")
                assert await ws.recv(decode=True) == "text"
                await ws.send(b"\x00\x01")
                assert await ws.recv(decode=False) == b"\x00\x01"
                # None, the default, as received.
                await ws.send("a")
                await ws.send(b"b")
                assert await ws.recv(None) == "a"
                assert await ws.recv() == b"b"
                # async for is unchanged.
                await ws.send(b"c")
                async for message in ws:
                    assert message == b"c"
                    break

    run(main())


def test_recv_decode_of_a_binary_message_that_is_not_utf8_fails_with_1007_as_websockets() -> None:
    """Both libraries' clients against one websockets server that sends bytes that are not UTF-8."""
    closes: list[tuple[int | None, str | None]] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send(NOT_UTF8)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
        closes.append((ws.close_code, ws.close_reason))

    async def main() -> tuple[BaseException, BaseException]:
        async with websockets_serve(handler, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            async with websockets_connect(url) as theirs:
                with pytest.raises(websockets.ConnectionClosedError) as their_error:
                    await theirs.recv(decode=True)
            async with wsbind.connect(url) as ws:
                with pytest.raises(ConnectionClosedError) as our_error:
                    await ws.recv(decode=True)
                assert ws.close_code == 1007
        # Leaving websockets' serve() waited for both handlers.
        return their_error.value, our_error.value

    theirs, ours = run(main())
    assert isinstance(theirs.__cause__, UnicodeDecodeError)
    assert isinstance(ours.__cause__, UnicodeDecodeError)
    assert ours.code == 1007  # type: ignore[attr-defined]
    # The server heard the same close from both.
    assert closes[0] == closes[1] == (1007, "invalid start byte at position 0")


# -- the blocking face


def test_the_blocking_face_has_the_same_names_and_recv_decode() -> None:
    seen: dict[str, Any] = {}

    def handler(ws: Any) -> None:
        seen["remote"] = ws.remote_address[:2]
        seen["path"] = ws.request.path
        echo(ws)

    with websockets_server(handler, subprotocols=["v1"]) as (url, server):
        port = server.socket.getsockname()[1]
        with sync_connect(
            f"{url}/blocking?q=1", requested_subprotocols=["v1"], request_headers={"X-Custom": "yes"}
        ) as ws:
            assert ws.remote_address == ("127.0.0.1", port)
            assert ws.subprotocol == "v1"
            request = ws.request
            assert request is not None
            assert (request.path, request.target) == ("/blocking", "/blocking?q=1")
            assert request.headers["x-custom"] == "yes"
            wait_until(lambda: "path" in seen, what="the server's handler")
            assert (request.peer_address, request.peer_port) == seen["remote"]
            # websockets' path is the target as sent: wsbind's Request.target.
            assert seen["path"] == request.target
            ws.send("héllo")
            assert ws.recv(decode=False) == "héllo".encode()
            ws.send("café".encode())
            assert ws.recv(TIMEOUT, True) == "café"
            ws.send(b"\x00")
            assert ws.recv(timeout=TIMEOUT, decode=None) == b"\x00"
            ws.send("t")
            assert ws.recv(TIMEOUT) == "t"


def test_the_blocking_recv_decode_of_bytes_that_are_not_utf8_fails_with_1007() -> None:
    closes: list[tuple[int | None, str | None]] = []

    def handler(ws: Any) -> None:
        ws.send(NOT_UTF8)
        with contextlib.suppress(websockets.ConnectionClosed):
            ws.recv()
        closes.append((ws.close_code, ws.close_reason))

    with websockets_server(handler) as (url, _), sync_connect(url) as ws:
        with pytest.raises(ConnectionClosedError) as error:
            ws.recv(timeout=TIMEOUT, decode=True)
        assert isinstance(error.value.__cause__, UnicodeDecodeError)
        assert error.value.code == 1007
        assert ws.socket.close_code == 1007
    assert closes == [(1007, "invalid start byte at position 0")]


# -- websockets' keyword arguments to connect() and serve()


def test_connect_takes_websockets_keyword_names() -> None:
    """additional_headers (a list of pairs too), subprotocols, open_timeout and max_size set the
    properties they stand for: a call written for websockets runs unchanged."""
    seen: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        seen["token"] = ws.request.headers["X-Token"] if ws.request else None
        seen["subprotocol"] = ws.subprotocol
        await ws.send("x" * 2000)  # over max_size
        await ws.wait_closed()

    async def main() -> wsbind.ConnectionClosed:
        async with websockets_serve(handler, "127.0.0.1", 0, subprotocols=["v2"]) as server:
            port = server.sockets[0].getsockname()[1]
            async with wsbind.connect(
                f"ws://127.0.0.1:{port}",
                additional_headers=[("X-Token", "abc")],
                subprotocols=["v2"],
                open_timeout=7,
                max_size=1000,
            ) as ws:
                assert ws.request_headers == {"X-Token": "abc"}
                assert ws.handshake_timeout == 7
                assert ws.max_allowed_incoming_message_size == 1000
                assert ws.max_allowed_incoming_frame_size == 1000
                assert ws.subprotocol == "v2"
                with pytest.raises(wsbind.ConnectionClosed) as raised:
                    await ws.recv()
                return raised.value

    end = run(main())
    assert seen == {"token": "abc", "subprotocol": "v2"}
    assert end.code == 1009


def test_serve_takes_websockets_keyword_names() -> None:
    """subprotocols, origins and max_size on serve(), with websockets' client."""

    async def handler(ws: WebSocket) -> None:
        await ws.send(ws.subprotocol or "")
        await ws.wait_closed()

    async def main() -> tuple[int, int | None]:
        origins = ["https://ok.example", re.compile(r"https://[a-z]+\.ok\.example"), None]
        async with wsbind.serve(
            handler, "127.0.0.1", 0, subprotocols=["v1"], origins=origins, max_size=100
        ) as server:
            assert server.supported_subprotocols == ["v1"]
            assert server.max_allowed_incoming_message_size == 100
            url = server.url
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets_connect(url, origin=websockets.Origin("https://other.example")):
                    pass
            # A pattern, and None for a client that sends no Origin, as websockets' origins.
            for origin in [websockets.Origin("https://sub.ok.example"), None]:
                async with websockets_connect(url, origin=origin) as client:
                    assert await client.recv() == ""
            async with websockets_connect(
                url,
                subprotocols=[websockets.Subprotocol("v1")],
                origin=websockets.Origin("https://ok.example"),
            ) as client:
                assert await client.recv() == "v1"
                await client.send("y" * 101)  # over max_size
                await client.wait_closed()
                return refused.value.response.status_code, client.close_code

    assert run(main()) == (403, 1009)


def test_a_property_given_under_both_names_is_refused_and_the_blocking_connect_takes_them_too() -> None:
    with pytest.raises(TypeError, match="additional_headers= and request_headers="):
        wsbind.connect("ws://127.0.0.1:1", additional_headers={}, request_headers={})
    with pytest.raises(TypeError, match="subprotocols= and supported_subprotocols="):
        wsbind.serve(async_echo, subprotocols=[], supported_subprotocols=[])

    def handler(ws: Any) -> None:
        ws.send(ws.request.headers["X-Token"])
        with contextlib.suppress(websockets.ConnectionClosed):
            ws.recv()

    with websockets_server(handler) as (url, _), sync_connect(url, additional_headers={"X-Token": "t"}) as ws:
        assert ws.recv(timeout=TIMEOUT) == "t"


def test_latency_is_measured_by_keepalive_without_a_ping_call() -> None:
    """websockets' latency: 0 before any pong, then the last ping's round trip, keepalive's too;
    kept once the connection is over."""

    async def main() -> None:
        async with websockets_serve(async_echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with wsbind.connect(f"ws://127.0.0.1:{port}", ping_interval=0.05) as ws:
                assert ws.latency == 0.0
                await eventually(lambda: ws.latency > 0)
            assert ws.latency > 0

    run(main())

    def handler(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            ws.recv()

    with websockets_server(handler) as (url, _), sync_connect(url) as ws:
        assert ws.latency == 0.0
        ws.ping(timeout=TIMEOUT)
        assert ws.latency > 0


def test_serve_sets_websockets_socket_options_on_each_client() -> None:
    """serve(ping_interval=..., max_queue=(high, low), ...) as websockets: each client's socket
    has them before its handler runs, and its keepalive pings the client."""
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        seen.update(
            ping_interval=ws.ping_interval,
            ping_timeout=ws.ping_timeout,
            close_timeout=ws.close_timeout,
            max_queue=ws.max_queue,
            write_limit=ws.write_limit,
        )
        await eventually(lambda: ws.latency > 0)  # measured by the server's keepalive alone
        await ws.send("pinged")
        await ws.wait_closed()

    async def main() -> None:
        async with wsbind.serve(
            handler,
            "127.0.0.1",
            0,
            ping_interval=0.05,
            ping_timeout=5,
            close_timeout=3,
            max_queue=(8, 2),
            write_limit=(65536, 1024),
            origins=[None],
        ) as server:
            async with websockets_connect(server.url) as client:  # sends no Origin
                assert await client.recv() == "pinged"

    run(main())
    assert seen == {
        "ping_interval": 0.05,
        "ping_timeout": 5,
        "close_timeout": 3,
        "max_queue": 8,
        "write_limit": 65536,
    }


def test_websockets_keywords_wsbind_does_not_take_say_what_to_give_instead() -> None:
    import ssl

    context = ssl.create_default_context()
    with pytest.raises(TypeError, match=r"ssl_configuration=wsbind\.SslConfiguration"):
        wsbind.connect("wss://127.0.0.1:1", ssl=context)
    with pytest.raises(TypeError, match="secure_mode=True"):
        wsbind.serve(async_echo, ssl=context)
    with pytest.raises(TypeError, match=r"takes no process_response= of websockets': .*process_request="):
        wsbind.serve(async_echo, process_response=lambda *args: None)
    with pytest.raises(TypeError, match="takes no select_subprotocol="):
        wsbind.serve(async_echo, select_subprotocol=lambda *args: None)
    with pytest.raises(TypeError, match='getLogger\\("wsbind"\\)'):
        sync_connect("ws://127.0.0.1:1", logger=None)
    with pytest.raises(ValueError, match="ping_interval"):
        wsbind.serve(async_echo, ping_interval=-1)


def test_an_exception_that_leaves_the_block_closes_with_1011_as_websockets() -> None:
    """The server learns the client failed, not that it said goodbye."""
    codes: list[int | None] = []

    def handler(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in ws:
                pass
        codes.append(ws.close_code)

    async def fails(url: str) -> None:
        async with wsbind.connect(url):
            raise LookupError("the program failed")

    with websockets_server(handler) as (url, _):
        with pytest.raises(LookupError):
            run(fails(url))
        with pytest.raises(LookupError), sync_connect(url):
            raise LookupError("the script failed")
        with sync_connect(url):
            pass
        wait_until(lambda: len(codes) == 3)
    assert codes == [1011, 1011, 1000]


def test_process_request_with_the_connection_as_websockets_recipes_write_it() -> None:
    """websockets' authentication recipe: process_request(connection, request) refuses with
    connection.respond(), or sets connection.username, which the handler then reads."""

    async def process_request(connection: Any, request: Request) -> Any:
        token = request.query.get("token")
        if token != "secret":
            response = connection.respond(401, "Invalid token\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="chat"'
            return response
        assert connection.remote_address[0] == "127.0.0.1"
        connection.username = "alice"
        return None

    async def handler(ws: Any) -> None:
        await ws.send(f"hello {ws.username}")
        await ws.wait_closed()

    async def main() -> tuple[int, bytes]:
        async with wsbind.serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets_connect(f"{server.url}/?token=wrong"):
                    pass
            async with websockets_connect(f"{server.url}/?token=secret") as client:
                assert await client.recv() == "hello alice"
            response = refused.value.response
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="chat"'
        # The hook may be a plain function too.
        async with wsbind.serve(
            handler, "127.0.0.1", 0, process_request=lambda c, r: setattr(c, "username", "bob")
        ) as other:
            async with websockets_connect(other.url) as client:
                assert await client.recv() == "hello bob"
        return response.status_code, response.body

    assert run(main()) == (401, b"Invalid token\n")


def test_the_server_and_a_refusal_have_websockets_names() -> None:
    """server.connections and is_serving(), InvalidStatus.response, the blocking face's close_code."""

    async def handler(ws: WebSocket) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with wsbind.serve(handler, "127.0.0.1", 0, allowed_origins=["https://ok.example"]) as server:
            assert server.is_serving() and server.connections == set()
            connected = server.client_connected.wait(timeout=TIMEOUT)
            async with websockets_connect(server.url, origin=websockets.Origin("https://ok.example")):
                # Awaited first: the client's handshake may be over before the server's
                # side is told, and the left side of == is read first.
                accepted = await connected
                assert server.connections == {accepted}
                assert server.connections == set(server.clients)
            with pytest.raises(wsbind.InvalidStatus) as refused:
                await wsbind.connect(server.url, origin="https://other.example")
            assert refused.value.response.status_code == 403
            assert refused.value.response.headers is refused.value.headers
            server.accept = False
            assert not server.is_serving()
        assert not server.is_serving()

    run(main())

    def closes(ws: Any) -> None:
        ws.close(4000, "bye")

    with websockets_server(closes) as (url, _), sync_connect(url) as ws:
        assert ws.close_code is None
        with pytest.raises(wsbind.ConnectionClosedError):
            ws.recv(timeout=TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (4000, "bye")


def test_what_process_request_set_for_a_refused_handshake_reaches_no_later_client() -> None:
    """The hook's attributes wait, by the client's address and port, for the socket of its
    handshake; a handshake refused after the hook (here by the origin check) leaves them, and
    a later client from the same address and port must not get them."""

    def process_request(connection: Any, request: Request) -> None:
        if "token" in request.query:
            connection.username = request.query["token"]

    async def handler(ws: WebSocket) -> None:
        await ws.send(f"user={getattr(ws, 'username', None)}")
        await ws.wait_closed()

    def from_port(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    async def main() -> str:
        async with wsbind.serve(
            handler, "127.0.0.1", 0, process_request=process_request, origins=["https://ok.example"]
        ) as server:
            first = from_port(0)
            port = first.getsockname()[1]
            first.connect(("127.0.0.1", server.port))
            with pytest.raises(websockets.InvalidStatus):
                async with websockets_connect(
                    f"{server.url}/?token=alice", sock=first, origin=websockets.Origin("https://evil.example")
                ):
                    pass
            # The server closed first, so the port is free again at once.
            second = from_port(port)
            second.connect(("127.0.0.1", server.port))
            async with websockets_connect(
                server.url, sock=second, origin=websockets.Origin("https://ok.example")
            ) as client:
                return str(await client.recv())

    assert run(main()) == "user=None"


def test_a_carried_attribute_a_socket_refuses_is_logged_and_the_client_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def process_request(connection: Any, request: Request) -> None:
        connection.origin = request.headers.get("Origin")  # None: the client sent none

    async def handler(ws: WebSocket) -> None:
        await ws.send("served")
        await ws.wait_closed()

    async def main() -> str:
        async with wsbind.serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            async with websockets_connect(server.url) as client:
                return str(await client.recv())

    assert run(main()) == "served"
    assert "process_request set origin" in caplog.text


def test_websockets_header_and_limit_forms_on_both_faces() -> None:
    """Headers as websockets' Headers or pairs (a name twice is refused, not collapsed), None for
    websockets' defaults, and (high, low) limits on the blocking connect() too."""
    from websockets.datastructures import Headers as WebsocketsHeaders

    with pytest.raises(ValueError, match="x-a more than once"):
        wsbind.connect("ws://127.0.0.1:1", additional_headers=[("X-A", "1"), ("x-a", "2")])
    with pytest.raises(TypeError, match="extra_headers= and additional_headers="):
        wsbind.connect("ws://127.0.0.1:1", additional_headers={}, extra_headers={})
    seen: list[str] = []

    def handler(ws: Any) -> None:
        seen.append(ws.request.headers.get("X-A", ""))
        with contextlib.suppress(websockets.ConnectionClosed):
            ws.recv()

    with websockets_server(handler) as (url, _):
        headers = WebsocketsHeaders([("X-A", "1")])
        with sync_connect(url, additional_headers=headers, origin=None, max_queue=(4, 1)) as ws:
            assert ws.max_queue == 4
            assert ws.socket.origin == ""
        with sync_connect(url, additional_headers=None, max_queue=None):
            pass
        wait_until(lambda: len(seen) == 2)
    assert seen == ["1", ""]


def test_user_agent_and_server_headers_as_websockets_names_them() -> None:
    seen: list[str] = []

    async def handler(ws: WebSocket) -> None:
        seen.append(ws.request_headers.get("User-Agent", ""))
        await ws.send("seen")
        await ws.wait_closed()

    async def main() -> str:
        async with wsbind.serve(handler, "127.0.0.1", 0, server_header="wsbind-test") as server:
            async with wsbind.connect(
                server.url, user_agent_header="my-bot/1.0", additional_headers={"X": "y"}
            ) as ws:
                assert await ws.recv() == "seen"
            async with websockets_connect(server.url) as client:
                assert client.response is not None
                return str(client.response.headers["Server"])

    assert run(main()) == "wsbind-test"
    assert seen[0] == "my-bot/1.0"


# -- send(text=...), state, id and response


def kinds_heard(heard: list[str | bytes]) -> Any:
    """A websockets handler that keeps every message it gets, as it got it (str or bytes)."""

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            heard.append(message)
            await ws.send("heard")

    return handler


def test_send_text_sends_bytes_as_text_and_str_as_binary_as_websockets() -> None:
    heard: list[str | bytes] = []

    async def main() -> tuple[int | None, str | None]:
        async with websockets_serve(kinds_heard(heard), "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            async with wsbind.connect(url) as ws:
                for message, text in [
                    ('{"a": "é"}'.encode(), True),
                    (memoryview(b"view"), True),
                    ("str as binary", False),
                    ("as usual", None),
                    (b"as usual", None),
                    ([b"split \xc3", b"\xa9 across"], True),
                    (["x", b"y"], False),
                ]:
                    await ws.send(message, text=text)
                    assert await ws.recv() == "heard"
                # Checked before it is queued: nothing goes out, the socket stays open.
                with pytest.raises(UnicodeDecodeError):
                    await ws.send(NOT_UTF8, text=True)
                await ws.send("still open")
                assert await ws.recv() == "heard"
                # Fragments that end inside a character cannot be finished: the
                # socket closes (1011), which websockets, in the middle of a
                # message, answers with 1002.
                with pytest.raises(UnicodeDecodeError):
                    await ws.send([b"ends in \xc3"], text=True)
                await ws.wait_closed()
                return ws.close_code, ws.close_reason

    assert run(main()) == (1002, "incomplete fragmented message")
    assert heard == [
        '{"a": "é"}',
        "view",
        b"str as binary",
        "as usual",
        b"as usual",
        "split é across",
        b"xy",
        "still open",
    ]


def test_the_blocking_send_takes_text_too() -> None:
    heard: list[str | bytes] = []

    def handler(ws: Any) -> None:
        for message in ws:
            heard.append(message)
            ws.send("heard")

    with websockets_server(handler) as (url, _), sync_connect(url) as ws:
        ws.send("café".encode(), text=True)
        assert ws.recv(TIMEOUT) == "heard"
        ws.send("binary", text=False)
        assert ws.recv(TIMEOUT) == "heard"
        ws.send([b"a\xc3", b"\xa9"], text=True)
        assert ws.recv(TIMEOUT) == "heard"
        with pytest.raises(UnicodeDecodeError):
            ws.send(NOT_UTF8, text=True)
    assert heard == ["café", b"binary", "aé"]


def test_state_reads_websockets_states_and_id_names_the_socket() -> None:
    from websockets.protocol import State

    async def main() -> None:
        async with wsbind.serve(async_echo, "127.0.0.1", 0) as server:
            ws = WebSocket(url=server.url)
            assert ws.state is wsbind.Status.CLOSED
            first = ws.id
            assert isinstance(first, uuid.UUID) and first.version == 4
            async with wsbind.connect(server.url) as ws:
                assert ws.state == State.OPEN and ws.state is wsbind.Status.OPEN
                assert ws.id == ws.id != first
            assert ws.state == State.CLOSED
        # A failure is CLOSED to websockets' eyes; status still tells it from a close.
        failed = WebSocket(url=f"ws://127.0.0.1:{free_port()}")
        statuses = failed.status_changed.emissions()
        failed.active = True
        async for status in statuses:
            if status is not wsbind.Status.CONNECTING:
                break
        assert failed.status is wsbind.Status.ERROR
        assert failed.state is wsbind.Status.CLOSED

    run(main())
    with websockets_server(echo, server_header="theirs/1") as (url, _), sync_connect(url) as ws:
        assert ws.state == 1 and ws.id == ws.socket.id
        assert ws.response is not None and ws.response.headers["Server"] == "theirs/1"


def test_response_is_the_101_on_both_sides() -> None:
    """Our client reads the 101 a websockets server sent; our server's socket gives, header for
    header, the 101 a websockets client received from it."""

    async def main() -> None:
        async with websockets_serve(async_echo, "127.0.0.1", 0, server_header="theirs/1") as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            ws = WebSocket(url=url)
            assert ws.response is None
            async with wsbind.connect(url) as ws:
                response = ws.response
                assert response is not None
                assert response.status_code == 101
                assert (response.reason_phrase, response.body) == ("Switching Protocols", b"")
                assert response.headers["server"] == "theirs/1"
                assert response.headers["Upgrade"] == "websocket"
                assert "Sec-WebSocket-Accept" in response.headers
            # Kept once the connection is over.
            assert ws.response == response

        sent: list[Any] = []

        async def handler(ws: WebSocket) -> None:
            sent.append(ws.response)
            await async_echo(ws)

        async with wsbind.serve(
            handler, "127.0.0.1", 0, server_header="ours/2", subprotocols=["chat"], compression="deflate"
        ) as ours:
            async with websockets_connect(ours.url, subprotocols=["chat"], compression="deflate") as client:
                await client.send("x")
                assert await client.recv() == "x"
                assert client.response is not None
                received = list(client.response.headers.raw_items())
        assert sent[0].status_code == 101
        assert list(sent[0].headers.raw) == received
        names = [name for name, _ in received]
        assert names == [
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Accept",
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions",
            "Server",
        ]

    run(main())
