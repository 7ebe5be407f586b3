"""wsbind.sync, the blocking face: from plain threads, against the independent `websockets` server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import websockets
import websockets.sync.server

from conftest import TIMEOUT, Recorder, echo, free_port, server_on, wait_until, websockets_server
from rawpeer import raw_websocket_server, read_frame_header, recv_exactly, silent_but_closes
from wsbind import (
    Close,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
    InvalidURL,
    Status,
    WebSocket,
)
from wsbind.sync import SyncWebSocket, connect

README = Path(__file__).resolve().parent.parent / "README.md"
# Started in the background from a shell without job control, this process and its
# children ignore SIGINT; the scripts below restore Python's handler first.
RESTORE_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def in_thread(fn: Any) -> Any:
    """Runs ``fn`` in a plain thread (no loop, not the test's main thread) and returns what it returned."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the thread did not finish"
    if failure:
        raise failure[0]
    return result[0]


def sends_then_closes(*messages: str | bytes, code: int = 1000, reason: str = "") -> Any:
    """A `websockets` handler that sends ``messages`` and closes with ``code``."""

    def handler(ws: Any) -> None:
        for message in messages:
            ws.send(message)
        ws.close(code, reason)

    return handler


# -- messages


def test_send_and_recv_from_a_plain_thread(echo_url: str) -> None:
    def script() -> tuple[Any, Any]:
        with connect(echo_url) as ws:
            ws.send("hi")
            ws.send(b"\x00\xff")
            return ws.recv(timeout=TIMEOUT), ws.recv(timeout=TIMEOUT)

    assert in_thread(script) == ("hi", b"\x00\xff")


def test_bytes_like_objects_go_out_as_binary(echo_url: str) -> None:
    with connect(echo_url) as ws:
        ws.send(bytearray(b"array"))
        ws.send(memoryview(b"view"))
        assert [ws.recv(timeout=TIMEOUT), ws.recv(timeout=TIMEOUT)] == [b"array", b"view"]
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]


def test_iteration_ends_quietly_on_a_normal_close() -> None:
    with websockets_server(sends_then_closes("one", b"two", "three")) as (url, _):
        with connect(url) as ws:
            assert list(ws) == ["one", b"two", "three"]
            with pytest.raises(ConnectionClosedOK) as closed:
                ws.recv()
            assert closed.value.code == 1000
            with pytest.raises(ConnectionClosedOK):
                ws.send("too late")


def test_iteration_raises_on_an_abnormal_close_with_the_code_and_reason() -> None:
    with websockets_server(sends_then_closes("only", code=4001, reason="bad client")) as (url, _):
        with connect(url) as ws:
            got = []
            with pytest.raises(ConnectionClosedError) as closed:
                for message in ws:
                    got.append(message)
            assert got == ["only"]
            assert (closed.value.code, closed.value.reason) == (4001, "bad client")
            assert ws.socket.close_code == 4001
            # websockets' view of the same end: the peer's frame came first, and ours echoed it.
            assert closed.value.rcvd == closed.value.sent == Close(4001, "bad client")
            assert closed.value.rcvd_then_sent is True
            with pytest.raises(ConnectionClosedError) as again:
                ws.ping()
            assert again.value.rcvd == Close(4001, "bad client")


def test_recv_timeout_raises_and_the_connection_goes_on(echo_url: str) -> None:
    with connect(echo_url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.01)
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"


def test_several_threads_may_wait_in_recv_and_each_message_goes_to_one(echo_url: str) -> None:
    with connect(echo_url) as ws:
        got: list[Any] = []
        lock = threading.Lock()

        def take() -> None:
            message = ws.recv(timeout=TIMEOUT)
            with lock:
                got.append(message)

        threads = [threading.Thread(target=take) for _ in range(4)]
        for thread in threads:
            thread.start()
        for i in range(4):
            ws.send(str(i))
        for thread in threads:
            thread.join(TIMEOUT)
        assert sorted(got) == ["0", "1", "2", "3"]


def test_close_from_another_thread_ends_a_waiting_recv(echo_url: str) -> None:
    ws = connect(echo_url)
    closer = threading.Thread(target=ws.close)
    closer.start()
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=TIMEOUT)
    closer.join(TIMEOUT)
    assert ws.socket.close_code == 1000


