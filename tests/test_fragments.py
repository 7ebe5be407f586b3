"""send() of an iterable or async iterable, asyncio and blocking: one fragmented message on
the wire (RFC 6455 §5.4), with and without permessage-deflate, against the websockets
library and a raw socket peer."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets.exceptions
from test_asyncio import eventually, port_of, run
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Frame, Opcode

import wsbind
import wsbind.sync
from conftest import TIMEOUT, wait_until, websockets_server
from rawpeer import BINARY, CLOSE, CONTINUATION, TEXT, handshaking, read_raw_frame, tcp_server


class Frames(logging.Handler):
    """The frames a websockets server logs as it receives them ("< TEXT 'a' [1 byte, continued]")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.received: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.split(" ")[:2] in (["<", "TEXT"], ["<", "BINARY"], ["<", "CONT"]):
            self.received.append(message[2:])


def frame_logger() -> tuple[logging.Logger, Frames]:
    frames = Frames()
    logger = logging.getLogger(f"wsbind.test.frames.{id(frames)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(frames)
    return logger, frames


async def collect(ws: ServerConnection, into: list[Any]) -> None:
    """A websockets handler that keeps every message and the close code it received."""
    try:
        async for message in ws:
            into.append(message)
    except ConnectionClosedError:
        # websockets answers a close frame that cuts a fragmented message short
        # with 1002 ("incomplete fragmented message"), its own client's 1011 too.
        pass
    into.append(("closed", ws.close_code))


async def handler_ended(received: list[Any]) -> None:
    await eventually(lambda: received and isinstance(received[-1], tuple), "the server's handler to end")


@pytest.mark.parametrize("compression", ["deflate", None])
def test_fragments_reach_a_websockets_server_as_one_fragmented_message(compression: str | None) -> None:
    received: list[Any] = []
    logger, frames = frame_logger()

    async def main() -> None:
        async with websockets_serve(
            lambda ws: collect(ws, received), "127.0.0.1", 0, logger=logger
        ) as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            async with wsbind.connect(url, compression=compression) as ws:
                assert bool(ws.negotiated_extensions) is (compression is not None)
                await ws.send(["frag", "ments", "é"])

                async def parts() -> AsyncIterator[bytes]:
                    yield b"as"
                    yield bytearray(b"y")
                    yield memoryview(b"nc")

                await ws.send(parts())
                await ws.send([])  # nothing at all
                await ws.send("whole")
            await handler_ended(received)

    run(main())
    assert received == ["fragmentsé", b"async", "whole", ("closed", 1000)]
    data = frames.received
    # websockets logs each frame as it came, decompressed: one frame per fragment,
    # FIN ("continued" missing) only on the empty frame that ends the message.
    text, binary, more = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
    expected = [
        (text, b"frag", False),
        (more, b"ments", False),
        (more, "é".encode(), False),
        (more, b"", True),
        (binary, b"as", False),
        (more, b"y", False),
        (more, b"nc", False),
        (more, b"", True),
        (text, b"whole", True),
    ]
    assert data == [str(Frame(opcode, payload, fin=fin)) for opcode, payload, fin in expected]


def test_on_the_wire_a_compressed_fragmented_message_is_one_deflate_stream_with_rsv1_first() -> None:
    """A raw peer that accepts permessage-deflate reads the frames as they are sent."""
    frames: list[tuple[int, bytes]] = []

    def behave(conn: socket.socket) -> None:
        while True:
            first, payload = read_raw_frame(conn)
            frames.append((first, payload))
            if first & 0x0F == CLOSE:
                conn.sendall(bytes([0x88, 2]) + payload[:2])
                return

    async def main() -> None:
        with tcp_server(handshaking(behave, b"permessage-deflate")) as url:
            async with wsbind.connect(url) as ws:
                assert ws.negotiated_extensions == "permessage-deflate"
                fragment = "all work and no play makes jack a dull boy. " * 20
                await ws.send([fragment] * 3)
                await ws.send([b"\x00" * 1000, b"\x01" * 1000])

    run(main())
    fin, rsv1 = 0x80, 0x40
    heads = [first for first, _ in frames]
    assert heads == [
        rsv1 | TEXT,
        CONTINUATION,
        CONTINUATION,
        fin | CONTINUATION,
        rsv1 | BINARY,
        CONTINUATION,
        fin | CONTINUATION,
        fin | CLOSE,
    ]
    # The message's frames together are one DEFLATE stream, its tail left off;
    # the context carries over from one message to the next (no context takeover
    # was not agreed), so one decompressor reads both.
    inflate = zlib.decompressobj(-15)
    text = inflate.decompress(b"".join(p for _, p in frames[:4]) + b"\x00\x00\xff\xff")
    assert text.decode() == ("all work and no play makes jack a dull boy. " * 20) * 3
    data = inflate.decompress(b"".join(p for _, p in frames[4:7]) + b"\x00\x00\xff\xff")
    assert data == b"\x00" * 1000 + b"\x01" * 1000
    assert sum(len(p) for _, p in frames[:4]) < 300, "compressed"


def test_messages_sent_during_a_fragmented_one_follow_it_but_pings_do_not_wait() -> None:
    received: list[Any] = []

    async def main() -> None:
        async with websockets_serve(lambda ws: collect(ws, received), "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            async with wsbind.connect(url) as ws:
                go_on = asyncio.Event()
                started = asyncio.Event()

                async def parts() -> AsyncIterator[str]:
                    yield "first "
                    started.set()
                    await go_on.wait()
                    yield "last"

                sending = asyncio.create_task(ws.send(parts()))
                await started.wait()
                # Another coroutine's send() waits for the message's end...
                other = asyncio.create_task(ws.send("other coroutine"))
                # ...and a message sent the QML way from another thread waits inside
                # wsbind, counted, while the ping and its pong go between the frames.
                thread = threading.Thread(target=ws.send_text_message, args=("other thread",))
                thread.start()
                thread.join(TIMEOUT)
                assert ws.bytes_to_write > 0
                assert await ws.ping() >= 0
                # Through a whole round trip, the other coroutine's send() still waits.
                assert not other.done()
                assert received == [], "nothing received before the message's end"
                go_on.set()
                await sending
                await other
            await handler_ended(received)

    run(main())
    assert received == ["first last", "other thread", "other coroutine", ("closed", 1000)]


@pytest.mark.parametrize("compression", ["deflate", None])
def test_an_iterator_that_raises_midway_fails_the_connection_with_1011(compression: str | None) -> None:
    received: list[Any] = []

    class Broken(Exception):
        pass

    def parts() -> Iterator[bytes]:
        yield b"half"
        raise Broken("no more")

    async def main() -> None:
        async with websockets_serve(lambda ws: collect(ws, received), "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            ws = await wsbind.connect(url, compression=compression)
            with pytest.raises(Broken):
                await ws.send(parts())
            await handler_ended(received)
            await ws.close()
            with pytest.raises(wsbind.ConnectionClosed):
                await ws.send("after")

    run(main())
    assert received == [("closed", 1011)], "the half message is never delivered"


def test_a_fragment_of_the_other_kind_raises_type_error_and_fails_the_connection() -> None:
    received: list[Any] = []

    async def main() -> None:
        async with websockets_serve(lambda ws: collect(ws, received), "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            ws = await wsbind.connect(url)
            # An iterator that fails before its first fragment sends nothing and fails nothing.
            with pytest.raises(ZeroDivisionError):
                await ws.send(1 // 0 for _ in range(1))
            with pytest.raises(TypeError, match="mapping"):
                await ws.send({"a": 1})  # type: ignore[arg-type]
            await ws.send(["still", " open"])
            with pytest.raises(TypeError, match="all str or all bytes-like"):
                await ws.send(["a", b"b"])
            await handler_ended(received)
            await ws.close()

    run(main())
    assert received == ["still open", ("closed", 1011)]


def test_backpressure_applies_between_fragments() -> None:
    queued_at_each_fragment: list[int] = []
    received: list[Any] = []

    async def main() -> None:
        collecting = websockets_serve(lambda ws: collect(ws, received), "127.0.0.1", 0, max_size=None)
        async with collecting as server:
            url = f"ws://127.0.0.1:{port_of(server)}"
            async with wsbind.connect(url, compression=None) as ws:

                async def parts() -> AsyncIterator[bytes]:
                    for index in range(16):
                        queued_at_each_fragment.append(ws.bytes_to_write)
                        yield bytes([index]) * (1 << 20)

                await ws.send(parts())
                limit = ws.write_limit
            await handler_ended(received)
            assert max(queued_at_each_fragment) <= limit

    run(main())
    assert received[0] == b"".join(bytes([i]) * (1 << 20) for i in range(16))


@pytest.mark.parametrize("compression", ["deflate", None])
def test_a_serve_handler_sends_fragments_to_a_websockets_client(compression: str | None) -> None:
    """The server's side: unmasked frames, and the server's compressor."""
    logger, frames = frame_logger()

    async def handler(ws: wsbind.WebSocket) -> None:
        async for request in ws:
            assert isinstance(request, str)
            await ws.send(word + " " for word in request.split())

    async def main() -> None:
        async with wsbind.serve(handler, "127.0.0.1", 0, compression=compression) as server:
            client_compression = "deflate" if compression else None
            async with websockets_connect(
                server.url, logger=logger, compression=client_compression
            ) as client:
                assert client.response is not None
                negotiated = client.response.headers.get("Sec-WebSocket-Extensions")
                assert bool(negotiated) is (compression is not None)
                for _ in range(2):
                    await client.send("streamed a word at a time")
                    assert await client.recv() == "streamed a word at a time "

    run(main())
    words = ["streamed ", "a ", "word ", "at ", "a ", "time "]
    message = [Frame(Opcode.TEXT, words[0].encode(), fin=False)]
    message += [Frame(Opcode.CONT, word.encode(), fin=False) for word in words[1:]]
    message += [Frame(Opcode.CONT, b"", fin=True)]
    assert frames.received == [str(frame) for frame in message] * 2


def test_a_send_cancelled_midway_fails_the_connection_with_1011() -> None:
    """The message cannot be finished, nor may another follow its first frames."""
    received: list[Any] = []

    async def main() -> None:
        async with websockets_serve(lambda ws: collect(ws, received), "127.0.0.1", 0) as server:
            ws = await wsbind.connect(f"ws://127.0.0.1:{port_of(server)}")
            started = asyncio.Event()

            async def parts() -> AsyncIterator[str]:
                yield "never "
                started.set()
                await asyncio.Event().wait()
                yield "finished"

            sending = asyncio.create_task(ws.send(parts()))
            await started.wait()
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            await handler_ended(received)
            await ws.close()

    run(main())
    assert received == [("closed", 1011)]


# -- the blocking face: send() of an iterable


def sync_collecting_server(received: list[Any]) -> Any:
    """A websockets server in a thread of its own that keeps what it receives (see collect)."""

    def handler(ws: Any) -> None:
        try:
            for message in ws:
                received.append(message)
        except websockets.exceptions.ConnectionClosedError:
            pass
        received.append(("closed", ws.close_code))

    return websockets_server(handler)


def test_the_blocking_send_sends_an_iterable_as_one_fragmented_message() -> None:
    received: list[Any] = []
    with sync_collecting_server(received) as (url, _):
        with wsbind.sync.connect(url) as ws:
            ws.send(["frag", "ments"])
            ws.send(iter([b"by", bytearray(b"t"), memoryview(b"es")]))
            ws.send([])  # nothing at all
            ws.send("whole")
        eventually_sync(lambda: received and isinstance(received[-1], tuple))
    assert received == ["fragments", b"bytes", "whole", ("closed", 1000)]


def test_the_blocking_send_fails_the_connection_with_1011_when_the_iterable_raises() -> None:
    received: list[Any] = []

    def parts() -> Iterator[bytes]:
        yield b"half"
        raise ZeroDivisionError

    with sync_collecting_server(received) as (url, _):
        ws = wsbind.sync.connect(url)
        with pytest.raises(ZeroDivisionError):
            ws.send(parts())
        eventually_sync(lambda: received and isinstance(received[-1], tuple))
        with pytest.raises(wsbind.ConnectionClosed):
            ws.send("after")
        ws.close()
    assert received == [("closed", 1011)], "the half message is never delivered"


def test_a_blocking_fragmented_send_waits_for_another_thread_s_to_end() -> None:
    received: list[Any] = []
    first_half_out, finish_first = threading.Event(), threading.Event()

    def first() -> Iterator[str]:
        yield "one-"
        first_half_out.set()
        finish_first.wait(TIMEOUT)
        yield "piece"

    with sync_collecting_server(received) as (url, _):
        with wsbind.sync.connect(url) as ws:
            sending = threading.Thread(target=ws.send, args=(first(),))
            sending.start()
            assert first_half_out.wait(TIMEOUT)
            second = threading.Thread(target=ws.send, args=(["two-", "piece"],))
            second.start()
            # The second sender waits on the socket's fragment waiters until the first ends.
            eventually_sync(lambda: bool(ws.socket._fragment_waiters()))
            finish_first.set()
            sending.join(TIMEOUT)
            second.join(TIMEOUT)
        eventually_sync(lambda: received and isinstance(received[-1], tuple))
    assert received == ["one-piece", "two-piece", ("closed", 1000)]


def eventually_sync(condition: Any) -> None:
    wait_until(condition, what="the websockets server to receive everything")
