"""Where and how handlers run: the caller's asyncio loop or wsbind's event thread,
one at a time and in order; run() and quit(); exit and garbage collection."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect

from conftest import TIMEOUT, PeerFrames, Recorder, echo, open_socket, wait_until, websockets_server
from rawpeer import drain, tcp_server
from wsbind import Status, WebSocket, WebSocketServer


def test_without_a_loop_handlers_run_on_the_event_thread(sockets: Any, echo_url: str) -> None:
    got = Recorder()
    ws = open_socket(sockets, echo_url, on_text_message_received=got)
    ws.send_text_message("x")
    got.wait()
    assert got.threads == ["wsbind-events"]


def test_status_handlers_run_on_the_event_thread_whoever_sets_the_change_off(
    sockets: Any, echo_url: str
) -> None:
    """``active = True`` on the main thread: CONNECTING is told on the event thread with
    the rest, so that it never runs beside a handler still busy with the last CLOSED."""
    statuses = Recorder()
    ws = sockets(url=echo_url, on_status_changed=statuses)
    ws.active = True
    assert ws.status is Status.CONNECTING  # Stored at once, told on the socket's thread.
    wait_until(lambda: Status.OPEN in statuses.values, what="OPEN")
    ws.active = False
    wait_until(lambda: Status.CLOSED in statuses.values, what="CLOSED")
    assert statuses.values == [Status.CONNECTING, Status.OPEN, Status.CLOSING, Status.CLOSED]
    assert set(statuses.threads) == {"wsbind-events"}


def test_an_open_on_another_thread_while_an_end_is_told_keeps_its_status(sockets: Any, echo_url: str) -> None:
    """The main thread opens the socket anew (a new url) while the event thread is in the
    last connection's close_code_changed handler: the status that stays is CONNECTING, which
    status_changed told last, not the CLOSED of the end being told."""
    in_handler, opened_again = threading.Event(), threading.Event()

    def code_changed(code: int | None) -> None:
        if code == 1000:
            in_handler.set()
            opened_again.wait(TIMEOUT)

    statuses = Recorder()
    ws = open_socket(sockets, echo_url, on_close_code_changed=code_changed, on_status_changed=statuses)
    with tcp_server(drain) as silent:  # the next attempt stays CONNECTING
        ws.close()
        assert in_handler.wait(TIMEOUT)
        ws.url = silent
        opened_again.set()
        wait_until(lambda: statuses.values[-1:] == [Status.CONNECTING], what="the new CONNECTING")
        assert ws.status is Status.CONNECTING
        ws.abort()


def test_inside_a_loop_handlers_run_on_that_loop(echo_url: str) -> None:
    async def main() -> tuple[list[Any], Any, threading.Thread]:
        loop = asyncio.get_running_loop()
        seen: list[Any] = []

        def on_status(status: Status) -> None:
            seen.append((status, asyncio.get_running_loop(), threading.current_thread()))
            if status is Status.OPEN:
                ws.active = False

        ws = WebSocket(url=echo_url, active=True, on_status_changed=on_status)
        for _ in range(1000):
            if ws.status is Status.CLOSED:
                break
            await asyncio.sleep(0.01)
        return seen, loop, threading.current_thread()

    seen, loop, thread = asyncio.run(main())
    assert [s for s, _, _ in seen] == [Status.CONNECTING, Status.OPEN, Status.CLOSING, Status.CLOSED]
    assert all(lp is loop and th is thread for _, lp, th in seen)


def test_handlers_of_one_object_run_one_at_a_time_in_order(sockets: Any) -> None:
    def burst(conn: Any) -> None:
        for i in range(300):
            conn.send(str(i))
        echo(conn)

    running = 0
    overlap: list[bool] = []
    got: list[int] = []

    def slow(message: str) -> None:
        nonlocal running
        running += 1
        overlap.append(running > 1)
        time.sleep(0.0005)  # A slow handler on purpose: room for a second one to overlap it.
        got.append(int(message))
        running -= 1

    with websockets_server(burst) as (url, _):
        ws = sockets(url=url, active=True, on_text_message_received=slow)
        wait_until(lambda: len(got) == 300)
        ws.active = False
    assert got == list(range(300))
    assert not any(overlap)


def test_a_busy_handler_does_not_leave_the_peers_pings_unanswered(sockets: Any) -> None:
    """The event thread reads its sockets itself; while a handler keeps it busy, the I/O thread
    reads for it, so the peer's pings are answered (the peer gives up after 0.3 s)."""
    got = Recorder()
    pongs = PeerFrames("PONG")
    blocked: list[bool] = []

    def on_message(message: str) -> None:
        if message == "block":
            # Busy until the peer had five pings answered, past its ping timeout: unanswered,
            # it would have closed the connection after its first.
            seen = pongs.count
            blocked.append(pongs.wait(seen + 5))
        got(message)

    def handler(conn: Any) -> None:
        conn.send("block")
        echo(conn)

    with websockets_server(handler, ping_interval=0.1, ping_timeout=0.3, logger=pongs.logger) as (url, _):
        ws = open_socket(sockets, url, on_text_message_received=on_message)
        wait_until(lambda: got.values == ["block"], what="the blocking handler to return")
        assert blocked == [True], "the peer got no answers to its pings"
        ws.send_text_message("still there?")
        wait_until(lambda: len(got.values) == 2, what="the echo")
        assert got.values == ["block", "still there?"]
        assert ws.status is Status.OPEN


