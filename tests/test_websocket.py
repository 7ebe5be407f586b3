"""WebSocket as a client, against the independent `websockets` server and raw-socket peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import select
import socket
import struct
import threading
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
import websockets
import websockets.sync.server

import wsbind
from conftest import (
    STREAM_SIZES,
    TIMEOUT,
    PausingWebSocket,
    Recorder,
    drain_events,
    echo,
    numbered,
    open_socket,
    recording_closes,
    server_on,
    wait_until,
    websockets_server,
)
from rawpeer import CLOSE, raw_websocket_server, read_frame, silent_but_closes
from wsbind import NotOpenError, Status, WebSocket, retry


def close_frame_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


# -- messages


@pytest.mark.parametrize("text", ["Hello, world!", "héllo wörld ✓ 日本語 😀", ""])
def test_text_messages_round_trip(sockets: Any, echo_url: str, text: str) -> None:
    """Text, non-ASCII and empty, comes back as the same str."""
    got = Recorder()
    ws = open_socket(sockets, echo_url, on_text_message_received=got)
    assert ws.send_text_message(text) == len(text.encode())
    assert got.wait() == [text]


@pytest.mark.parametrize("data", [b"\x00\x01\xfe\xff", b"", bytearray(b"mutable"), memoryview(b"view")])
def test_binary_messages_round_trip(sockets: Any, echo_url: str, data: Any) -> None:
    """Any bytes-like object goes out; bytes come back."""
    got = Recorder()
    ws = open_socket(sockets, echo_url, on_binary_message_received=got)
    assert ws.send_binary_message(data) == len(bytes(data))
    assert got.wait() == [bytes(data)]
    assert type(got.values[0]) is bytes


def test_16_mib_messages_round_trip(sockets: Any, echo_url: str) -> None:
    """16 MiB binary and text messages arrive whole."""
    binary, text = Recorder(), Recorder()
    ws = open_socket(sockets, echo_url, on_binary_message_received=binary, on_text_message_received=text)
    big = bytes(range(256)) * (16 * 4096)
    ws.send_binary_message(big)
    ws.send_text_message("é" * (8 << 20))
    assert binary.wait() == [big]
    assert text.wait() == ["é" * (8 << 20)]


@pytest.mark.parametrize("size", [8 << 10, (8 << 10) - 1, 3 << 20])
def test_masking_never_writes_into_the_callers_object(sockets: Any, echo_url: str, size: int) -> None:
    """Large bytes and str go out without a copy, and a client's masking never writes into them.

    Sizes around the point where wsbind stops copying, and one cut into
    several 512 KiB frames.
    """
    binary, text = Recorder(), Recorder()
    ws = open_socket(sockets, echo_url, on_binary_message_received=binary, on_text_message_received=text)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    string = "abé" * (size // 4)
    ws.send_binary_message(data)
    ws.send_text_message(string)
    assert binary.wait() == [data]
    assert text.wait() == [string]
    assert data == bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert string == "abé" * (size // 4)


def test_runs_of_same_sized_messages_arrive_whole_and_in_order(sockets: Any, echo_url: str) -> None:
    """Each message of a stream arrives as its own bytes object of its own size, in order."""
    got = Recorder()
    ws = open_socket(sockets, echo_url, on_binary_message_received=got)
    sent = [numbered(i, size) for i, size in enumerate(STREAM_SIZES)]
    for message in sent:
        ws.send_binary_message(message)
    received = got.wait(len(sent))
    assert [len(m) for m in received] == STREAM_SIZES
    assert received == sent
    assert all(type(m) is bytes for m in received)


def test_sending_is_thread_safe_and_keeps_each_threads_order(sockets: Any, echo_url: str) -> None:
    """Four threads send at once; every message arrives, each thread's in order."""
    got = Recorder()
    ws = open_socket(sockets, echo_url, on_text_message_received=got)

    def send(name: str) -> None:
        for i in range(200):
            ws.send_text_message(f"{name}:{i}")

    threads = [threading.Thread(target=send, args=(str(n),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = got.wait(800)
    for n in range(4):
        mine = [int(v.split(":")[1]) for v in values if v.startswith(f"{n}:")]
        assert mine == list(range(200))


# -- status, subprotocols, closing


def test_status_goes_connecting_open_closing_closed(sockets: Any, echo_url: str) -> None:
    """active=True opens, active=False closes with 1000, with a status change for each step."""
    statuses = Recorder()
    ws = sockets(url=echo_url, on_status_changed=statuses)
    assert ws.status is Status.CLOSED
    ws.active = True
    wait_until(lambda: ws.status is Status.OPEN)
    ws.active = False
    wait_until(lambda: ws.status is Status.CLOSED)
    # The status is set before status_changed runs: let that and anything after it come.
    drain_events()
    assert statuses.values == [Status.CONNECTING, Status.OPEN, Status.CLOSING, Status.CLOSED]
    assert ws.close_code == 1000
    assert ws.error_string == ""


def test_active_false_closes_with_1000_and_the_peer_sees_it(sockets: Any) -> None:
    seen: list[Any] = []
    with websockets_server(recording_closes(seen)) as (url, _):
        ws = open_socket(sockets, url)
        ws.active = False
        wait_until(lambda: seen)
    assert seen == [(1000, "")]


def test_setting_active_true_twice_opens_one_connection(sockets: Any) -> None:
    count = []
    with websockets_server(lambda conn: (count.append(1), echo(conn))) as (url, _):
        ws = open_socket(sockets, url)
        ws.active = True
        got = Recorder()
        ws.text_message_received.connect(got)
        ws.send_text_message("x")
        got.wait()
    assert count == [1]


def test_subprotocol_negotiation(sockets: Any) -> None:
    """The server's pick is in negotiated_subprotocol while OPEN, and "" once closed."""
    offered: list[Any] = []

    def handler(conn: Any) -> None:
        offered.append(conn.request.headers["Sec-WebSocket-Protocol"])
        echo(conn)

    with websockets_server(handler, subprotocols=["chat", "superchat"]) as (url, _):
        ws = open_socket(sockets, url, requested_subprotocols=["superchat", "v1"])
        assert ws.negotiated_subprotocol == "superchat"
        wait_until(lambda: offered)
        assert offered == ["superchat, v1"]
        ws.active = False
        wait_until(lambda: ws.status is Status.CLOSED)
        assert ws.negotiated_subprotocol == ""


def test_no_subprotocol_when_none_requested(sockets: Any, echo_url: str) -> None:
    assert open_socket(sockets, echo_url).negotiated_subprotocol == ""


def test_peer_close_code_and_reason(sockets: Any) -> None:
    """A close from the server: CLOSING, then CLOSED with its code and reason."""
    with websockets_server(lambda conn: conn.close(4001, "bye now ✓")) as (url, _):
        statuses = Recorder()
        ws = sockets(url=url, active=True, on_status_changed=statuses)
        wait_until(lambda: ws.status is Status.CLOSED)
    assert (ws.close_code, ws.close_reason) == (4001, "bye now ✓")
    assert statuses.values[-2:] == [Status.CLOSING, Status.CLOSED]
    assert ws.error_string == ""


def test_our_close_code_and_reason_reach_the_peer(sockets: Any) -> None:
    seen: list[Any] = []
    with websockets_server(recording_closes(seen)) as (url, _):
        statuses = Recorder()
        ws = open_socket(sockets, url, on_status_changed=statuses)
        ws.close(4002, "done ✓")
        wait_until(lambda: ws.status is Status.CLOSED)
        wait_until(lambda: seen)
    assert statuses.values == [Status.CONNECTING, Status.OPEN, Status.CLOSING, Status.CLOSED]
    assert seen == [(4002, "done ✓")]
    assert ws.close_code == 4002
    assert ws.active is True  # close() leaves active alone, as Qt


def test_changing_url_while_open_reconnects(sockets: Any) -> None:
    with websockets_server(echo) as (first, _), websockets_server(echo) as (second, _):
        statuses = Recorder()
        ws = open_socket(sockets, first, on_status_changed=statuses)
        ws.url = second
        wait_until(lambda: ws.status is Status.OPEN and len(statuses.calls) >= 5)
        assert (
            statuses.values
            == [
                Status.CONNECTING,
                Status.OPEN,
                Status.CLOSING,
                Status.CLOSED,
                Status.CONNECTING,
                Status.OPEN,
            ][: len(statuses.values)]
        )
        got = Recorder()
        ws.text_message_received.connect(got)
        ws.send_text_message("on the second")
        assert got.wait() == ["on the second"]


def test_changing_url_while_inactive_only_stores_it(sockets: Any, echo_url: str) -> None:
    ws = sockets()
    ws.url = echo_url
    assert ws.status is Status.CLOSED


# -- failures arrive as ERROR with a readable error_string


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_error(ws: WebSocket) -> str:
    wait_until(lambda: ws.status is Status.ERROR, what="status ERROR")
    return ws.error_string


def test_refused_connection(sockets: Any) -> None:
    errors = Recorder()
    ws = sockets(url=f"ws://127.0.0.1:{free_port()}", active=True, on_error_string_changed=errors)
    message = wait_error(ws)
    assert "refused" in message.lower()
    assert errors.values == [message]


def test_dns_failure(sockets: Any) -> None:
    ws = sockets(url="ws://no-such-host.invalid/", active=True)
    message = wait_error(ws)
    assert "no-such-host.invalid" in message
    assert "lookup" in message.lower() or "resolve" in message.lower()


def test_rejected_handshake_gives_the_http_status(sockets: Any) -> None:
    def refuse(conn: Any, request: Any) -> Any:
        return conn.respond(HTTPStatus.FORBIDDEN, "go away\n")

    with websockets_server(echo, process_request=refuse) as (url, _):
        ws = sockets(url=url, active=True)
        assert wait_error(ws) == "handshake rejected: HTTP 403 Forbidden"


def test_protocol_error_closes_with_1002_and_reports_it(sockets: Any) -> None:
    """A frame with reserved bits set: the peer hears 1002, we show ERROR."""
    heard: list[int] = []

    def misbehave(conn: socket.socket) -> None:
        conn.sendall(bytes([0x80 | 0x40 | 0x1, 2]) + b"hi")  # RSV1 without an extension
        _, opcode, payload = read_frame(conn)
        heard.append(close_frame_code(payload) if opcode == CLOSE else -1)

    with raw_websocket_server(misbehave) as url:
        ws = sockets(url=url, active=True)
        assert "protocol error" in wait_error(ws)
        wait_until(lambda: heard)
    assert heard == [1002]
    assert ws.close_code == 1002


def test_connection_dropped_without_close_frame_is_an_error(sockets: Any) -> None:
    with raw_websocket_server(lambda conn: conn.shutdown(socket.SHUT_RDWR)) as url:
        ws = sockets(url=url, active=True)
        assert "connection" in wait_error(ws)
    assert ws.close_code == 1006


def test_leaving_error_clears_error_string(sockets: Any, echo_url: str) -> None:
    ws = sockets(url=f"ws://127.0.0.1:{free_port()}", active=True)
    wait_error(ws)
    seen: list[tuple[Status, str]] = []
    ws.status_changed.connect(lambda s: seen.append((s, ws.error_string)))
    ws.url = echo_url  # still active: opens the new url
    wait_until(lambda: ws.status is Status.OPEN)
    assert seen[0] == (Status.CONNECTING, "")
    assert ws.error_string == ""


# -- misuse raises at once


def test_sending_when_not_open_raises(sockets: Any, echo_url: str) -> None:
    ws = sockets()
    with pytest.raises(NotOpenError, match="CLOSED"):
        ws.send_text_message("lost?")
    with pytest.raises(wsbind.Error):
        ws.send_binary_message(b"lost?")
    ws.url, ws.active = echo_url, True
    wait_until(lambda: ws.status is Status.OPEN)
    ws.active = False
    with pytest.raises(NotOpenError, match="CLOSING"):
        ws.send_text_message("lost?")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda ws: ws.send_text_message(b"bytes"), TypeError),
        (lambda ws: ws.send_binary_message("text"), TypeError),
        (lambda ws: ws.send_binary_message(12), TypeError),
        (lambda ws: ws.close("1000"), TypeError),
        (lambda ws: ws.close(1005), ValueError),
        (lambda ws: ws.close(1000, "x" * 124), ValueError),
    ],
)
def test_wrong_arguments_raise(sockets: Any, echo_url: str, call: Any, error: type) -> None:
    ws = open_socket(sockets, echo_url)
    with pytest.raises(error):
        call(ws)
    assert ws.status is Status.OPEN


