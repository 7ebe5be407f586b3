"""WebSocket's Qt API beyond QML: ping/pong, keepalive, frame signals, outgoing
frame size, limits, request headers and origin, timeouts, addresses, write
accounting, abort, the connection signals, and a server's sockets.

Peers are the independent `websockets` library and raw sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect

from conftest import (
    TIMEOUT,
    PeerFrames,
    Recorder,
    drain_events,
    echo,
    free_port,
    open_socket,
    recording_closes,
    wait_until,
    websockets_server,
)
from rawpeer import (
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    drain,
    handshaking,
    raw_websocket_server,
    read_frame,
    silent_but_closes,
    tcp_server,
    unmasked_frame,
)
from wsbind import Close, ConnectionClosedOK, Headers, NotOpenError, Status, WebSocket


def on_each_message(reply: Callable[[Any], None]) -> Callable[[Any], None]:
    """A `websockets` handler that runs `reply(conn)` for every message it receives."""

    def handler(conn: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in conn:
                reply(conn)

    return handler


# -- ping and pong


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125))], ids=["empty", "short", "125"])
def test_ping_is_answered_by_pong_with_elapsed_ms_and_payload(
    sockets: Any, echo_url: str, payload: bytes
) -> None:
    """ping(payload) → pong(elapsed_ms, payload) from a websockets server, elapsed_ms a float >= 0."""
    pongs = Recorder()
    ws = open_socket(sockets, echo_url, on_pong=pongs)
    ws.ping(payload)
    pongs.wait()
    ((elapsed_ms, got),) = pongs.calls
    assert got == payload
    assert type(got) is bytes
    assert isinstance(elapsed_ms, float)
    assert elapsed_ms >= 0


def test_ping_takes_any_bytes_like_payload(sockets: Any, echo_url: str) -> None:
    """ping() takes a bytearray or memoryview; pong carries the same bytes back."""
    pongs = Recorder()
    ws = open_socket(sockets, echo_url, on_pong=pongs)
    ws.ping(bytearray(b"one"))
    ws.ping(memoryview(b"two"))
    pongs.wait(2)
    assert [payload for _, payload in pongs.calls] == [b"one", b"two"]


def test_ping_payload_over_125_bytes_raises_value_error(sockets: Any, echo_url: str) -> None:
    """A ping payload may not exceed a control frame's 125 bytes; the socket stays usable."""
    pongs, texts = Recorder(), Recorder()
    ws = open_socket(sockets, echo_url, on_pong=pongs, on_text_message_received=texts)
    with pytest.raises(ValueError, match="125"):
        ws.ping(bytes(126))
    assert ws.status is Status.OPEN
    ws.send_text_message("after")
    assert texts.wait() == ["after"]
    assert pongs.calls == []


def test_ping_on_a_socket_that_never_opened_raises_not_open() -> None:
    """ping() on a CLOSED socket raises NotOpenError."""
    with pytest.raises(NotOpenError):
        WebSocket().ping(b"x")


def test_ping_after_close_sends_nothing_and_awaited_raises_connection_closed(
    sockets: Any, echo_url: str
) -> None:
    """ping() once the connection is over is ignored, as in Qt; awaited, it raises as websockets' does."""
    pongs = Recorder()
    ws = open_socket(sockets, echo_url, on_pong=pongs)
    ws.active = False
    wait_until(lambda: ws.status is Status.CLOSED)
    waiter = ws.ping(b"x")

    async def latency() -> float:
        return await waiter

    with pytest.raises(ConnectionClosedOK) as raised:
        asyncio.run(latency())
    assert raised.value.code == 1000
    assert raised.value.sent == Close(1000, "")
    assert pongs.calls == []


def test_an_unsolicited_pong_is_reported_with_zero_elapsed_ms(sockets: Any) -> None:
    """A pong nobody asked for comes as pong(0, payload), as the pong docstring says."""
    pongs = Recorder()
    with websockets_server(on_each_message(lambda conn: conn.pong(b"heartbeat"))) as (url, _):
        ws = open_socket(sockets, url, on_pong=pongs)
        ws.send_text_message("beat, please")
        pongs.wait()
    assert pongs.calls == [(0, b"heartbeat")]


def test_a_websockets_client_pinging_our_server_socket_gets_its_pong(servers: Any) -> None:
    """The server's socket answers a client's ping with a pong of the same payload."""
    accepted = Recorder()
    server = servers(on_client_connected=accepted)
    with connect(server.url) as client:
        accepted.wait()
        assert client.ping(b"are you there").wait(TIMEOUT)
        assert client.ping().wait(TIMEOUT)


# -- keepalive


def test_keepalive_fails_a_half_open_connection_with_1011(sockets: Any) -> None:
    """A peer that never answers pings is failed after ping_timeout: ERROR, 1011, "keepalive ping timeout"."""
    errors = Recorder()
    with raw_websocket_server(silent_but_closes) as url:
        ws = sockets(url=url, active=True, ping_interval=0.2, ping_timeout=0.5, on_error_occurred=errors)
        wait_until(lambda: ws.status is Status.ERROR, what="the keepalive timeout")
        drain_events()  # error_occurred runs after the status is set; and no second one may come
    assert ws.close_code == 1011
    assert "keepalive ping timeout" in ws.error_string
    assert errors.values == [ws.error_string]