def test_a_blocked_asyncio_loop_does_not_leave_the_peers_pings_unanswered() -> None:
    """The same for a loop blocked by a long computation (a notebook cell)."""

    def handler(conn: Any) -> None:
        echo(conn)

    pongs = PeerFrames("PONG")

    async def main(url: str) -> tuple[list[str], Status]:
        got: list[str] = []
        ws = WebSocket(url=url, active=True, on_text_message_received=got.append)
        while ws.status is not Status.OPEN:
            await asyncio.sleep(0.01)
        ws.send_text_message("before")
        while not got:
            await asyncio.sleep(0.01)
        # The loop blocked until the peer had five pings answered, past its ping timeout.
        assert pongs.wait(pongs.count + 5), "the peer got no answers to its pings"
        ws.send_text_message("after")
        for _ in range(500):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        status = ws.status
        ws.active = False
        return got, status

    with websockets_server(handler, ping_interval=0.1, ping_timeout=0.3, logger=pongs.logger) as (url, _):
        got, status = asyncio.run(main(url))
    assert got == ["before", "after"]
    assert status is Status.OPEN


def test_a_busy_handler_does_not_hold_up_the_rest_of_a_large_message_it_sent(servers: Any) -> None:
    """The event thread writes what the socket did not take of a large message; while a handler
    keeps it busy, the I/O thread writes it: the peer gets the whole message meanwhile."""
    big = os.urandom(16 << 20)
    peer_has_it = threading.Event()
    waited: list[bool] = []

    def on_client(ws: WebSocket) -> None:
        def on_message(message: bytes) -> None:
            ws.send_binary_message(big)
            waited.append(peer_has_it.wait(TIMEOUT))

        ws.binary_message_received.connect(on_message)

    server = servers(on_client_connected=on_client)
    with connect(server.url, max_size=None) as client:
        client.send(b"go")
        assert client.recv(timeout=TIMEOUT) == big
        peer_has_it.set()
        wait_until(lambda: waited, what="the handler to return")
    assert waited == [True]


def test_an_asyncio_loop_writes_the_rest_of_large_messages() -> None:
    """A server made in a loop echoes messages far larger than a socket takes at once, in order."""
    messages = [os.urandom((16 << 20) - i) for i in range(3)] + [b"small"]

    async def main() -> list[str | bytes]:
        server = WebSocketServer(listen=True)
        server.client_connected.connect(lambda ws: ws.binary_message_received.connect(ws.send_binary_message))
        while not server.url:
            await asyncio.sleep(0.01)
        async with websockets.connect(server.url, max_size=None) as client:
            for message in messages:
                await client.send(message)
            echoed = [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in messages]
        server.listen = False
        return echoed

    assert asyncio.run(main()) == messages