def test_a_full_queue_holds_the_socket_back_and_loses_nothing() -> None:
    """With max_queue=2 the third message waits in wsbind's core, not in the face; all 50 come, in order."""
    sent = threading.Event()

    def flood(ws: Any) -> None:
        for i in range(50):
            ws.send(str(i))
        sent.set()
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in ws:
                pass

    with websockets_server(flood) as (url, _):
        with connect(url, max_queue=2) as ws:
            assert sent.wait(TIMEOUT)
            wait_until(lambda: ws._inbox.qsize() == 2, what="the queue to fill")
            assert [ws.recv(timeout=TIMEOUT) for _ in range(50)] == [str(i) for i in range(50)]


def test_a_connection_left_unread_holds_back_no_other(echo_url: str) -> None:
    """Each connection has a thread of its own: one whose queue is full stalls only itself."""

    def flood(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for i in range(1000):
                ws.send(str(i))
            for _ in ws:
                pass

    with websockets_server(flood) as (url, _):
        with connect(url, max_queue=1) as unread, connect(echo_url) as busy:
            wait_until(lambda: unread._inbox.qsize() == 1, what="the unread queue to fill")
            for i in range(20):
                busy.send(str(i))
                assert busy.recv(timeout=TIMEOUT) == str(i)
            assert unread.recv(timeout=TIMEOUT) == "0"


def test_send_waits_while_the_peer_does_not_read_and_resumes_when_it_does() -> None:
    """Past write_limit a send() blocks until a quarter is left (websockets.sync does too), so a
    script sending in a loop goes at the peer's pace instead of queueing up to the 64 MiB limit."""
    release = threading.Event()
    received: list[int] = []

    def slow_reader(conn: socket.socket) -> None:
        # Reads nothing until released: only the kernel's buffers take what is sent.
        release.wait(TIMEOUT)
        with contextlib.suppress(OSError):
            size_so_far = 0
            while len(received) < count:
                first, length, _ = read_frame_header(conn)
                recv_exactly(conn, length)  # The payload, left masked.
                size_so_far += length
                if first & 0x80:
                    received.append(size_so_far)
                    size_so_far = 0

    count, size = 32, 1 << 20
    over_after_send: list[int] = []
    with raw_websocket_server(slow_reader) as url:
        with connect(url) as ws:
            limit = ws.socket.write_limit

            def sender() -> None:
                for _ in range(count):
                    ws.send(b"x" * size)
                    if ws.socket.bytes_to_write > limit:
                        over_after_send.append(ws.socket.bytes_to_write)

            thread = threading.Thread(target=sender)
            thread.start()
            try:
                # Over the limit, the send() that queued it has not returned (over_after_send
                # stays empty, below): it waits for the peer.
                wait_until(lambda: ws.socket.bytes_to_write > limit, what="send() to wait for the peer")
                assert thread.is_alive()
            finally:
                release.set()
                thread.join(TIMEOUT)
            assert not thread.is_alive()
            assert over_after_send == []
            wait_until(lambda: len(received) == count, what="every message to arrive")
    assert received == [size] * count


def test_ping_returns_the_round_trip_time(echo_url: str) -> None:
    pongs = Recorder()
    with connect(echo_url, on_pong=pongs) as ws:
        latency = ws.ping(b"abc", timeout=TIMEOUT)
        assert 0 < latency < TIMEOUT
        pongs.wait(1)
        assert pongs.calls[0][1] == b"abc"
        # The connection goes on.
        ws.send("after")
        assert ws.recv(timeout=TIMEOUT) == "after"
    with pytest.raises(ConnectionClosedOK):
        ws.ping()


def test_ping_times_out_against_a_peer_that_does_not_answer() -> None:
    with raw_websocket_server(silent_but_closes) as url, connect(url) as ws:
        with pytest.raises(TimeoutError, match=r"no pong within 0\.2 s"):
            ws.ping(timeout=0.2)
        assert ws.socket.status is Status.OPEN


# -- the same WebSocket underneath


def test_the_socket_keeps_its_properties_signals_and_handlers() -> None:
    def chat(ws: Any) -> None:
        ws.send(f"protocol {ws.subprotocol}")
        for message in ws:
            ws.send(message)

    handled = Recorder()
    with websockets_server(chat, subprotocols=["chat"]) as (url, _):
        with connect(url, requested_subprotocols=["chat"], on_text_message_received=handled) as ws:
            assert isinstance(ws, SyncWebSocket)
            assert isinstance(ws.socket, WebSocket)
            assert ws.socket.status is Status.OPEN
            assert ws.socket.negotiated_subprotocol == "chat"
            assert ws.recv(timeout=TIMEOUT) == "protocol chat"
            ws.send("echo")
            assert ws.recv(timeout=TIMEOUT) == "echo"
            assert handled.wait(2) == ["protocol chat", "echo"]
            # Its handlers run on the face's own thread, never on the caller's.
            assert set(handled.threads) == {"wsbind-sync"}
        assert ws.socket.status is Status.CLOSED


def test_after_close_the_socket_can_be_reopened_the_qml_way(echo_url: str) -> None:
    with connect(echo_url) as ws:
        pass
    sock = ws.socket
    got = Recorder()
    sock.text_message_received.connect(got)
    sock.connected.connect(lambda: sock.send_text_message("again"))
    sock.active = False
    sock.active = True
    assert got.wait() == ["again"]
    assert got.threads == ["wsbind-events"]
    sock.active = False
    wait_until(lambda: sock.status is Status.CLOSED)


# -- failures raise with error_string's words


def test_connection_refused_raises_connection_refused_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionRefusedError) as refused:
        in_thread(lambda: connect(url))
    assert str(refused.value).startswith(f"cannot connect to 127.0.0.1:{url.rsplit(':', 1)[1]}: ")
    assert refused.value.errno is not None