def test_a_silent_peer_stays_open_without_keepalive(sockets: Any) -> None:
    """With ping_interval=None nothing checks the peer, so a silent peer stays OPEN."""
    with raw_websocket_server(silent_but_closes) as url:
        ws = open_socket(sockets, url, ping_interval=None, ping_timeout=0.5)
        # Not synchronisation: the test is that nothing happens, and this is the span over which
        # nothing may, three ping timeouts long. No event marks the end of nothing happening.
        time.sleep(1.5)
        assert ws.status is Status.OPEN
        ws.active = False
        wait_until(lambda: ws.status is Status.CLOSED)
    assert ws.close_code == 1000


def test_keepalive_against_an_answering_peer_stays_open_and_messages_flow(sockets: Any) -> None:
    """A websockets server answers keepalive pings: the socket stays OPEN, and keepalive
    pongs are not reported on pong (only answers to ping() are)."""
    texts, pongs = Recorder(), Recorder()
    pings = PeerFrames("PING")
    with websockets_server(echo, logger=pings.logger) as (url, _):
        ws = open_socket(
            sockets,
            url,
            ping_interval=0.2,
            ping_timeout=0.5,
            on_text_message_received=texts,
            on_pong=pongs,
        )
        # The fifth ping goes out after twice the ping timeout: an unanswered first one would
        # have failed the socket before it.
        wait_until(lambda: pings.count >= 5, what="five keepalive pings to reach the peer")
        assert ws.status is Status.OPEN, ws.error_string
        ws.send_text_message("still flowing")
        assert texts.wait() == ["still flowing"]
    assert pongs.calls == []


def test_keepalive_pongs_with_the_pings_payload_keep_the_connection_open(sockets: Any) -> None:
    """A raw peer that answers every ping with a pong of its payload: pings go out, and the
    socket stays OPEN past several ping timeouts."""
    pings: list[bytes] = []

    def answer(conn: socket.socket) -> None:
        while True:
            _, opcode, payload = read_frame(conn)
            if opcode == PING:
                pings.append(payload)
                conn.sendall(unmasked_frame(PONG, payload))
            elif opcode == CLOSE:
                conn.sendall(unmasked_frame(CLOSE, payload[:2]))
                return

    with raw_websocket_server(answer) as url:
        ws = open_socket(sockets, url, ping_interval=0.2, ping_timeout=0.3)
        # The fifth ping goes out after three ping timeouts: a pong not taken as the answer
        # would have failed the socket before it.
        wait_until(lambda: len(pings) >= 5, what="five keepalive pings")
        assert ws.status is Status.OPEN, ws.error_string
        ws.active = False
        wait_until(lambda: ws.status is Status.CLOSED)
    assert ws.close_code == 1000


def test_keepalive_can_be_turned_on_while_open(sockets: Any) -> None:
    """Setting ping_interval and ping_timeout on an OPEN socket applies to it: a silent peer is failed."""
    with raw_websocket_server(silent_but_closes) as url:
        ws = open_socket(sockets, url, ping_interval=None)
        ws.ping_timeout = 0.5
        ws.ping_interval = 0.2
        wait_until(lambda: ws.status is Status.ERROR, what="the keepalive timeout")
    assert ws.close_code == 1011
    assert "keepalive ping timeout" in ws.error_string


# -- frame signals


def frame_log(**kwargs: Any) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """A log of frame and message signals, in the order they came, and the handlers that fill it."""
    log: list[tuple[Any, ...]] = []
    handlers = {
        f"on_{name}": (lambda *args, name=name: log.append((name, *args)))
        for name in (
            "text_frame_received",
            "binary_frame_received",
            "text_message_received",
            "binary_message_received",
        )
    }
    return log, handlers


@pytest.mark.parametrize(
    ("parts", "text", "frames", "message"),
    [
        (["Hel", "lo ", "wörld"], None, ["Hel", "lo ", "wörld", ""], "Hello wörld"),
        ([b"\x00\x01", b"\xfe", b"\xff"], None, [b"\x00\x01", b"\xfe", b"\xff", b""], b"\x00\x01\xfe\xff"),
        # é (C3 A9) split across two fragments: it comes with the frame that completes it.
        ([b"caf\xc3", b"\xa9!"], True, ["caf", "é!", ""], "café!"),
        # 😀 (F0 9F 98 80) split across three fragments.
        ([b"\xf0\x9f", b"\x98", b"\x80x"], True, ["", "", "😀x", ""], "😀x"),
    ],
    ids=["text", "binary", "split-2-byte-char", "split-4-byte-char"],
)
def test_fragmented_message_is_reported_frame_by_frame_then_whole(
    sockets: Any, parts: list[Any], text: bool | None, frames: list[Any], message: Any
) -> None:
    """Each fragment comes on *_frame_received with is_last_frame False…True, then the message.

    websockets sends each item as a frame and ends with an empty final continuation.
    """
    log, handlers = frame_log()
    with websockets_server(on_each_message(lambda conn: conn.send(parts, text=text))) as (url, _):
        ws = open_socket(sockets, url, **handlers)
        ws.send_text_message("send it")
        wait_until(lambda: any(entry[0].endswith("message_received") for entry in log))
    kind = "text" if isinstance(message, str) else "binary"
    expected: list[tuple[Any, ...]] = [
        (f"{kind}_frame_received", frame, i == len(frames) - 1) for i, frame in enumerate(frames)
    ]
    expected.append((f"{kind}_message_received", message))
    assert log == expected


