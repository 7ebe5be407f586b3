"""The asyncio face: ``wsbind.connect()``, ``wsbind.serve()`` and awaiting on the same
``WebSocket`` objects, against the independent `websockets` library both ways."""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import gc
import itertools
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import websockets
import websockets.exceptions
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve

import wsbind
from conftest import TIMEOUT, Recorder, eventually, free_port, run, wait_until, websockets_server
from conftest import async_echo as echo
from conftest import echo as sync_echo
from rawpeer import raw_websocket_server
from wsbind import Status, WebSocket, _wsbind


def port_of(server: Any) -> int:
    return int(server.sockets[0].getsockname()[1])


# -- connect() against a websockets server


def test_connect_talks_to_a_websockets_server_and_closes_with_1000_on_leaving() -> None:
    seen: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["header"] = ws.request.headers.get("X-Test")
        await echo(ws)
        seen["close"] = ws.close_code

    async def main() -> None:
        async with websockets_serve(handler, "127.0.0.1", 0, subprotocols=["v2", "v1"]) as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            async with wsbind.connect(
                url, requested_subprotocols=["v1"], request_headers={"X-Test": "yes"}
            ) as ws:
                assert isinstance(ws, WebSocket)
                assert ws.status is Status.OPEN
                assert ws.negotiated_subprotocol == "v1"
                await ws.send("text")
                assert await ws.recv() == "text"
                for data in (b"\x00\xff", bytearray(b"ba"), memoryview(b"mv")):
                    await ws.send(data)
                    received = await ws.recv()
                    assert type(received) is bytes and received == bytes(data)
                # Fragments, from an iterable and from an async iterable, make one message.
                await ws.send(["frag", "ments"])
                assert await ws.recv() == "fragments"

                async def parts() -> AsyncIterator[bytes]:
                    yield b"as"
                    yield b"ync"

                await ws.send(parts())
                assert await ws.recv() == b"async"
                # A mix of str and bytes fails the connection: tests/test_fragments.py.
                with pytest.raises(TypeError):
                    await ws.send(42)  # type: ignore[arg-type]
            assert ws.status is Status.CLOSED
            assert ws.close_code == 1000
            await eventually(lambda: "close" in seen, "the server's handler to end")
        assert seen == {"header": "yes", "close": 1000}

    run(main())


def test_awaited_connect_and_close_for_top_level_await() -> None:
    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            ws = await wsbind.connect(f"ws://127.0.0.1:{port_of(server)}")
            await ws.send("hi")
            assert await ws.recv() == "hi"
            closing = ws.close(4000, "bye")
            assert ws.status is Status.CLOSING
            await closing
            assert ws.status is Status.CLOSED
            assert (ws.close_code, ws.close_reason) == (4000, "bye")
            # A closed connection raises from recv() and send(), with how it closed.
            with pytest.raises(wsbind.ConnectionClosedError) as raised:
                await ws.recv()
            assert (raised.value.code, raised.value.reason) == (4000, "bye")
            with pytest.raises(wsbind.ConnectionClosed):
                await ws.send("late")
            # Closing again is harmless, awaited or not.
            await ws.close()

    run(main())


def test_async_for_ends_quietly_on_a_normal_close_and_raises_on_another() -> None:
    def closing_with(code: int) -> Callable[[ServerConnection], Awaitable[None]]:
        async def handler(ws: ServerConnection) -> None:
            await ws.send("one")
            await ws.send("two")
            await ws.close(code, "done")

        return handler

    async def messages_until_the_end(code: int) -> list[str | bytes]:
        async with websockets_serve(closing_with(code), "127.0.0.1", 0) as server:
            got: list[str | bytes] = []
            async with wsbind.connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                async for message in ws:
                    got.append(message)
                return got

    async def main() -> None:
        assert await messages_until_the_end(1000) == ["one", "two"]
        assert await messages_until_the_end(1001) == ["one", "two"]
        with pytest.raises(wsbind.ConnectionClosedError) as raised:
            await messages_until_the_end(1011)
        assert raised.value.code == 1011
        assert raised.value.reason == "done"

    run(main())