def test_a_refused_handshake_raises_handshake_error_with_the_status() -> None:
    def refuse(conn: Any, request: Any) -> Any:
        response = conn.respond(HTTPStatus.MOVED_PERMANENTLY, "moved\n")
        response.headers["Location"] = "ws://elsewhere.example/"
        return response

    with websockets_server(echo, process_request=refuse) as (url, _):
        with pytest.raises(InvalidStatus) as refused:
            connect(url)
    assert str(refused.value) == "handshake rejected: HTTP 301 Moved Permanently"
    assert refused.value.status_code == 301
    assert refused.value.headers["Location"] == "ws://elsewhere.example/"


def test_a_handshake_timeout_raises_timeout_error() -> None:
    """A server that accepts the TCP connection and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(TimeoutError, match=r"^handshake timeout"):
            connect(f"ws://127.0.0.1:{port}", handshake_timeout=0.2)


def test_misuse_raises_at_once() -> None:
    with pytest.raises(TypeError, match="active"):
        connect("ws://127.0.0.1:1", active=True)
    with pytest.raises(InvalidURL):
        connect("http://example.com")
    with pytest.raises(InvalidURL):
        connect("")
    with pytest.raises(ValueError, match="max_queue"):
        connect("ws://127.0.0.1:1", max_queue=0)
    with pytest.raises(TypeError, match="did you mean"):
        connect("ws://127.0.0.1:1", requested_subprotocol=["x"])


def test_connect_on_a_running_loop_raises(echo_url: str) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"await wsbind\.connect"):
            connect(echo_url)

    asyncio.run(main())


# -- scripts: Ctrl-C and the README


def run_script(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_ctrl_c_interrupts_a_waiting_recv() -> None:
    script = RESTORE_SIGINT + textwrap.dedent(
        """
        import sys
        from wsbind.sync import connect

        ws = connect(sys.argv[1])
        try:
            print("waiting", flush=True)
            ws.recv()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
        """
    )
    with websockets_server(echo) as (url, _):
        proc = run_script(script, url)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "waiting\n"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert out == "interrupted\n"
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0


def test_ctrl_c_while_connecting_leaves_no_thread() -> None:
    """The face is never returned, so it cannot be closed: giving the attempt up ends its thread."""
    script = RESTORE_SIGINT + textwrap.dedent(
        """
        import os, signal, socket, threading
        from wsbind.sync import connect

        listener = socket.create_server(("127.0.0.1", 0))
        peers = []

        def interrupt():
            peer, _ = listener.accept()
            peers.append(peer)  # Left open, never answering.
            peer.recv(4096)  # The opening request: the connection is under way.
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        try:
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}")
        except KeyboardInterrupt:
            print(sorted(t.name for t in threading.enumerate() if t.name == "wsbind-sync"), flush=True)
        """
    )
    proc = run_script(script)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "[]\n", err


def next_message(ws: SyncWebSocket) -> tuple[str | bytes, list[ConnectionClosed]]:
    """The next message, and the ends recv() raised before it."""
    ends: list[ConnectionClosed] = []
    while True:
        try:
            return ws.recv(timeout=TIMEOUT), ends
        except ConnectionClosed as end:
            ends.append(end)


def test_a_socket_that_reconnects_raises_each_end_once_and_goes_on(quick_backoff: None) -> None:
    """With auto_reconnect, recv() raises each end once, in order: the connection's, then each
    failed attempt's (the latest for every call while the socket is down); then it gives the
    next connection's messages, as the asyncio recv() does."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    with server_on(port, echo):
        ws = connect(url, auto_reconnect=True)
        ws.send("first")
        assert ws.recv(timeout=TIMEOUT) == "first"
    # Stopped with 1001, and called while the socket is down.
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=TIMEOUT)
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=TIMEOUT)
    with server_on(port, echo):
        wait_until(lambda: ws.socket.status is Status.OPEN, what="the first reconnection")
        ws.send("second")
        message, ends = next_message(ws)
        assert message == "second"
        assert all("Connection refused" in str(end) for end in ends)
    # Stopped again, and back before recv() is called.
    wait_until(lambda: ws.socket.status is not Status.OPEN, what="the second end")
    with server_on(port, echo):
        wait_until(lambda: ws.socket.status is Status.OPEN, what="the second reconnection")
        ws.send("third")
        message, ends = next_message(ws)
        assert message == "third"
        assert isinstance(ends[0], ConnectionClosedOK) and ends[0].code == 1001
        assert all("Connection refused" in str(end) for end in ends[1:])
        ws.close()