@pytest.mark.parametrize("message", ["whole ✓", b"\x00whole"], ids=["text", "binary"])
def test_an_unfragmented_message_is_one_last_frame(sockets: Any, echo_url: str, message: Any) -> None:
    """An unfragmented message is reported as one frame with is_last_frame True, then as the message."""
    log, handlers = frame_log()
    ws = open_socket(sockets, echo_url, **handlers)
    if isinstance(message, str):
        ws.send_text_message(message)
    else:
        ws.send_binary_message(message)
    wait_until(lambda: len(log) >= 2)
    kind = "text" if isinstance(message, str) else "binary"
    assert log == [(f"{kind}_frame_received", message, True), (f"{kind}_message_received", message)]


def test_frame_handlers_connected_while_open_get_frames(sockets: Any) -> None:
    """Connecting a frame handler to an OPEN socket turns frame reports on for the next message."""
    frames = Recorder()
    with websockets_server(on_each_message(lambda conn: conn.send(["a", "b"]))) as (url, _):
        texts = Recorder()
        ws = open_socket(sockets, url, on_text_message_received=texts)
        ws.text_frame_received.connect(lambda frame, last: frames(frame, last))
        ws.send_text_message("go")
        assert texts.wait() == ["ab"]
    assert frames.calls == [("a", False), ("b", False), ("", True)]


# -- outgoing_frame_size


@pytest.mark.parametrize(
    "message", ["t" * 2500, b"\x01" * 2500, "é" * 1250], ids=["text", "binary", "chars-split-at-999"]
)
def test_a_message_over_outgoing_frame_size_arrives_whole(sockets: Any, echo_url: str, message: Any) -> None:
    """Cut into frames of outgoing_frame_size (even inside a character), the message arrives whole."""
    got = Recorder()
    size = 999 if isinstance(message, str) and not message.isascii() else 1000
    ws = open_socket(
        sockets,
        echo_url,
        outgoing_frame_size=size,
        on_text_message_received=got,
        on_binary_message_received=got,
    )
    if isinstance(message, str):
        ws.send_text_message(message)
    else:
        ws.send_binary_message(message)
    assert got.wait() == [message]


@pytest.mark.parametrize("when", ["keyword", "while-open"])
def test_outgoing_frame_size_cuts_the_message_into_continuation_frames(sockets: Any, when: str) -> None:
    """2500 bytes with outgoing_frame_size=1000: frames of 1000, 1000, 500; text, continuation,
    continuation; FIN only on the last."""
    seen: list[tuple[bool, int, bytes]] = []

    def read_message(conn: socket.socket) -> None:
        while True:
            fin, opcode, payload = read_frame(conn)
            if opcode < CLOSE:
                seen.append((fin, opcode, payload))
                if fin:
                    break
        drain(conn)

    message = "".join(chr(ord("a") + i % 26) for i in range(2500))
    options = {"outgoing_frame_size": 1000} if when == "keyword" else {}
    with raw_websocket_server(read_message) as url:
        ws = open_socket(sockets, url, close_timeout=0.5, **options)
        if when == "while-open":
            ws.outgoing_frame_size = 1000
        ws.send_text_message(message)
        wait_until(lambda: seen and seen[-1][0], what="the last frame")
        ws.abort()
    assert [(fin, opcode, len(payload)) for fin, opcode, payload in seen] == [
        (False, TEXT, 1000),
        (False, CONTINUATION, 1000),
        (True, CONTINUATION, 500),
    ]
    assert b"".join(payload for _, _, payload in seen) == message.encode()


# -- incoming limits


LIMITS = ["max_allowed_incoming_message_size", "max_allowed_incoming_frame_size"]


@pytest.mark.parametrize("prop", LIMITS)
def test_a_message_over_a_limit_set_by_keyword_fails_with_1009(sockets: Any, prop: str) -> None:
    """A message larger than the limit: ERROR, close_code 1009 (the peer hears it too), and
    error_string names the property."""
    closes: list[Any] = []

    def handler(conn: Any) -> None:
        on_each_message(lambda c: c.send(b"x" * 200))(conn)
        closes.append(conn.close_code)

    texts, binaries = Recorder(), Recorder()
    with websockets_server(handler) as (url, _):
        ws = open_socket(
            sockets, url, on_text_message_received=texts, on_binary_message_received=binaries, **{prop: 100}
        )
        ws.send_text_message("send 200 bytes")
        wait_until(lambda: ws.status is Status.ERROR, what="status ERROR")
        wait_until(lambda: closes, what="the peer to see the close")
    assert ws.close_code == 1009
    assert prop in ws.error_string
    assert closes == [1009]
    assert binaries.calls == [] and texts.calls == []