@pytest.mark.parametrize("url", ["http://example.com", "example.com", "ws://", "ws:// bad"])
def test_bad_urls_raise_at_once(url: str) -> None:
    with pytest.raises(wsbind.InvalidURL):
        WebSocket(url=url)


def test_a_handler_exception_is_logged_and_changes_nothing(
    sockets: Any, echo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    got = Recorder()

    def broken(message: str) -> None:
        raise RuntimeError(f"handler failed on {message}")

    ws = open_socket(sockets, echo_url)
    ws.text_message_received.connect(broken)
    ws.text_message_received.connect(got)
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        ws.send_text_message("one")
        ws.send_text_message("two")
        assert got.wait(2) == ["one", "two"]
    assert ws.status is Status.OPEN
    failures = [r for r in caplog.records if r.exc_info and "handler failed on" in str(r.exc_info[1])]
    assert len(failures) == 2
    assert "text_message_received" in failures[0].getMessage()


# -- calls from other threads while the connection ends


@pytest.mark.parametrize(
    "call",
    [
        lambda ws: ws.send_text_message("late"),
        lambda ws: ws.send_binary_message(b"late"),
        lambda ws: ws.ping(),
        lambda ws: ws.flush(0),
        lambda ws: ws.bytes_to_write,
        lambda ws: ws.close(),
        lambda ws: ws.abort(),
        lambda ws: setattr(ws, "ping_interval", 5.0),
        lambda ws: ws.bytes_written.connect(print),
    ],
    ids=["send_text", "send_binary", "ping", "flush", "bytes_to_write", "close", "abort", "option", "watch"],
)
def test_a_call_racing_the_end_of_the_connection_raises_only_not_open(call: Any) -> None:
    """Another thread calls into the socket just as the peer's close ends the connection (the event
    thread clears the socket's connection between the caller's check and its use): the caller gets
    NotOpenError or success, never an AttributeError from a connection that went away under it."""

    def close_on_request(conn: Any) -> None:
        conn.recv()
        conn.close(4000, "bye")

    with websockets_server(close_on_request) as (url, _):
        ws = PausingWebSocket(url=url, active=True)
        wait_until(lambda: ws.status is Status.OPEN, what="the socket to open")
        raised: list[BaseException] = []
        go = threading.Event()

        def racer() -> None:
            go.wait()
            try:
                call(ws)
            except NotOpenError:
                pass
            except BaseException as e:
                raised.append(e)

        thread = threading.Thread(target=racer)
        thread.start()
        ws.pause_in = thread.ident
        go.set()
        ws.send_text_message("close, please")
        thread.join(15)
        assert not thread.is_alive()
        wait_until(lambda: ws.status is Status.CLOSED, what="the socket to close")
    assert raised == []


# -- reading paused (what a full recv() queue asks of the native side)


def select_writable(conn: socket.socket) -> None:
    """Blocks until `conn` takes more."""
    select.select([], [conn], [], TIMEOUT)


def test_a_paused_socket_pushes_back_on_its_peer_and_loses_nothing(sockets: Any) -> None:
    """While reading is paused, messages stop coming and the peer's writes stall (TCP pushes
    back, so our memory stays bounded); once it resumes, every message arrives, in order."""
    size, most = 64 << 10, 256  # 16 MiB: far more than both ends' socket buffers hold
    sent: list[int] = []
    stalled = threading.Event()

    def flood(conn: socket.socket) -> None:
        conn.setblocking(False)
        data = bytearray()
        for i in range(most):
            data += bytes([0x82, 127]) + struct.pack("!Q", size) + bytes([i % 256]) * size
        view = memoryview(data)
        while view:
            try:
                view = view[conn.send(view) :]
            except BlockingIOError:
                stalled.set()
                select_writable(conn)
            sent.append(len(data) - len(view))
        conn.setblocking(True)
        silent_but_closes(conn)

    got = Recorder()
    with raw_websocket_server(flood) as url:
        # Listening from the start: a message may arrive before the pause.
        ws = open_socket(sockets, url, on_binary_message_received=got)
        ws._conn.pause_reading(True)
        before = len(got.calls)
        wait_until(stalled.is_set, what="the peer's writes to stall")
        drain_events()
        # What was read as the pause took hold: one burst of reads at most (READ_BURST in
        # src/config.rs, 4 MiB: 64 of these messages), and a message begun before it.
        assert len(got.values) <= before + (4 << 20) // size + 2, (before, len(got.values))
        assert sent[-1] < most * (size + 10), "the peer got everything out while we were paused"
        ws._conn.pause_reading(False)
        got.wait(count=most)
        assert [message[0] for message in got.values] == [i % 256 for i in range(most)]
        assert all(len(message) == size for message in got.values)
        ws.close()
        wait_until(lambda: ws.status is Status.CLOSED, what="the close")


# -- awaiting its signals


def test_wait_blocking_in_a_handler_on_the_objects_own_thread_raises(
    sockets: Any, echo_url: str, recorder: Any
) -> None:
    """It would wait for ever for an emission only that thread can make: it says so instead."""
    errors = recorder()

    def on_open(status: Status) -> None:
        if status is Status.OPEN:
            try:
                ws.text_message_received.wait_blocking(timeout=15)
            except RuntimeError as e:
                errors(str(e))

    ws = sockets(url=echo_url, active=True, on_status_changed=on_open)
    assert "wait for ever" in errors.wait()[0]


def test_awaiting_a_sockets_signals_on_another_threads_loop(sockets: Any, echo_url: str) -> None:
    """A socket run by wsbind's event thread, awaited from a loop in the test's thread."""
    ws = sockets(url=echo_url)

    async def main() -> tuple[list[Any], list[Any]]:
        # Made first: the status may change on either thread the moment active is set.
        changes = ws.status_changed.emissions()
        ws.active = True
        statuses = [await asyncio.wait_for(anext(changes), 15)]
        while statuses[-1] is Status.CONNECTING:
            statuses.append(await asyncio.wait_for(anext(changes), 15))
        changes.close()
        messages = []
        stream = ws.text_message_received.emissions()
        for text in ("one", "two", "three"):
            ws.send_text_message(text)
        async for message in stream:
            messages.append(message)
            if len(messages) == 3:
                break
        return statuses, messages

    statuses, messages = asyncio.run(main())
    assert statuses == [Status.CONNECTING, Status.OPEN]
    assert messages == ["one", "two", "three"]


def test_awaiting_a_sockets_signals_on_its_own_loop(echo_url: str) -> None:
    """A socket made on the loop emits there: the waiter is woken without a hand-off."""

    async def main() -> tuple[Any, Any, Any]:
        ws = WebSocket(url=echo_url)
        opened = ws.connected.wait(timeout=15)
        ws.active = True
        await opened
        echoed = ws.text_message_received.wait(timeout=15)
        ws.send_text_message("hi")
        message = await echoed
        closed = ws.status_changed.emissions()
        ws.close()
        statuses = [await anext(closed), await anext(closed)]
        return message, statuses, ws.close_code

    message, statuses, code = asyncio.run(main())
    assert message == "hi"
    assert statuses == [Status.CLOSING, Status.CLOSED]
    assert code == 1000


# -- auto_reconnect


def test_auto_reconnect_survives_a_server_restart(sockets: Any, quick_backoff: None) -> None:
    """Stopped (1001), the server is retried while it is down (ERROR) and found again once it is back."""
    port = free_port()
    greetings: list[str | bytes] = []

    def greeted(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            greetings.append(ws.recv())
            for _ in ws:
                pass

    statuses, codes = Recorder(), Recorder()
    with server_on(port, greeted):
        bot = sockets(
            url=f"ws://127.0.0.1:{port}",
            active=True,
            auto_reconnect=True,
            on_status_changed=statuses,
            on_close_code_changed=codes,
            on_connected=lambda: bot.send_text_message("hello"),
        )
        wait_until(lambda: len(greetings) == 1, what="the first greeting")
    wait_until(lambda: Status.ERROR in statuses.values, what="an attempt while the server is down")
    assert codes.values[0] == 1001
    with server_on(port, greeted):
        wait_until(lambda: len(greetings) == 2, what="the greeting after the restart")
        assert bot.status is Status.OPEN
        assert bot.active
    names = " ".join(status.name for status in statuses.values)
    assert re.fullmatch(r"CONNECTING OPEN (CLOSING )?CLOSED (CONNECTING ERROR )+CONNECTING OPEN.*", names), (
        names
    )


def test_auto_reconnect_after_the_peers_normal_close(sockets: Any, quick_backoff: None) -> None:
    """A close the program did not ask for, even 1000, brings the socket back."""
    connections = []

    def close_at_once(ws: Any) -> None:
        connections.append(ws)
        ws.close(1000, "come back later")

    with websockets_server(close_at_once) as (url, _):
        sockets(url=url, active=True, auto_reconnect=True)
        wait_until(lambda: len(connections) >= 3, what="two reconnections")


@pytest.mark.parametrize(
    "end",
    [
        lambda ws: ws.close(),
        lambda ws: ws.close(4000, "bye"),
        lambda ws: setattr(ws, "active", False),
        lambda ws: ws.abort(),
    ],
    ids=["close", "close-4000", "inactive", "abort"],
)
def test_a_close_the_program_asked_for_does_not_reconnect(
    sockets: Any, echo_url: str, monkeypatch: pytest.MonkeyPatch, end: Any
) -> None:
    schedules: list[int] = []
    real = retry.backoff
    monkeypatch.setattr(retry, "backoff", lambda: schedules.append(1) or real(0, 0, 0, 1))
    bot = open_socket(sockets, echo_url, auto_reconnect=True)
    end(bot)
    wait_until(lambda: bot.status in (Status.CLOSED, Status.ERROR), what="the end")
    drain_events()
    assert schedules == []
    assert bot.status in (Status.CLOSED, Status.ERROR)


def test_close_while_a_reconnection_waits_calls_it_off(sockets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens; the socket waits to try again, and close() ends that for good."""
    waiting = threading.Event()
    real = retry.backoff

    def long_wait() -> Iterator[float]:
        waiting.set()
        yield 3600.0
        yield from real()

    monkeypatch.setattr(retry, "backoff", long_wait)
    statuses = Recorder()
    bot = sockets(
        url=f"ws://127.0.0.1:{free_port()}", active=True, auto_reconnect=True, on_status_changed=statuses
    )
    wait_until(waiting.is_set, what="the wait before the second attempt")
    bot.close()
    drain_events()
    assert bot._retry is None
    assert statuses.values == [Status.CONNECTING, Status.ERROR]


def test_auto_reconnect_on_an_asyncio_loop(quick_backoff: None) -> None:
    """On a socket made on a loop the delay is that loop's timer; the signals tell each step."""
    connections = []

    def close_at_once(ws: Any) -> None:
        connections.append(ws)
        ws.close()

    async def main(url: str) -> list[Status]:
        ws = WebSocket(url=url, active=True, auto_reconnect=True)
        statuses = ws.status_changed.emissions()
        seen: list[Status] = []
        while seen.count(Status.OPEN) < 2:
            seen.append(await asyncio.wait_for(anext(statuses), 15))
        ws.active = False
        while ws.status not in (Status.CLOSED, Status.ERROR):
            await ws.status_changed.wait(timeout=15)
        return seen

    with websockets_server(close_at_once) as (url, _):
        seen = asyncio.run(main(url))
    assert seen[:2] == [Status.OPEN, Status.CLOSING] or seen[:2] == [Status.OPEN, Status.CLOSED]
    assert seen[-2:] == [Status.CONNECTING, Status.OPEN]
    assert len(connections) >= 2


def test_auto_reconnect_must_be_bool() -> None:
    with pytest.raises(TypeError):
        WebSocket(auto_reconnect=1)