def test_ping_is_awaitable_and_still_emits_pong() -> None:
    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            pongs = Recorder()
            async with wsbind.connect(f"ws://127.0.0.1:{port_of(server)}", on_pong=pongs) as ws:
                latency = await ws.ping()
                assert isinstance(latency, float) and latency > 0
                # In the QML style the result is ignored; the pong signal tells.
                ws.ping(b"qml")
                await eventually(lambda: len(pongs.calls) == 2)
                assert pongs.calls[1][1] == b"qml"
                # Several pings in flight, awaited out of order.
                first, second = ws.ping(b"1"), ws.ping(b"2")
                assert await second > 0
                assert await first > 0
                # A str goes as its UTF-8, as in websockets.
                assert await ws.ping("é") > 0
                await eventually(lambda: len(pongs.calls) == 5)
                assert pongs.calls[4][1] == "é".encode()

    run(main())


def test_connection_closed_carries_the_close_frames_each_way_as_websockets() -> None:
    """rcvd, sent and rcvd_then_sent: who closed, with what; None for a frame that never went."""

    async def closes(ws: ServerConnection) -> None:
        await ws.close(4001, "go away")

    async def drops(ws: ServerConnection) -> None:
        assert ws.transport is not None
        ws.transport.abort()

    Handler = Callable[[ServerConnection], Awaitable[None]]

    async def end_of(handler: Handler, close: bool) -> wsbind.ConnectionClosed:
        async with websockets_serve(handler, "127.0.0.1", 0) as server:
            ws = await wsbind.connect(f"ws://127.0.0.1:{port_of(server)}")
            if close:
                await ws.close(1000, "bye")
            with pytest.raises(wsbind.ConnectionClosed) as raised:
                await ws.recv()
            return raised.value

    async def main() -> None:
        by_peer = await end_of(closes, close=False)
        assert by_peer.rcvd == wsbind.Close(4001, "go away")
        assert by_peer.sent == wsbind.Close(4001, "go away")  # our echo
        assert by_peer.rcvd_then_sent is True
        by_us = await end_of(echo, close=True)
        assert isinstance(by_us, wsbind.ConnectionClosedOK)
        assert (by_us.rcvd, by_us.sent) == (wsbind.Close(1000, "bye"), wsbind.Close(1000, "bye"))
        assert by_us.rcvd_then_sent is False
        dropped = await end_of(drops, close=False)
        assert isinstance(dropped, wsbind.ConnectionClosedError)
        assert (dropped.code, dropped.rcvd, dropped.sent, dropped.rcvd_then_sent) == (1006, None, None, None)

    run(main())


def test_a_ping_once_the_connection_is_closing_or_over_raises_connection_closed_when_awaited() -> None:
    """As websockets' ping(): no NotOpenError for a race with the peer's close."""

    async def closes_after_a_message(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4002, "later")

    async def main() -> None:
        async with websockets_serve(closes_after_a_message, "127.0.0.1", 0) as server:
            pongs = Recorder()
            ws = await wsbind.connect(f"ws://127.0.0.1:{port_of(server)}", on_pong=pongs)
            await ws.close(4000, "mine")
            closing = ws.ping(b"closing")  # Before the peer's answer: CLOSING.
            await ws.wait_closed()
            over = ws.ping(b"over")
            for waiter in (closing, over):
                with pytest.raises(wsbind.ConnectionClosedError) as raised:
                    await waiter
                assert raised.value.code == 4000
                assert raised.value.sent == wsbind.Close(4000, "mine")
            with pytest.raises(ValueError, match="125"):
                ws.ping(bytes(126))
            assert pongs.calls == []

    run(main())


def test_close_and_ping_run_as_tasks_as_websockets_coroutines_do() -> None:
    """asyncio.create_task() and TaskGroup take only coroutines: close() and ping() are,
    without being coroutines that warn when QML-style code never awaits them."""

    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            ws = await wsbind.connect(f"ws://127.0.0.1:{port_of(server)}")
            assert await asyncio.create_task(ws.ping()) > 0
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(ws.close())
            assert ws.status is Status.CLOSED
            ws.close()  # Not awaited, as in the QML style.
            gc.collect()
        async with wsbind.serve(echo, "127.0.0.1", 0) as ours:
            await asyncio.create_task(ours.close())
            assert not ours.listen

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(main())


def test_wait_closed_keeps_a_handler_until_its_client_leaves() -> None:
    """websockets' broadcast pattern: a handler keeps its client in a set until it leaves."""

    async def main() -> None:
        clients: set[WebSocket] = set()
        left = asyncio.Event()

        async def handler(ws: WebSocket) -> None:
            clients.add(ws)
            try:
                await ws.wait_closed()
            finally:
                clients.remove(ws)
                left.set()

        async with wsbind.serve(handler, "127.0.0.1", 0) as server:
            async with websockets_connect(server.url) as client:
                await eventually(lambda: clients, "the client in the set")
                for ws in clients:
                    await ws.send("news")
                assert await client.recv() == "news"
            await left.wait()
            assert not clients
        # A socket with no connection has nothing to wait for.
        await WebSocket().wait_closed()

    run(main())