@pytest.mark.parametrize("prop", LIMITS)
def test_a_limit_changed_while_open_applies_to_later_messages(sockets: Any, echo_url: str, prop: str) -> None:
    """Lowering a limit on an OPEN socket: the next larger message fails the connection with 1009."""
    got = Recorder()
    ws = open_socket(sockets, echo_url, on_binary_message_received=got)
    ws.send_binary_message(b"x" * 200)
    assert got.wait() == [b"x" * 200]
    setattr(ws, prop, 100)
    assert getattr(ws, prop) == 100
    ws.send_binary_message(b"y" * 50)
    ws.send_binary_message(b"z" * 200)
    wait_until(lambda: ws.status is Status.ERROR, what="status ERROR")
    assert ws.close_code == 1009
    assert prop in ws.error_string
    assert got.values == [b"x" * 200, b"y" * 50]


def test_the_message_limit_counts_all_fragments(sockets: Any) -> None:
    """Fragments that each pass the frame limit but together exceed the message limit fail with 1009."""
    with websockets_server(on_each_message(lambda conn: conn.send([b"a" * 60] * 3))) as (url, _):
        ws = open_socket(
            sockets, url, max_allowed_incoming_frame_size=100, max_allowed_incoming_message_size=150
        )
        ws.send_text_message("go")
        wait_until(lambda: ws.status is Status.ERROR, what="status ERROR")
    assert ws.close_code == 1009
    assert "max_allowed_incoming_message_size" in ws.error_string


# -- request headers and origin


def test_request_headers_and_origin_reach_the_server(sockets: Any) -> None:
    """request_headers and origin are sent with the opening request."""
    requests: list[Any] = []

    def handler(conn: Any) -> None:
        requests.append(conn.request)
        echo(conn)

    with websockets_server(handler) as (url, _):
        open_socket(
            sockets,
            url,
            request_headers={"Authorization": "Bearer t", "Cookie": "a=b"},
            origin="https://example.com",
        )
        wait_until(lambda: requests)
    headers = requests[0].headers
    assert headers["Authorization"] == "Bearer t"
    assert headers["Cookie"] == "a=b"
    assert headers["Origin"] == "https://example.com"


def test_no_origin_header_by_default(sockets: Any) -> None:
    """origin "" sends no Origin header."""
    requests: list[Any] = []

    def handler(conn: Any) -> None:
        requests.append(conn.request)
        echo(conn)

    with websockets_server(handler) as (url, _):
        open_socket(sockets, url)
        wait_until(lambda: requests)
    assert "Origin" not in requests[0].headers


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Bad Name": "x"}, ValueError),
        ({"Bad:Name": "x"}, ValueError),
        ({"": "x"}, ValueError),
        ({"Nämé": "x"}, ValueError),
        ({"X-Split": "a\r\nInjected: yes"}, ValueError),
        ({"X-Newline": "a\nb"}, ValueError),
        ({"X-Nul": "a\0b"}, ValueError),
        ({"X-Int": 5}, TypeError),
        ({"X-Bytes": b"v"}, TypeError),
        ([("X", "y")], TypeError),
        ("X: y", TypeError),
    ],
    ids=[
        "space-in-name",
        "colon-in-name",
        "empty-name",
        "non-ascii-name",
        "crlf-in-value",
        "lf-in-value",
        "nul-in-value",
        "int-value",
        "bytes-value",
        "list",
        "str",
    ],
)
def test_invalid_request_headers_raise_at_assignment(headers: Any, error: type) -> None:
    """A header that cannot be sent is refused when assigned, and the old value stays."""
    ws = WebSocket(request_headers={"X-Ok": "1"})
    with pytest.raises(error):
        ws.request_headers = headers
    assert ws.request_headers == {"X-Ok": "1"}
    with pytest.raises(error):
        WebSocket(request_headers=headers)


@pytest.mark.parametrize("value", ["\x01", "a\x7fb", "tab\x0bvt"], ids=["SOH", "DEL", "VT"])
def test_control_characters_in_header_values_raise_at_assignment(value: str) -> None:
    """Control characters other than \\r, \\n and \\0 cannot be sent in an HTTP header either (RFC 7230
    field-vchar); wsbind's own server refuses such a request. They must be refused at assignment."""
    with pytest.raises(ValueError):
        WebSocket(request_headers={"X-Ctl": value})
    with pytest.raises(ValueError):
        WebSocket(origin=value)


@pytest.mark.parametrize(("origin", "error"), [("https://a\r\nX: y", ValueError), (5, TypeError)])
def test_invalid_origin_raises_at_assignment(origin: Any, error: type) -> None:
    """An origin that cannot be sent as a header, or not a str, is refused and the old value stays."""
    ws = WebSocket(origin="https://ok.example")
    with pytest.raises(error):
        ws.origin = origin
    assert ws.origin == "https://ok.example"


