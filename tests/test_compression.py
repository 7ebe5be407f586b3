"""permessage-deflate (RFC 7692) against independent peers: the `websockets`
library in both roles with every parameter, aiohttp's server, and raw peers
for what a well-behaved library never sends (bombs, RSV1 where it is not
allowed)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import aiohttp.web
import pytest
import websockets.sync.client
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

from conftest import TIMEOUT, Recorder, echo, open_socket, wait_until, websockets_server
from rawpeer import GUID, read_frame, tcp_server
from wsbind import Status, WebSocket

# JSON like a ticker's: compresses well, and better with context takeover.
TICKS = [json.dumps({"symbol": "ACME", "price": 100 + i / 4, "volume": 1000 * i}) * 4 for i in range(20)]


def agreed(header: str) -> dict[str, str | None]:
    """The parameters of a permessage-deflate extension header, by name."""
    name, *params = (part.strip() for part in header.split(";"))
    assert name == "permessage-deflate", header
    return {k.strip(): (v.strip() if v else None) for k, _, v in (p.partition("=") for p in params)}


# -- wsbind's client against websockets' server


SERVER_FACTORIES = {
    "default": ServerPerMessageDeflateFactory(server_max_window_bits=12, client_max_window_bits=12),
    "no context takeover": ServerPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True
    ),
    "windows 9": ServerPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=9),
    "windows 15": ServerPerMessageDeflateFactory(server_max_window_bits=15, client_max_window_bits=15),
}


@pytest.mark.parametrize("factory", SERVER_FACTORIES.values(), ids=SERVER_FACTORIES.keys())
def test_our_client_talks_compressed_to_websockets(sockets: Any, factory: Any) -> None:
    """Text and binary, small and large, come back equal; what was agreed is readable."""
    with websockets_server(echo, extensions=[factory], compression=None) as (url, _):
        texts, binaries = Recorder(), Recorder()
        ws = open_socket(sockets, url, on_text_message_received=texts, on_binary_message_received=binaries)
        params = agreed(ws.negotiated_extensions)
        for message in TICKS:
            ws.send_text_message(message)
        big = (TICKS[0] * 40_000).encode()[: 16 << 20]
        ws.send_binary_message(big)
        ws.send_binary_message(b"")
        assert texts.wait(len(TICKS)) == TICKS
        assert binaries.wait(2) == [big, b""]
    if factory.server_no_context_takeover:
        assert "server_no_context_takeover" in params and "client_no_context_takeover" in params


def test_our_client_offers_compression_and_can_be_told_not_to(sockets: Any) -> None:
    offers: list[str | None] = []

    def record(connection: Any, request: Any) -> None:
        offers.append(request.headers.get("Sec-WebSocket-Extensions"))

    with websockets_server(echo, process_request=record) as (url, _):
        compressed = open_socket(sockets, url)
        plain = open_socket(sockets, url, compression=None)
        assert offers == ["permessage-deflate; client_max_window_bits", None]
        assert compressed.negotiated_extensions.startswith("permessage-deflate")
        assert plain.negotiated_extensions == ""


def test_a_fragmented_compressed_message_from_websockets_arrives_whole(sockets: Any) -> None:
    def send_fragments(ws: Any) -> None:
        ws.recv()
        ws.send(iter(TICKS))  # one message, a compressed frame per fragment

    got = Recorder()
    with websockets_server(send_fragments) as (url, _):
        ws = open_socket(sockets, url, on_text_message_received=got)
        ws.send_text_message("go")
        assert got.wait() == ["".join(TICKS)]


# -- websockets' client against wsbind's server


CLIENT_FACTORIES = {
    "default": ClientPerMessageDeflateFactory(client_max_window_bits=True),
    "no context takeover": ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True
    ),
    "server window 10": ClientPerMessageDeflateFactory(server_max_window_bits=10),
    "client window 9": ClientPerMessageDeflateFactory(client_max_window_bits=9),
    "server window 8": ClientPerMessageDeflateFactory(server_max_window_bits=9),
}


@pytest.mark.parametrize("factory", CLIENT_FACTORIES.values(), ids=CLIENT_FACTORIES.keys())
def test_websockets_talks_compressed_to_our_server(servers: Any, factory: Any) -> None:
    accepted: list[WebSocket] = []

    def on_client(ws: WebSocket) -> None:
        accepted.append(ws)
        ws.text_message_received.connect(ws.send_text_message)
        ws.binary_message_received.connect(ws.send_binary_message)

    server = servers(on_client_connected=on_client)
    with websockets.sync.client.connect(
        server.url, extensions=[factory], compression=None, max_size=None
    ) as client:
        for message in TICKS:
            client.send(message)
            assert client.recv(TIMEOUT) == message
        big = bytes(range(256)) * (1 << 16)  # 16 MiB
        client.send(big)
        assert client.recv(TIMEOUT) == big
        response = client.response.headers["Sec-WebSocket-Extensions"]
        assert accepted[0].negotiated_extensions == response
    if factory.server_no_context_takeover:
        assert "server_no_context_takeover" in agreed(response)


def test_a_server_can_decline_compression(servers: Any) -> None:
    server = servers(compression=None)
    with websockets.sync.client.connect(server.url) as client:
        assert "Sec-WebSocket-Extensions" not in client.response.headers


def test_a_broadcast_reaches_compressed_and_plain_clients(servers: Any) -> None:
    server = servers()
    factories: list[Any] = [
        None,
        ClientPerMessageDeflateFactory(),
        ClientPerMessageDeflateFactory(server_no_context_takeover=True),
        ClientPerMessageDeflateFactory(server_no_context_takeover=True, server_max_window_bits=10),
    ]
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(
                websockets.sync.client.connect(server.url, extensions=[f] if f else None, compression=None)
            )
            for f in factories
        ]
        wait_until(lambda: len(server.clients) == len(clients), what="every client")
        for message in TICKS:
            assert server.broadcast_text_message(message) == len(clients)
        for client in clients:
            assert [client.recv(TIMEOUT) for _ in TICKS] == TICKS


# -- aiohttp's server


def test_our_client_talks_compressed_to_aiohttp(sockets: Any) -> None:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    stop: list[asyncio.Event] = []

    async def handler(request: aiohttp.web.Request) -> aiohttp.web.WebSocketResponse:
        ws = aiohttp.web.WebSocketResponse(compress=True)
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    async def serve() -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/", handler)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(runner.addresses[0][1])
        stop.append(asyncio.Event())
        ready.set()
        await stop[0].wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    try:
        assert ready.wait(TIMEOUT)
        texts, binaries = Recorder(), Recorder()
        ws = open_socket(
            sockets,
            f"ws://127.0.0.1:{port[0]}/",
            on_text_message_received=texts,
            on_binary_message_received=binaries,
        )
        assert ws.negotiated_extensions.startswith("permessage-deflate")
        for message in TICKS:
            ws.send_text_message(message)
        big = (TICKS[1] * 10_000).encode()
        ws.send_binary_message(big)
        assert texts.wait(len(TICKS)) == TICKS
        assert binaries.wait() == [big]
        ws.close()
        wait_until(lambda: ws.status is Status.CLOSED, what="the close")
    finally:
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(TIMEOUT)
        loop.close()


# -- what only a hostile or broken peer sends


def compressed(payload: bytes) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def server_frame(first: int, payload: bytes) -> bytes:
    """A server's frame (unmasked) with the given first byte (FIN, RSV, opcode)."""
    if len(payload) < 126:
        return bytes([first, len(payload)]) + payload
    if len(payload) <= 0xFFFF:
        return bytes([first, 126]) + struct.pack("!H", len(payload)) + payload
    return bytes([first, 127]) + struct.pack("!Q", len(payload)) + payload