def run_script(code: str, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def test_run_returns_on_quit_and_closes_sockets_with_1001() -> None:
    result = run_script(
        """
        import contextlib, threading, websockets
        from websockets.sync.server import serve
        import wsbind
        codes = []
        def handler(conn):
            with contextlib.suppress(websockets.ConnectionClosed):
                for _ in conn:
                    pass
            codes.append(conn.close_code)
        server = serve(handler, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        ws = wsbind.WebSocket(url=url, active=True,
                              on_status_changed=lambda s: s == wsbind.Status.OPEN and wsbind.quit())
        wsbind.run()
        import time
        deadline = time.monotonic() + 10
        while not codes and time.monotonic() < deadline:
            time.sleep(0.01)
        print("status", ws.status.name, "peer saw", codes)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "status CLOSED peer saw [1001]" in result.stdout


def test_sys_exit_in_a_handler_ends_run_and_spares_the_event_thread() -> None:
    """sys.exit() on the event thread would end that thread alone, and every object's events
    with it: it is logged and ends run() instead, and later objects still get their events."""
    result = run_script(
        """
        import sys, threading, wsbind
        from wsbind import Status, WebSocket, WebSocketServer

        server = WebSocketServer(listen=True)
        ws = WebSocket(url=server.url, active=True,
                       on_status_changed=lambda s: sys.exit(3) if s is Status.OPEN else None)
        wsbind.run()
        opened = threading.Event()
        server = WebSocketServer(listen=True)
        later = WebSocket(url=server.url, active=True,
                          on_connected=opened.set)
        print("later socket opened:", opened.wait(10))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "later socket opened: True\n"
    assert "a handler called sys.exit() on wsbind's event thread" in result.stderr


def test_run_returns_on_ctrl_c() -> None:
    script = """
        import sys, threading, time, wsbind

        def announce():
            # Ready once the main thread is inside wsbind.run().
            main = threading.main_thread().ident
            while True:
                frame = sys._current_frames()[main]
                while frame and frame.f_code.co_name != "run":
                    frame = frame.f_back
                if frame:
                    print("ready", flush=True)
                    return
                time.sleep(0.01)

        s = wsbind.WebSocketServer(listen=True)
        threading.Thread(target=announce, daemon=True).start()
        wsbind.run()
        print("done", s.listen, flush=True)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "done True" in out


def test_interpreter_exit_does_not_hang_with_open_sockets() -> None:
    result = run_script(
        """
        import time, wsbind
        server = wsbind.WebSocketServer(listen=True)
        while not server.url:
            time.sleep(0.01)
        client = wsbind.WebSocket(url=server.url, active=True)
        while client.status != wsbind.Status.OPEN:
            time.sleep(0.01)
        print("open")
        """,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "open"


def closed_objects(echo_url: str) -> list[weakref.ref[Any]]:
    """A socket and a server, each in a cycle through its own handler, both closed."""
    ws = WebSocket(url=echo_url, active=True)
    ws.text_message_received.connect(lambda m: ws.send_text_message(m))
    wait_until(lambda: ws.status is Status.OPEN)
    ws.active = False
    wait_until(lambda: ws.status is Status.CLOSED)
    server = WebSocketServer(listen=True)
    server.client_connected.connect(lambda c: server.url)
    wait_until(lambda: server.url)
    server.listen = False
    return [weakref.ref(ws), weakref.ref(server)]


def test_closed_unreferenced_objects_are_collected(echo_url: str) -> None:
    refs = closed_objects(echo_url)
    wait_until(lambda: (gc.collect(), all(r() is None for r in refs))[1], what="collection")


def open_unreferenced_socket(url: str, got: Recorder) -> weakref.ref[WebSocket]:
    ws = WebSocket(url=url, active=True, on_text_message_received=got)
    wait_until(lambda: ws.status is Status.OPEN)
    return weakref.ref(ws)


def test_open_unreferenced_sockets_stay_alive_and_keep_working(echo_url: str) -> None:
    """A live socket belongs to wsbind until it closes, as in a script that never keeps it."""
    got = Recorder()
    ref = open_unreferenced_socket(echo_url, got)
    gc.collect()
    live = ref()
    assert live is not None
    live.send_text_message("alive")
    assert got.wait() == ["alive"]
    live.active = False
    wait_until(lambda: live.status is Status.CLOSED)


def test_a_quit_before_run_is_not_lost() -> None:
    """A handler may quit before the main thread reaches run(): run() then returns at once."""
    result = run_script("import wsbind\nwsbind.quit()\nwsbind.run()\nprint('returned')", timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "returned"


# -- what a call from another thread sets off runs on the object's thread


def event_thread_ident() -> int:
    return next(t.ident for t in threading.enumerate() if t.name == "wsbind-events" and t.ident)


CLOSED_BY_US = [("status", Status.CLOSING), ("about_to_close", None), ("status", Status.CLOSED)]


CLOSERS = {
    "close": lambda ws: ws.close(),
    "active-false": lambda ws: setattr(ws, "active", False),
    "abort": lambda ws: ws.abort(),
}


@pytest.mark.parametrize("how", CLOSERS.values(), ids=CLOSERS.keys())
def test_closing_from_another_thread_runs_the_handlers_on_the_event_thread(
    sockets: Any, echo_url: str, how: Any
) -> None:
    """close(), active = False and abort() called from the main thread: status_changed and
    about_to_close run on the socket's event thread, never on the caller's."""
    seen: list[tuple[str, Any, int]] = []
    ws = open_socket(
        sockets,
        echo_url,
        on_status_changed=lambda s: seen.append(("status", s, threading.get_ident())),
        on_about_to_close=lambda: seen.append(("about_to_close", None, threading.get_ident())),
    )
    del seen[:]
    how(ws)
    wait_until(lambda: ws.status is Status.CLOSED, what="status CLOSED")
    wait_until(lambda: ("status", Status.CLOSED) in [(k, v) for k, v, _ in seen], what="the handler")
    expected = [("status", Status.CLOSED)] if how is CLOSERS["abort"] else CLOSED_BY_US
    assert [(k, v) for k, v, _ in seen] == expected
    assert {ident for _, _, ident in seen} == {event_thread_ident()}
    assert threading.get_ident() != event_thread_ident()


def test_closing_from_another_thread_runs_the_handlers_on_the_sockets_loop(echo_url: str) -> None:
    """The same for a socket made on an asyncio loop, closed from a worker thread."""

    async def main() -> tuple[list[tuple[str, Any, int]], int]:
        seen: list[tuple[str, Any, int]] = []
        ws = WebSocket(
            url=echo_url,
            active=True,
            on_status_changed=lambda s: seen.append(("status", s, threading.get_ident())),
            on_about_to_close=lambda: seen.append(("about_to_close", None, threading.get_ident())),
        )
        closed = asyncio.Event()
        ws.status_changed.connect(lambda s: s is Status.CLOSED and closed.set())
        while ws.status is not Status.OPEN:
            await asyncio.sleep(0.01)
        del seen[:]
        await asyncio.get_running_loop().run_in_executor(None, ws.close)
        await asyncio.wait_for(closed.wait(), TIMEOUT)
        return seen, threading.get_ident()

    seen, loop_thread = asyncio.run(main())
    assert [(k, v) for k, v, _ in seen] == CLOSED_BY_US
    assert {ident for _, _, ident in seen} == {loop_thread}


class PausingStatusWebSocket(WebSocket):
    """A WebSocket that, when a thread other than the event thread changes its status to CLOSING,
    first waits until the connection is over: what a thread switch at the worst moment does."""

    def _set_status(self, status: Status, error: str = "") -> None:
        if status is Status.CLOSING and threading.get_ident() != event_thread_ident():
            wait_until(lambda: self._conn is None, what="the connection to end")
        super()._set_status(status, error)


def test_close_from_another_thread_racing_the_peers_close_ends_closed(sockets: Any, echo_url: str) -> None:
    """We call close() on the main thread just as the peer closes: the status ends CLOSED, and
    never goes from CLOSED back to CLOSING."""
    # Its echo, handled on the same thread, comes after anything the close() set off there.
    barrier = Recorder()
    other = open_socket(sockets, echo_url, on_text_message_received=barrier)

    def close_on_request(conn: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            conn.recv()
            conn.close(4000, "bye")

    statuses = Recorder()
    with websockets_server(close_on_request) as (url, _):
        ws = PausingStatusWebSocket(url=url, active=True, on_status_changed=statuses)
        wait_until(lambda: ws.status is Status.OPEN, what="the socket to open")
        ws.send_text_message("close, please")
        ws.close()
        wait_until(lambda: Status.CLOSED in statuses.values, what="status CLOSED")
        other.send_text_message("after")
        barrier.wait()
    assert ws.status is Status.CLOSED
    after = statuses.values[statuses.values.index(Status.CLOSED) :]
    assert after == [Status.CLOSED], statuses.values
    assert statuses.values.count(Status.CLOSING) <= 1


def test_handlers_of_one_socket_never_overlap_when_another_thread_closes_it(
    sockets: Any, echo_url: str
) -> None:
    """close() from the main thread while a message handler runs on the event thread: the
    status_changed and about_to_close handlers wait until it has returned."""
    log: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def tracked(name: str, body: Any = None) -> Any:
        def handler(*args: Any) -> None:
            log.append(f"enter {name}")
            if body is not None:
                body()
            log.append(f"exit {name}")

        return handler

    def hold() -> None:
        inside.set()
        release.wait(TIMEOUT)

    ws = open_socket(
        sockets,
        echo_url,
        on_text_message_received=tracked("text", hold),
        on_status_changed=tracked("status"),
        on_about_to_close=tracked("about_to_close"),
    )
    del log[:]
    ws.send_text_message("hold the thread")
    assert inside.wait(TIMEOUT)
    try:
        ws.close()
    finally:
        release.set()
    wait_until(lambda: ws.status is Status.CLOSED, what="status CLOSED")
    wait_until(lambda: log.count("exit status") == 2, what="the CLOSED handler to finish")
    assert log == [
        "enter text",
        "exit text",
        "enter status",
        "exit status",
        "enter about_to_close",
        "exit about_to_close",
        "enter status",
        "exit status",
    ]