# -- timeouts


def test_handshake_timeout_against_a_server_that_never_answers(sockets: Any) -> None:
    """A TCP server that accepts and never answers the opening request: ERROR, "handshake timeout"."""
    errors = Recorder()
    with tcp_server(drain) as url:
        ws = sockets(url=url, active=True, handshake_timeout=0.5, on_error_occurred=errors)
        wait_until(lambda: ws.status is Status.ERROR, what="the handshake timeout")
    assert "handshake timeout" in ws.error_string
    assert ws.close_code == 1006
    assert errors.values == [ws.error_string]


def test_a_negative_handshake_timeout_sets_no_limit(sockets: Any) -> None:
    """As in Qt, a negative handshake_timeout disables it (None too): a server that answers
    only after another socket's short limit has passed still opens the socket."""
    answer = threading.Event()

    def late(conn: socket.socket) -> None:
        answer.wait(TIMEOUT)
        handshaking(drain)(conn)

    with tcp_server(drain) as silent, tcp_server(late) as slow:
        limited = sockets(url=silent, active=True, handshake_timeout=0.2)
        patient = sockets(url=slow, active=True, handshake_timeout=-1)
        assert patient.handshake_timeout is None
        wait_until(lambda: limited.status is Status.ERROR, what="the short limit")
        assert patient.status is Status.CONNECTING
        answer.set()
        wait_until(lambda: patient.status is Status.OPEN, what="the late answer")
        patient.abort()


def test_close_timeout_against_a_peer_that_never_answers_the_close(sockets: Any) -> None:
    """Our close() to a peer that never answers it: dropped after close_timeout, 1006, "close timeout"."""
    with raw_websocket_server(drain) as url:
        ws = open_socket(sockets, url, close_timeout=0.5)
        ws.close(1000, "bye")
        # Made CLOSING on the socket's own thread, so waited for here.
        wait_until(lambda: ws.status is Status.CLOSING, what="status CLOSING")
        wait_until(lambda: ws.status in (Status.CLOSED, Status.ERROR), what="the close timeout")
    assert ws.close_code == 1006
    assert "close timeout" in ws.error_string


# -- addresses


def test_addresses_and_resource_name_while_open(sockets: Any) -> None:
    """peer_*/local_* match what the server sees; peer_name is the URL's host; resource_name is
    the URL's path and query."""
    ends: list[Any] = []

    def handler(conn: Any) -> None:
        ends.append((conn.remote_address, conn.local_address, conn.request.path))
        echo(conn)

    with websockets_server(handler) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        ws = open_socket(sockets, f"ws://localhost:{port}/chat/room?user=ann&x=1")
        wait_until(lambda: ends)
        (remote, local, path) = ends[0]
        assert (ws.peer_address, ws.peer_port) == (local[0], local[1]) == ("127.0.0.1", port)
        assert (ws.local_address, ws.local_port) == (remote[0], remote[1])
        assert ws.peer_name == "localhost"
        assert ws.resource_name == "/chat/room?user=ann&x=1" == path


def test_resource_name_of_a_url_without_path_is_slash(sockets: Any, echo_url: str) -> None:
    """A URL without a path has resource_name "/"."""
    assert open_socket(sockets, echo_url).resource_name == "/"


@pytest.mark.parametrize("path", ["/a b", "/ü/x?q=ä"], ids=["space", "non-ascii"])
def test_resource_name_is_the_request_target_the_server_sees(sockets: Any, path: str) -> None:
    """resource_name is the path and query the opening request asks for (Qt: the fully encoded path
    and query), so the client's resource_name and the server's agree."""
    targets: list[str] = []

    def handler(conn: Any) -> None:
        targets.append(conn.request.path)
        echo(conn)

    with websockets_server(handler) as (url, _):
        ws = open_socket(sockets, url + path)
        wait_until(lambda: targets)
    assert ws.resource_name == targets[0]


# -- bytes_written and bytes_to_write


def test_bytes_written_add_up_to_what_was_sent(sockets: Any, echo_url: str) -> None:
    """bytes_written counts add up to the message bytes sent; bytes_to_write ends at 0."""
    written, to_write = Recorder(), Recorder()
    ws = open_socket(sockets, echo_url, on_bytes_written=written, on_bytes_to_write_changed=to_write)
    sizes = [
        ws.send_text_message("héllo"),
        ws.send_binary_message(b"\x00" * 1000),
        ws.send_binary_message(b"\x01" * 70000),
    ]
    total = sum(sizes)
    wait_until(lambda: sum(written.values) >= total, what="every byte to be written")
    assert sum(written.values) == total
    assert all(count > 0 for count in written.values)
    wait_until(lambda: to_write.values and to_write.values[-1] == 0)
    assert len(to_write.calls) == len(written.calls)
    assert ws.bytes_to_write == 0