def deflating_server(send: Callable[[Any], None]) -> Any:
    """A raw server that accepts permessage-deflate as offered, then runs `send(conn)` and reads
    until the client closes."""

    def serve(conn: Any) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        send(conn)
        while True:
            _, opcode, payload = read_frame(conn)
            if opcode == 0x8:
                conn.sendall(server_frame(0x88, payload[:2]))
                return

    return tcp_server(serve)


def test_a_bomb_fails_with_1009_without_inflating_it(sockets: Any) -> None:
    """64 MiB of zeros compress to 64 KiB; over a 1 MiB limit the connection fails with 1009."""
    bomb = compressed(bytes(64 << 20))
    assert len(bomb) < 128 << 10
    with deflating_server(lambda conn: conn.sendall(server_frame(0xC2, bomb))) as url:
        got = Recorder()
        ws = sockets(
            url=url, active=True, max_allowed_incoming_message_size=1 << 20, on_binary_message_received=got
        )
        wait_until(lambda: ws.status is Status.ERROR, what="the connection to fail")
        assert ws.close_code == 1009
        assert "max_allowed_incoming_message_size" in ws.error_string
        assert got.calls == []


@pytest.mark.parametrize(
    ("frames", "why"),
    [
        # A compressed text frame, not final, then a final continuation with RSV1.
        ([0x41, 0xC0], "RSV1 on a continuation frame"),
        # A ping with RSV1.
        ([0xC9], "RSV1 on a control frame"),
    ],
    ids=["continuation", "control"],
)
def test_rsv1_where_it_is_not_allowed_fails_with_1002(sockets: Any, frames: list[int], why: str) -> None:
    def send(conn: Any) -> None:
        payload = compressed(b"hello")
        for first in frames:
            conn.sendall(server_frame(first, payload))

    with deflating_server(send) as url:
        ws = sockets(url=url, active=True)
        wait_until(lambda: ws.status is Status.ERROR, what="the connection to fail")
        assert ws.close_code == 1002, why


def test_an_extension_the_client_did_not_offer_fails_the_handshake(sockets: Any) -> None:
    with deflating_server(lambda conn: None) as url:
        ws = sockets(url=url, active=True, compression=None)
        wait_until(lambda: ws.status is Status.ERROR, what="the handshake to fail")
        assert "not offered" in ws.error_string