def test_close_during_a_reconnection_attempt_ends_that_attempt(quick_backoff: None) -> None:
    """close() while auto_reconnect's next attempt is CONNECTING waits for that attempt's end,
    not the last connection's, and leaves the socket CLOSED, to be reopened the QML way."""
    stall = threading.Event()
    attempts: list[str] = []

    def process_request(connection: Any, request: Any) -> None:
        attempts.append(request.path)
        if len(attempts) > 1:
            stall.wait(TIMEOUT)  # later attempts stall in their handshake

    def bye(ws: Any) -> None:
        ws.close(1001)  # the first connection ends: auto_reconnect tries again

    with websockets_server(bye, process_request=process_request) as (url, _):
        face = connect(url, auto_reconnect=True)
        ws = face.socket
        wait_until(lambda: len(attempts) >= 2 and ws.status is Status.CONNECTING, what="an attempt")
        face.close()
        assert ws.status is Status.CLOSED
        stall.set()


def test_sys_exit_in_a_handler_on_a_faces_thread_is_logged_and_ends_nothing(
    echo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No wsbind.run() runs there to end: the face and a later run() are left alone."""
    from wsbind import dispatch

    with connect(echo_url) as ws:
        ws.socket.text_message_received.connect(lambda message: sys.exit(3))
        ws.send("x")
        assert ws.recv(timeout=TIMEOUT) == "x"
        wait_until(lambda: "a handler called sys.exit() on wsbind-sync; ignored" in caplog.text)
        ws.send("y")
        assert ws.recv(timeout=TIMEOUT) == "y"
    assert not dispatch._quit.is_set()


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in README.md."""
    text = README.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match is not None
    return match[1]


def test_the_readme_blocking_bot_runs() -> None:
    def greet(ws: Any) -> None:
        assert ws.recv() == "hello"
        ws.send("hello back")
        ws.send("news")
        ws.close()

    port = free_port()
    code = readme_block("## A blocking bot").replace("ws://127.0.0.1:1234", f"ws://127.0.0.1:{port}")
    server = websockets.sync.server.serve(greet, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proc = run_script(code)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        server.shutdown()
        thread.join(5)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["got hello back", "got news"]


@pytest.mark.parametrize(
    ("code", "error", "kind"),
    [
        (1000, None, ConnectionClosedOK),
        (1001, None, ConnectionClosedOK),
        (1005, None, ConnectionClosedOK),
        (1011, None, ConnectionClosedError),
        (1006, "connection lost: reset", ConnectionClosedError),
        (1000, "keepalive ping timeout", ConnectionClosedError),
    ],
)
def test_which_ends_are_normal(code: int, error: str | None, kind: type) -> None:
    """As websockets counts them: 1000, 1001 and a close frame without a code, unless it failed."""
    closed = ConnectionClosed.of(code, "why", error)
    assert type(closed) is kind
    assert (closed.code, closed.reason) == (code, "why")
    assert str(closed) == (error or f"connection closed with {code}: why")