def test_bytes_to_write_counts_what_a_slow_peer_has_not_taken(sockets: Any) -> None:
    """While the peer does not read, bytes_to_write holds the queued bytes; once it reads,
    bytes_written adds up to them and bytes_to_write goes to 0."""
    reading = threading.Event()
    peer: list[socket.socket] = []

    def slow(conn: socket.socket) -> None:
        peer.append(conn)
        reading.wait(TIMEOUT)
        drain(conn)

    def unread() -> int:
        """Bytes that reached the peer's socket and wait there to be read."""
        return struct.unpack("i", fcntl.ioctl(peer[0], termios.FIONREAD, b"\0\0\0\0"))[0]

    written, to_write = Recorder(), Recorder()
    size = 32 << 20
    with raw_websocket_server(slow) as url:
        ws = open_socket(
            sockets,
            url,
            close_timeout=0.5,
            on_bytes_written=written,
            on_bytes_to_write_changed=to_write,
        )
        try:
            assert ws.send_binary_message(bytes(size)) == size
            # Writing has begun; the socket buffers take far less than 32 MiB, so the rest waits.
            wait_until(lambda: peer and unread() > 0, what="the first bytes to reach the peer")
            # It counts the frames' headers and the queue's bookkeeping too.
            assert 0 < ws.bytes_to_write <= size + 4096
        finally:
            reading.set()
        wait_until(lambda: sum(written.values) >= size, what="every byte to be written")
        assert sum(written.values) == size
        assert ws.bytes_to_write == 0
        wait_until(lambda: to_write.values and to_write.values[-1] == 0)
        ws.abort()


# -- abort


def test_abort_drops_the_connection_without_a_close_frame(sockets: Any) -> None:
    """abort(): the peer sees no close frame (1006 on its side); our socket ends CLOSED with 1006."""
    seen: list[Any] = []
    statuses = Recorder()
    with websockets_server(recording_closes(seen)) as (url, _):
        ws = open_socket(sockets, url, on_status_changed=statuses)
        ws.abort()
        wait_until(lambda: ws.status is Status.CLOSED, what="status CLOSED")
        wait_until(lambda: seen, what="the peer to see the end")
        drain_events()
    assert seen[0][0] == 1006
    assert ws.close_code == 1006
    assert ws.error_string == ""
    assert statuses.values == [Status.CONNECTING, Status.OPEN, Status.CLOSED]


def test_abort_while_connecting_ends_closed(sockets: Any) -> None:
    """abort() while CONNECTING gives up on the connection: CLOSED, not ERROR."""
    accepted = threading.Event()
    with tcp_server(lambda conn: (accepted.set(), drain(conn))) as url:
        ws = sockets(url=url, active=True)
        assert accepted.wait(TIMEOUT)
        assert ws.status is Status.CONNECTING
        ws.abort()
        wait_until(lambda: ws.status in (Status.CLOSED, Status.ERROR), what="the socket to end")
    assert ws.status is Status.CLOSED


# -- connected, disconnected, about_to_close, error_occurred