def test_asyncio_run_again_and_again_keeps_no_descriptors() -> None:
    """Each asyncio.run() gets a dispatcher for its loop, let go of once the loop is closed:
    a program that calls asyncio.run() over and over does not run out of descriptors."""
    from wsbind import dispatch

    async def once() -> None:
        server = await wsbind.serve(lambda ws: ws.wait_closed())
        await server.close()

    def descriptors() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    asyncio.run(once())
    before = descriptors()
    for _ in range(60):
        asyncio.run(once())
    # Three descriptors a run were kept before (the queue's and its poller's).
    assert descriptors() - before < 30
    assert len(dispatch._loops) <= 1


EXITS_RIGHT_AFTER_SERVE = """
import asyncio, wsbind
async def main():
    server = await wsbind.serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0)
    async with wsbind.serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0):
        pass
asyncio.run(main())
"""


def test_a_script_that_exits_right_after_serve_exits_cleanly() -> None:
    """No result is handed to a loop once Python exits: handing it over while CPython finalized
    killed the process (SIGSEGV, SIGABRT) in half the runs on a busy machine. Four at a time
    keep the machine busy."""
    for _ in range(6):
        scripts = [
            subprocess.Popen(
                [sys.executable, "-c", EXITS_RIGHT_AFTER_SERVE],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        for script in scripts:
            _, stderr = script.communicate(timeout=TIMEOUT)
            assert (script.returncode, stderr.decode()) == (0, "")


AWAITS_AFTER_WSBIND_EXITS = """
import asyncio, atexit

def late():  # Registered before wsbind's hook, so it runs after it.
    import wsbind
    try:
        asyncio.run(asyncio.wait_for(wsbind.serve(lambda ws: ws.wait_closed()), 10))
    except RuntimeError as e:
        print(e)

atexit.register(late)
import wsbind
"""


def test_an_await_after_python_started_exiting_raises_rather_than_hangs() -> None:
    result = subprocess.run(
        [sys.executable, "-c", AWAITS_AFTER_WSBIND_EXITS], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.stdout == "Python is exiting: wsbind hands no more results to an asyncio loop\n"


def test_a_socket_of_a_loop_that_is_closed_says_so() -> None:
    """Its events go to the loop it was made on: recv() and wait_closed() on another loop, once
    that one is closed, would wait for ever."""

    async def opened(url: str) -> WebSocket:
        return await wsbind.connect(url)

    async def later(ws: WebSocket) -> None:
        with pytest.raises(RuntimeError, match="loop that is closed"):
            await ws.recv()
        with pytest.raises(RuntimeError, match="loop that is closed"):
            await ws.wait_closed()

    with websockets_server(sync_echo) as (url, _):
        ws = asyncio.run(opened(url))
        try:
            run(later(ws))
        finally:
            ws.abort()


# -- failures to connect


def test_a_refused_handshake_raises_invalid_status_with_the_status() -> None:
    def forbid(connection: ServerConnection, request: Any) -> Any:
        response = connection.respond(HTTPStatus.FORBIDDEN, "no\n")
        response.headers["X-Why"] = "members only"
        return response

    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0, process_request=forbid) as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            with pytest.raises(wsbind.InvalidStatus) as raised:
                await wsbind.connect(url)
            assert raised.value.status_code == 403
            assert raised.value.reason_phrase == "Forbidden"
            assert raised.value.headers["x-why"] == "members only"
            assert raised.value.headers["Content-Length"] == "3"
            assert str(raised.value) == "handshake rejected: HTTP 403 Forbidden"
            assert isinstance(raised.value, wsbind.InvalidHandshake)
            assert isinstance(raised.value, wsbind.Error)

    run(main())


def test_network_failures_raise_oserror_kinds_with_the_error_string() -> None:
    async def main() -> None:
        port = free_port()
        with pytest.raises(ConnectionRefusedError) as refused:
            async with wsbind.connect(f"ws://127.0.0.1:{port}"):
                pass
        assert str(refused.value).startswith(f"cannot connect to 127.0.0.1:{port}: ")
        assert refused.value.errno is not None
        # A peer that takes the TCP connection and never answers the handshake.
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            url = f"ws://127.0.0.1:{silent.getsockname()[1]}"
            with pytest.raises(TimeoutError, match=r"^handshake timeout"):
                await wsbind.connect(url, handshake_timeout=0.2)
        # Misuse raises where connect() is written.
        with pytest.raises(wsbind.InvalidURL):
            wsbind.connect("http://example.com")
        with pytest.raises(TypeError, match="active"):
            wsbind.connect("ws://127.0.0.1:1", active=False)

    run(main())


def test_connect_error_reads_each_form_of_error_string() -> None:
    from wsbind.errors import connect_error

    rejected = connect_error("handshake rejected: HTTP 503 Service Unavailable")
    assert isinstance(rejected, wsbind.InvalidStatus)
    assert (rejected.status_code, rejected.reason_phrase) == (503, "Service Unavailable")
    reset = connect_error("handshake failed: connection lost: Connection reset by peer (os error 104)")
    assert isinstance(reset, ConnectionResetError) and reset.errno == 104
    assert str(reset) == "handshake failed: connection lost: Connection reset by peer (os error 104)"
    assert isinstance(
        connect_error("handshake failed: connection lost: unexpected end of file"), ConnectionError
    )
    assert type(connect_error("handshake failed: wrong Sec-WebSocket-Accept")) is wsbind.InvalidHandshake
    import ssl

    unverified = connect_error("certificate verify failed: unknown issuer")
    assert isinstance(unverified, ssl.SSLCertVerificationError)
    assert str(unverified) == "certificate verify failed: unknown issuer"
    tls = connect_error("TLS handshake failed: the server does not speak TLS (is the URL ws://?)")
    assert type(tls) is ssl.SSLError and str(tls).endswith("(is the URL ws://?)")
    proxy = connect_error("proxy refused the tunnel: HTTP 407 Proxy Authentication Required")
    assert isinstance(proxy, wsbind.InvalidProxy) and proxy.status_code == 407
    assert not wsbind.aio.retryable(proxy)
    assert wsbind.aio.retryable(connect_error("proxy refused the tunnel: HTTP 502 Bad Gateway"))
    socks = connect_error("SOCKS5 proxy refused the user name or password")
    assert isinstance(socks, wsbind.InvalidProxy) and socks.status_code is None
    assert type(connect_error("cannot connect to nowhere.invalid:80: failed to lookup")) is OSError


# -- serve() with a websockets client


def test_serve_runs_a_task_per_client_for_a_websockets_client(caplog: pytest.LogCaptureFixture) -> None:
    handled: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        handled.append(ws)
        async for message in ws:
            if message == "fail":
                raise RuntimeError("the handler failed on purpose")
            if message == "return":
                return
            await ws.send(message)

    async def main() -> None:
        async with wsbind.serve(handler, "127.0.0.1", 0, name="asyncio/1") as server:
            assert isinstance(server, wsbind.WebSocketServer)
            assert server.url == f"ws://127.0.0.1:{server.port}"
            async with websockets_connect(server.url) as client:
                assert client.response is not None
                assert client.response.headers["Server"] == "asyncio/1"
                await client.send("hello")
                assert await client.recv() == "hello"
                await client.send(b"\x01\x02")
                assert await client.recv() == b"\x01\x02"
                # A handler that returns: the connection closes with 1000.
                await client.send("return")
                with pytest.raises(websockets.ConnectionClosedOK):
                    await client.recv()
                assert client.close_code == 1000
            # A handler that raises: logged with its traceback, the connection closed with 1011.
            async with websockets_connect(server.url) as client:
                await client.send("fail")
                with pytest.raises(websockets.ConnectionClosedError):
                    await client.recv()
                assert client.close_code == 1011
            # The server goes on serving; closing it closes its clients with 1001.
            async with websockets_connect(server.url) as client:
                await client.send("still")
                assert await client.recv() == "still"
                await server.close()
                with pytest.raises(websockets.ConnectionClosedOK):
                    await client.recv()
                assert client.close_code == 1001
            assert server._handlers == set()
            assert server.clients == []
            assert all(ws.status is Status.CLOSED for ws in handled)

    with caplog.at_level(logging.ERROR, logger="wsbind"):
        run(main())
    failures = [r for r in caplog.records if "connection handler failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "the handler failed on purpose" in str(failures[0].exc_info[1])


def test_serve_forever_returns_when_the_server_is_closed() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send(f"hello {ws.resource_name}")

    async def main() -> None:
        server = await wsbind.serve(handler, port=0)
        forever = asyncio.create_task(server.serve_forever())
        async with websockets_connect(f"{server.url}/x") as client:
            assert await client.recv() == "hello /x"
        assert not forever.done()
        await server.close()
        await forever
        assert not server.listen
        # Cancelling serve_forever() closes the server, as asyncio's does.
        server = await wsbind.serve(handler, port=0)
        forever = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0)
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        assert server.url == ""

    run(main())


def ipv6_loopback() -> bool:
    """Whether this machine can listen on ::1."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["", None])
def test_serve_on_every_interface_as_websockets(host: str | None) -> None:
    """``serve(handler, "", port)``, as websockets' tutorial writes it, listens on every
    interface, IPv4 and IPv6 alike; None too."""

    async def handler(ws: WebSocket) -> None:
        await ws.send(f"{ws.local_address} {ws.peer_address}")

    async def main() -> None:
        async with wsbind.serve(handler, host, 0) as server:
            assert server.host == ""
            addresses = ["127.0.0.1", "[::1]"] if ipv6_loopback() else ["127.0.0.1"]
            for address in addresses:
                async with websockets_connect(f"ws://{address}:{server.port}") as client:
                    # An IPv4 client reads as one, not as ::ffff:127.0.0.1.
                    plain = address.strip("[]")
                    assert await client.recv() == f"{plain} {plain}"

    run(main())


def test_serve_raises_when_it_cannot_listen() -> None:
    async def handler(ws: WebSocket) -> None:
        pass

    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError) as raised:
                async with wsbind.serve(handler, "127.0.0.1", taken.getsockname()[1]):
                    pass
            assert raised.value.errno == errno.EADDRINUSE

    run(main())


def test_serve_takes_the_address_over_from_a_server_of_this_process() -> None:
    """What running a notebook cell with ``await wsbind.serve(...)`` again does: the new
    server binds through an awaitable while the old one stops, and the old one's clients
    get 1001."""

    async def greet(ws: WebSocket) -> None:
        await ws.send(f"hello from {ws.resource_name}")
        await ws.recv()

    async def main() -> None:
        old = await wsbind.serve(greet, "127.0.0.1", 0)
        async with websockets_connect(f"{old.url}/old") as client:
            assert await client.recv() == "hello from /old"
            new = await wsbind.serve(greet, "127.0.0.1", old.port)
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                await client.recv()
            assert client.close_code == 1001
        assert not old.listen
        async with websockets_connect(f"{new.url}/new") as client:
            assert await client.recv() == "hello from /new"
        await new.close()

    run(main())


def test_send_takes_any_bytes_like_object() -> None:
    """Any object of the buffer protocol is bytes-like, whatever its items: an array of
    ints goes out as its raw bytes, as ``bytes(obj)`` gives them."""

    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            async with wsbind.connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                ints = array.array("i", [1, -2, 3])
                await ws.send(ints)
                assert await ws.recv() == bytes(ints)
                await ws.send(memoryview(b"abcdefgh").cast("I"))
                assert await ws.recv() == b"abcdefgh"
                ws.send_binary_message(array.array("d", [0.5]))
                assert await ws.recv() == bytes(array.array("d", [0.5]))
                await ws.send([array.array("h", [1]), b"x"])
                assert await ws.recv() == bytes(array.array("h", [1])) + b"x"
                # A str with a lone surrogate has no UTF-8: said as websockets says it.
                with pytest.raises(UnicodeEncodeError):
                    ws.send_text_message("a\udcffb")
                with pytest.raises(UnicodeEncodeError):
                    await ws.send("a\udcffb")
                await ws.send("still open")
                assert await ws.recv() == "still open"
                with pytest.raises(TypeError, match=r"^send\(\) takes a bytes-like object, not int"):
                    await ws.send([b"x", 5])

    run(main())


# -- recv(): cancelling, concurrency, handlers


def test_a_cancelled_recv_loses_no_message() -> None:
    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            async with wsbind.connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                # Cancelled while nothing came: nothing to lose.
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await ws.recv()
                # The worst moment: the message has woken the waiting recv(), which is
                # cancelled before it runs again.
                waiting = asyncio.create_task(ws.recv())
                await asyncio.sleep(0)
                ws.text_message_received.connect(lambda message: waiting.cancel())
                await ws.send("kept")
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                assert await ws.recv() == "kept"

    run(main())


def test_two_coroutines_in_recv_at_once_is_an_error() -> None:
    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            async with wsbind.connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                first = asyncio.create_task(ws.recv())
                await asyncio.sleep(0)
                with pytest.raises(wsbind.ConcurrencyError, match="another coroutine"):
                    await ws.recv()
                await ws.send("for the first")
                assert await first == "for the first"

    run(main())


def test_handlers_and_recv_both_see_every_message() -> None:
    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            texts = Recorder()
            async with wsbind.connect(url, on_text_message_received=texts) as ws:
                for message in ("a", "b", "c"):
                    await ws.send(message)
                assert [await ws.recv() for _ in range(3)] == ["a", "b", "c"]
                assert texts.values == ["a", "b", "c"]

            # A socket made the QML way holds nothing for recv() until recv() is used.
            handled = Recorder()
            qml = WebSocket(url=url, active=True, on_text_message_received=handled)
            await eventually(lambda: qml.status is Status.OPEN)
            qml.send_text_message("before")
            await eventually(lambda: handled.values == ["before"])
            receiving = asyncio.create_task(qml.recv())
            await asyncio.sleep(0)
            qml.send_text_message("after")
            assert await receiving == "after"
            assert handled.values == ["before", "after"]
            await qml.close()

    run(main())


def test_recv_and_send_on_a_socket_that_never_opened_say_so() -> None:
    async def main() -> None:
        ws = WebSocket()
        with pytest.raises(wsbind.NotOpenError, match="never opened"):
            await ws.recv()
        with pytest.raises(wsbind.NotOpenError, match="CLOSED"):
            await ws.send("x")
        # Closing it, awaited or not, does nothing.
        await ws.close()

    run(main())


def test_recv_on_a_socket_of_another_thread() -> None:
    """A socket made outside any loop (handlers on wsbind's event thread), awaited inside one."""

    async def serve_echo(ready: threading.Event, stop: asyncio.Event, port: list[int]) -> None:
        async with websockets_serve(echo, "127.0.0.1", 0) as server:
            port.append(port_of(server))
            ready.set()
            await stop.wait()

    async def main(ws: WebSocket) -> list[str | bytes]:
        # Messages are held from the first recv() on.
        first = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)
        ws.send_text_message("one")
        await ws.send("two")
        got = [await first, await ws.recv()]
        assert await ws.ping() > 0
        await ws.close()
        assert ws.status is Status.CLOSED
        return got

    port: list[int] = []
    ready = threading.Event()
    peer_loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    peer = threading.Thread(target=peer_loop.run_until_complete, args=(serve_echo(ready, stop, port),))
    peer.start()
    try:
        assert ready.wait(TIMEOUT)
        ws = WebSocket(url=f"ws://127.0.0.1:{port[0]}", active=True)
        wait_until(lambda: ws.status is Status.OPEN, what="the socket to open")
        assert run(main(ws)) == ["one", "two"]
    finally:
        peer_loop.call_soon_threadsafe(stop.set)
        peer.join(TIMEOUT)
        peer_loop.close()


# -- flow control


# Incompressible, so that permessage-deflate does not shrink what flow control measures.
NOISE = os.urandom(64 << 10)


def numbered(index: int, size: int) -> bytes:
    """A message of ``size`` bytes (at most 64 KiB) that says which it is."""
    return struct.pack("!I", index) + NOISE[4:size]


class Flood:
    """A websockets server that sends each client ``total`` numbered messages of ``size``
    bytes as fast as it may, counting them in ``sent``.

    Its send buffer is small (accepted sockets inherit the listener's): its
    own buffer, not the kernel's, shows when it stalls.
    """

    def __init__(self, total: int, size: int) -> None:
        self.total = total
        self.size = size
        self.sent = 0
        self.peers: list[ServerConnection] = []

    async def _flood(self, ws: ServerConnection) -> None:
        self.peers.append(ws)
        for i in range(self.total):
            await ws.send(numbered(i, self.size))
            self.sent += 1
        await ws.wait_closed()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serves while the block runs; gives the URL."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        async with websockets_serve(self._flood, sock=listener, max_size=None) as server:
            yield f"ws://127.0.0.1:{port_of(server)}"


def test_max_queue_stops_reading_so_that_tcp_pushes_back_and_nothing_is_lost() -> None:
    # 128 MiB: more than the kernel's socket buffers on loopback (tens of MiB
    # with autotuning) and wsbind's own bound on events waiting for Python.
    total, size, max_queue = 2000, 64 << 10, 4
    flood = Flood(total, size)

    async def main() -> None:
        async with flood.serving() as url:
            delivered = Recorder()
            # Uncompressed: 128 MiB of noise through deflate on both sides took most of the
            # test's time limit on a busy machine, and compression is not what is tested.
            async with wsbind.connect(
                url, max_queue=max_queue, compression=None, on_binary_message_received=delivered
            ) as ws:
                # The program does not read. The peer's sends stall once the kernel's buffers
                # are full: its own buffer then grows past its write limit.
                def stalled() -> bool:
                    transport = flood.peers[0].transport if flood.peers else None
                    return transport is not None and transport.get_write_buffer_size() > 0

                await eventually(lambda: len(delivered.calls) >= max_queue and stalled(), "the peer to stall")
                assert flood.sent < total
                # Held: the queue, plus what had arrived before reading paused: the events the
                # native queue lets wait for Python (read before recv() could run), and what
                # the loop read while the pause reached the connection's task, which a busy
                # machine can delay; a bound either way, and far below the 128 MiB sent.
                bound = max_queue * size + 2 * _wsbind.MAX_PENDING_EVENT_BYTES
                assert len(delivered.calls) * size <= bound
                # Reading again, every message comes, in order.
                for i in range(total):
                    assert await ws.recv() == numbered(i, size)
                assert flood.sent == total

    run(main())


def test_raising_max_queue_while_reading_is_paused_resumes_it() -> None:
    total, size = 200, 64 << 10
    flood = Flood(total, size)

    async def main() -> None:
        async with flood.serving() as url:
            async with wsbind.connect(url, max_queue=4, compression=None) as ws:
                await eventually(lambda: ws._paused is not None, "reading to pause")
                assert flood.sent < total
                # Room for everything: reading resumes, and does not pause at the old limit.
                ws.max_queue = 1000
                await eventually(lambda: flood.sent == total, "the peer to send everything")
                for i in range(total):
                    assert await ws.recv() == numbered(i, size)

    run(main())


def test_send_waits_while_the_peer_does_not_read() -> None:
    total, size = 400, 64 << 10
    release = asyncio.Event()
    received: list[bytes] = []

    async def lazy(ws: ServerConnection) -> None:
        # Not reading: websockets stops reading the socket after max_queue messages.
        await release.wait()
        async for message in ws:
            assert isinstance(message, bytes)
            received.append(message)

    async def main() -> None:
        # A small receive buffer (accepted sockets inherit it), so that the kernel does not
        # take the whole test's worth of messages off our hands.
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        async with websockets_serve(lazy, sock=listener, max_size=None) as server:
            async with wsbind.connect(f"ws://127.0.0.1:{port_of(server)}") as ws:
                done = [0]

                async def sender() -> None:
                    for i in range(total):
                        await ws.send(numbered(i, size))
                        done[0] += 1

                sending = asyncio.create_task(sender())
                try:
                    await eventually(
                        lambda: ws.bytes_to_write > ws.write_limit, "the queue to pass write_limit"
                    )
                    # Over the limit, send() waits: one message at most beyond it.
                    assert not sending.done()
                    assert done[0] < total
                    assert ws.bytes_to_write <= ws.write_limit + size
                finally:
                    release.set()
                await sending
                await eventually(lambda: len(received) == total, "the peer to read everything")
        assert received == [numbered(i, size) for i in range(total)]

    run(main())


def test_a_send_waiting_for_the_peer_raises_when_the_connection_is_lost() -> None:
    """The backpressure wait (a Rust future awaited through pyo3-async-runtimes) ends with
    the connection, and send() raises ConnectionClosedError rather than waiting on."""
    drop_it = threading.Event()

    def stuck(conn: socket.socket) -> None:
        drop_it.wait(TIMEOUT)  # reads nothing meanwhile
        # Closing with unread data sends a reset.
        conn.close()

    async def main() -> None:
        with raw_websocket_server(stuck) as url:
            ws = await wsbind.connect(url, ping_interval=None)

            async def sender() -> None:
                while True:
                    await ws.send(bytes(64 << 10))

            sending = asyncio.create_task(sender())
            await eventually(lambda: ws.bytes_to_write > ws.write_limit, "the queue to pass write_limit")
            assert not sending.done()
            drop_it.set()
            with pytest.raises(wsbind.ConnectionClosedError):
                await sending
            assert ws.status in (Status.CLOSED, Status.ERROR)

    run(main())


# -- reconnecting


def fast() -> Any:
    return wsbind.backoff(initial_delay=0.01, min_delay=0.01, max_delay=0.05)


def test_async_for_reconnects_after_the_server_restarts_on_the_same_port() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    servers: list[Any] = []

    async def greet(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    async def start() -> None:
        servers.append(await websockets_serve(greet, "127.0.0.1", port))

    class Restarter(logging.Handler):
        """Starts the server again once the iterator has logged two failed attempts."""

        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.failures: list[str] = []
            self.restart: asyncio.Task[None] | None = None

        def emit(self, record: logging.LogRecord) -> None:
            if "trying again" in record.getMessage():
                self.failures.append(record.getMessage())
                if len(self.failures) == 2:
                    self.restart = asyncio.get_running_loop().create_task(start())

    async def main() -> None:
        await start()
        greetings = 0
        async for ws in wsbind.connect(url, reconnect_delays=fast):
            # Ends quietly when the server goes away with 1001.
            async for message in ws:
                assert message == "hello"
                greetings += 1
                if greetings == 1:
                    servers[0].close()
                else:
                    break
            if greetings == 2:
                break
        servers[-1].close()
        await servers[-1].wait_closed()
        assert greetings == 2

    restarter = Restarter()
    log = logging.getLogger("wsbind")
    level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(restarter)
    try:
        run(main())
    finally:
        log.removeHandler(restarter)
        log.setLevel(level)
    assert len(servers) == 2
    assert len(restarter.failures) >= 2
    assert all("Connection refused" in failure for failure in restarter.failures)


def test_async_for_retries_503_and_not_403() -> None:
    answers = [HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.SERVICE_UNAVAILABLE]
    attempts = [0]

    def busy(connection: ServerConnection, request: Any) -> Any:
        attempts[0] += 1
        return connection.respond(answers.pop(0), "later\n") if answers else None

    def forbid(connection: ServerConnection, request: Any) -> Any:
        attempts[0] += 1
        return connection.respond(HTTPStatus.FORBIDDEN, "no\n")

    async def main() -> None:
        async with websockets_serve(echo, "127.0.0.1", 0, process_request=busy) as server:
            async for ws in wsbind.connect(f"ws://127.0.0.1:{port_of(server)}", reconnect_delays=fast):
                await ws.send("in")
                assert await ws.recv() == "in"
                break
        assert attempts[0] == 3
        attempts[0] = 0
        async with websockets_serve(echo, "127.0.0.1", 0, process_request=forbid) as server:
            with pytest.raises(wsbind.InvalidStatus) as raised:
                async for _ in wsbind.connect(f"ws://127.0.0.1:{port_of(server)}", reconnect_delays=fast):
                    pytest.fail("a refused handshake yields no socket")
            assert raised.value.status_code == 403
        assert attempts[0] == 1

    run(main())


def test_backoff_follows_websockets_schedule() -> None:
    delays = wsbind.backoff()
    first = next(delays)
    assert 0 <= first <= 5
    rest = [next(delays) for _ in range(12)]
    assert rest[0] == 3.1
    assert rest[1] == pytest.approx(3.1 * 1.618)
    assert rest[-1] == 90
    assert all(b >= a for a, b in itertools.pairwise(rest))


# -- typing


def test_mypy_strict_sees_recv_as_str_or_bytes(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(
        "import asyncio\n"
        "import wsbind\n"
        "\n"
        "async def handler(ws: wsbind.WebSocket) -> None:\n"
        "    async for message in ws:\n"
        "        reveal_type(message)\n"
        "\n"
        "async def main() -> None:\n"
        '    async with wsbind.connect("ws://127.0.0.1:1") as ws:\n'
        "        reveal_type(await ws.recv())\n"
        "        reveal_type(await ws.ping())\n"
        '    other = await wsbind.connect("ws://127.0.0.1:1")\n'
        "    reveal_type(other)\n"
        '    async with wsbind.serve(handler, "127.0.0.1", 0) as server:\n'
        "        reveal_type(server)\n"
        "    number: int = await other.recv()\n"
        # close() runs as a task, and QML-style code need not await it.
        "    other.close()\n"
        "    await asyncio.create_task(other.close())\n"
        "    server.close()\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    # mypy writes "builtins.str | builtins.bytes" or "str | bytes", by version.
    revealed = [
        line.split("Revealed type is ")[1].replace("builtins.", "")
        for line in result.stdout.splitlines()
        if "Revealed" in line
    ]
    str_or_bytes = ('"Union[str, bytes]"', '"str | bytes"')
    assert revealed[0] in str_or_bytes, result.stdout
    assert revealed[1] in str_or_bytes, result.stdout
    assert revealed[2] == '"float"', result.stdout
    assert revealed[3] == '"wsbind.websocket.WebSocket"', result.stdout
    assert revealed[4] == '"wsbind.server.WebSocketServer"', result.stdout
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "assignment" in errors[0], result.stdout