def signal_log(ws_kwargs: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Adds handlers to `ws_kwargs` that log status changes and the connection signals, in order."""
    log: list[tuple[Any, ...]] = []
    ws_kwargs["on_status_changed"] = lambda status: log.append(("status", status))
    ws_kwargs["on_connected"] = lambda: log.append(("connected",))
    ws_kwargs["on_disconnected"] = lambda: log.append(("disconnected",))
    ws_kwargs["on_about_to_close"] = lambda: log.append(("about_to_close",))
    ws_kwargs["on_error_occurred"] = lambda message: log.append(("error_occurred", message))
    return log


OPENING = [("status", Status.CONNECTING), ("status", Status.OPEN), ("connected",)]
CLOSING = [("status", Status.CLOSING), ("about_to_close",), ("status", Status.CLOSED), ("disconnected",)]


def test_signals_when_we_close(sockets: Any, echo_url: str) -> None:
    """connected after status OPEN; about_to_close with CLOSING; disconnected once, after CLOSED."""
    kwargs: dict[str, Any] = {}
    log = signal_log(kwargs)
    ws = open_socket(sockets, echo_url, **kwargs)
    ws.active = False
    wait_until(lambda: ("disconnected",) in log)
    drain_events()
    assert log == OPENING + CLOSING


def test_signals_when_the_peer_closes(sockets: Any) -> None:
    """A close from the peer: about_to_close with CLOSING, then CLOSED and disconnected."""
    kwargs: dict[str, Any] = {}
    log = signal_log(kwargs)
    with websockets_server(on_each_message(lambda conn: conn.close(4000, "bye"))) as (url, _):
        ws = open_socket(sockets, url, **kwargs)
        ws.send_text_message("close, please")
        wait_until(lambda: ("disconnected",) in log)
        drain_events()
    assert log == OPENING + CLOSING
    assert ws.close_code == 4000


def test_signals_when_an_open_connection_fails(sockets: Any) -> None:
    """A peer that drops TCP: ERROR with error_occurred(error_string), then disconnected."""
    kwargs: dict[str, Any] = {}
    log = signal_log(kwargs)
    inside: list[str] = []
    hang_up = threading.Event()

    def drop(conn: socket.socket) -> None:
        hang_up.wait(TIMEOUT)

    with raw_websocket_server(drop) as url:
        ws = open_socket(sockets, url, **kwargs)
        ws.error_occurred.connect(lambda message: inside.append(ws.error_string))
        hang_up.set()
        wait_until(lambda: ("disconnected",) in log)
        drain_events()
    assert ws.status is Status.ERROR
    assert log == [
        *OPENING,
        ("status", Status.ERROR),
        ("error_occurred", ws.error_string),
        ("disconnected",),
    ]
    assert inside == [ws.error_string] and ws.error_string


def test_no_connected_or_disconnected_for_a_connection_that_never_opened(sockets: Any) -> None:
    """A refused connection: error_occurred only; neither connected nor disconnected nor about_to_close."""
    port = free_port()
    kwargs: dict[str, Any] = {}
    log = signal_log(kwargs)
    ws = sockets(url=f"ws://127.0.0.1:{port}", active=True, **kwargs)
    wait_until(lambda: any(entry[0] == "error_occurred" for entry in log), what="error_occurred")
    drain_events()
    assert log == [
        ("status", Status.CONNECTING),
        ("status", Status.ERROR),
        ("error_occurred", ws.error_string),
    ]


def test_no_disconnected_for_a_rejected_handshake(sockets: Any) -> None:
    """A server that answers the handshake with 403: error_occurred, no disconnected."""
    kwargs: dict[str, Any] = {}
    log = signal_log(kwargs)

    def refuse(conn: Any, request: Any) -> Any:
        return conn.respond(403, "no\n")

    with websockets_server(echo, process_request=refuse) as (url, _):
        ws = sockets(url=url, active=True, **kwargs)
        wait_until(lambda: any(entry[0] == "error_occurred" for entry in log), what="error_occurred")
        drain_events()
    assert ("disconnected",) not in log
    assert ("connected",) not in log
    assert log[-1] == ("error_occurred", ws.error_string)


@pytest.mark.parametrize("how", ["close", "active-false"])
def test_no_disconnected_when_closed_while_connecting(sockets: Any, how: str) -> None:
    """Giving up while CONNECTING (close() or active=False): the connection never opened, so no
    disconnected ("A connection that was open is over") and no connected."""
    kwargs: dict[str, Any] = {}
    log = signal_log(kwargs)
    accepted = threading.Event()
    with tcp_server(lambda conn: (accepted.set(), drain(conn))) as url:
        ws = sockets(url=url, active=True, **kwargs)
        assert accepted.wait(TIMEOUT)
        assert ws.status is Status.CONNECTING
        if how == "close":
            ws.close()
        else:
            ws.active = False
        wait_until(lambda: ws.status in (Status.CLOSED, Status.ERROR), what="the socket to end")
        drain_events()
    assert ws.status is Status.CLOSED
    assert ("connected",) not in log
    assert ("disconnected",) not in log, log


def test_about_to_close_is_emitted_once_when_both_sides_close(sockets: Any) -> None:
    """We call close() while the peer's close frame is still on its way to our handlers (the event
    thread is busy): one closing handshake, so one about_to_close."""
    busy, peer_closed = threading.Event(), threading.Event()

    def handler(conn: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            conn.recv()
            conn.send("hold on")
            conn.close(4000, "bye")
        peer_closed.set()

    kwargs: dict[str, Any] = {}
    log = signal_log(kwargs)
    with websockets_server(handler) as (url, _):
        ws = open_socket(sockets, url, on_text_message_received=lambda m: busy.wait(TIMEOUT), **kwargs)
        try:
            ws.send_text_message("close, please")
            # websockets' close() returns once our echo of its close frame came back, so our
            # side has taken the peer's close; the event thread is still busy in the handler.
            assert peer_closed.wait(TIMEOUT)
            ws.close()
        finally:
            busy.set()
        wait_until(lambda: ("disconnected",) in log)
        drain_events()
    assert log.count(("about_to_close",)) == 1, log
    assert log[-3:] == [("about_to_close",), ("status", Status.CLOSED), ("disconnected",)]


def test_reconnecting_emits_connected_and_disconnected_for_each_connection(
    sockets: Any, echo_url: str
) -> None:
    """active False then True: a second connected, and a disconnected for each connection that closed."""
    connected, disconnected = Recorder(), Recorder()
    ws = open_socket(sockets, echo_url, on_connected=connected, on_disconnected=disconnected)
    ws.active = False
    wait_until(lambda: ws.status is Status.CLOSED)
    ws.active = True
    wait_until(lambda: ws.status is Status.OPEN)
    connected.wait(2)
    ws.active = False
    wait_until(lambda: ws.status is Status.CLOSED)
    disconnected.wait(2)
    drain_events()
    assert len(connected.calls) == 2
    assert len(disconnected.calls) == 2


# -- a server's socket


def test_a_server_socket_exposes_the_request(servers: Any) -> None:
    """A socket from client_connected: request_headers (as the client sent them), origin,
    resource_name, url, and the addresses of both ends."""
    got = Recorder()
    server = servers(on_client_connected=got)
    path = "/room/7?user=ann&x=1"
    with connect(
        server.url + path, origin="https://example.com", additional_headers={"X-Token": "abc"}
    ) as client:
        (ws,) = got.wait()
        assert ws.request_headers["X-Token"] == "abc"
        assert ws.request_headers["Origin"] == "https://example.com"
        assert ws.request_headers["Upgrade"].lower() == "websocket"
        assert ws.origin == "https://example.com"
        assert ws.resource_name == path
        assert ws.url == server.url + path
        assert (ws.peer_address, ws.peer_port) == client.local_address[:2]
        assert (ws.local_address, ws.local_port) == ("127.0.0.1", server.port)
        assert ws.peer_name == ""


def test_a_server_socket_joins_repeated_request_headers(servers: Any) -> None:
    """A header the client sent twice appears once in request_headers, its values joined by ", "."""
    got = Recorder()
    server = servers(on_client_connected=got)
    with connect(server.url, additional_headers=[("X-Dup", "a"), ("X-Dup", "b")]):
        (ws,) = got.wait()
        assert ws.request_headers["X-Dup"] == "a, b"


def test_a_server_socket_reads_request_headers_whatever_their_case(servers: Any) -> None:
    """Header names are case-insensitive (RFC 9110 §5.1): clients such as Node's send them in
    lower case, and a name sent in two cases is one header."""
    got = Recorder()
    server = servers(on_client_connected=got)
    with connect(server.url, additional_headers=[("x-token", "a"), ("X-TOKEN", "b")]):
        (ws,) = got.wait()
        assert ws.request_headers["X-Token"] == "a, b"
        assert ws.request_headers.get("user-agent", "").startswith("Python/")
        assert [n for n in ws.request_headers if n.lower() == "x-token"] == ["x-token"]
        assert isinstance(ws.request_headers, Headers)


def test_a_server_socket_without_origin_has_empty_origin(servers: Any) -> None:
    """A client that sends no Origin: origin is ""; no path: resource_name is "/"."""
    got = Recorder()
    server = servers(on_client_connected=got)
    with connect(server.url):
        (ws,) = got.wait()
        assert ws.origin == ""
        assert ws.resource_name == "/"


def test_ping_interval_set_on_a_server_socket_takes_effect(servers: Any) -> None:
    """Setting ping_interval on a server's socket is accepted and applies: the client gets pings."""
    got = Recorder()
    server = servers(on_client_connected=got)
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
        raw.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        (ws,) = got.wait()
        ws.ping_interval = 0.2
        assert ws.ping_interval == 0.2
        _, opcode, _ = read_frame(raw)
        assert opcode == PING


def test_bytes_written_and_frames_on_a_server_socket(servers: Any) -> None:
    """Handlers connected to a server's socket in client_connected get bytes_written and frame signals."""
    written, frames = Recorder(), Recorder()

    def on_client(ws: WebSocket) -> None:
        ws.bytes_written.connect(written)
        ws.text_frame_received.connect(lambda frame, last: frames(frame, last))
        ws.text_message_received.connect(ws.send_text_message)

    server = servers(on_client_connected=on_client)
    with connect(server.url) as client:
        client.send(["ab", "cd"])
        assert client.recv(timeout=TIMEOUT) == "abcd"
        wait_until(lambda: sum(written.values) >= 4, what="the echo to be written")
    assert sum(written.values) == 4
    assert frames.calls == [("ab", False), ("cd", False), ("", True)]


def test_frames_that_came_before_client_connected_ran_are_reported(servers: Any) -> None:
    """A client whose frames were read while the server's handlers were busy still has them reported."""
    sent = threading.Event()
    accepted: list[WebSocket] = []
    frames = Recorder()

    def on_client(ws: WebSocket) -> None:
        accepted.append(ws)
        if len(accepted) == 1:
            # Keeps the server's handlers busy until the second client has
            # sent: its bytes are read before its client_connected runs.
            sent.wait(TIMEOUT)
        else:
            ws.text_frame_received.connect(lambda frame, last: frames(frame, last))

    server = servers(on_client_connected=on_client)
    with connect(server.url), connect(server.url) as second:
        second.send(["ab", "cd"])
        sent.set()
        wait_until(lambda: len(frames.calls) == 3, what="the frames to be reported")
    assert frames.calls == [("ab", False), ("cd", False), ("", True)]


def test_flush_waits_until_everything_queued_is_written(sockets: Any) -> None:
    """flush() times out while the peer does not read, and returns True once it has read it all."""
    reading = threading.Event()
    received: list[int] = []

    def slow_reader(conn: socket.socket) -> None:
        reading.wait(TIMEOUT)
        total = 0
        while total < 8 << 20:
            _, _, payload = read_frame(conn)
            total += len(payload)
        received.append(total)
        drain(conn)

    with raw_websocket_server(slow_reader) as url:
        ws = open_socket(sockets, url, ping_interval=None)
        for _ in range(8):
            ws.send_binary_message(bytes(1 << 20))
        assert ws.flush(timeout=0.3) is False
        assert ws.bytes_to_write > 0
        reading.set()
        assert ws.flush() is True
        assert ws.bytes_to_write == 0
        wait_until(lambda: received)
    assert received == [8 << 20]
