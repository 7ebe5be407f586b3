"""Shared test helpers. The peers are real: the independent `websockets`
library, raw sockets for broken peers, a real Jupyter kernel."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import trustme
import websockets
import websockets.sync.server

from wsbind import SslConfiguration, Status, WebSocket, WebSocketServer, retry

# Generous, since CI machines are slow; a passing test never waits this long.
TIMEOUT = 15.0

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs a test's coroutine under asyncio.run(), as a user's program does, within TIMEOUT."""

    async def bounded() -> T:
        return await asyncio.wait_for(main, TIMEOUT)

    return asyncio.run(bounded())


async def eventually(predicate: Callable[[], Any], what: str = "") -> None:
    """Lets the loop run until ``predicate()`` is true; fails the test after TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


async def async_echo(ws: Any) -> None:
    """A handler for `websockets`' asyncio server or `wsbind.serve()`: sends every message back."""
    async for message in ws:
        await ws.send(message)


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Polls `predicate` until it returns something true; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.005)


class Recorder:
    """A handler that records its calls, the thread they ran on, and can be waited on."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> None:
        with self._lock:
            self.calls.append(args)
            self.threads.append(threading.current_thread().name)

    @property
    def values(self) -> list[Any]:
        """The first argument of each call."""
        return [c[0] if c else None for c in self.calls]

    def wait(self, count: int = 1, timeout: float = TIMEOUT) -> list[Any]:
        wait_until(lambda: len(self.calls) >= count, timeout, f"{count} call(s)")
        return self.values


@pytest.fixture
def recorder() -> Callable[[], Recorder]:
    return Recorder


@pytest.fixture(autouse=True)
def _collect() -> Iterator[None]:
    yield
    gc.collect()


# Runs of one size, as a stream sends them, with sizes on both sides of where
# wsbind starts copying messages into bytes objects made ahead of time (8 KiB
# up to 1 MiB), and a change of size midway.
STREAM_SIZES = [64 << 10] * 40 + [8 << 10] * 12 + [(8 << 10) - 1] * 3 + [(1 << 20) - 1] * 5 + [64 << 10] * 12


def numbered(index: int, size: int) -> bytes:
    """A message of `size` bytes that says which it is throughout."""
    return struct.pack("!I", index) * (size // 4) + b"z" * (size % 4)


# -- real peers


def free_port() -> int:
    """A loopback TCP port that nothing listens on (the OS picks it; free when this returns)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def websockets_server(handler: Callable[[Any], None], **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Runs a server of the independent `websockets` library; yields its URL and the server."""
    kwargs.setdefault("max_size", None)
    server = websockets.sync.server.serve(handler, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}", server
    finally:
        server.shutdown()
        thread.join(5)


class PeerFrames(logging.Handler):
    """Counts the frames of one kind (``"PING"``, ``"PONG"``) a `websockets` peer receives, from
    its debug log of each frame; pass ``logger=frames.logger`` to the peer."""

    def __init__(self, kind: str) -> None:
        super().__init__(logging.DEBUG)
        self.prefix = f"< {kind} "
        self.count = 0
        self._changed = threading.Condition()
        # A logger of its own, at debug level, feeding only this handler.
        self.logger = logging.getLogger(f"tests.peer.{id(self)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.handlers = [self]

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            with self._changed:
                self.count += 1
                self._changed.notify_all()

    def wait(self, count: int, timeout: float = TIMEOUT) -> bool:
        """Blocks until `count` frames came; False on timeout. For handlers, where a failed
        wait_until would only be logged."""
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout)


def echo(ws: Any) -> None:
    """A `websockets` handler that sends every message back."""
    for message in ws:
        ws.send(message)


def recording_closes(closes: list[tuple[int | None, str | None]]) -> Callable[[Any], None]:
    """A `websockets` handler that reads until the connection closes, then records its close frame."""

    def handler(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in ws:
                pass
        closes.append((ws.close_code, ws.close_reason))

    return handler


@pytest.fixture
def echo_url() -> Iterator[str]:
    with websockets_server(echo) as (url, _):
        yield url


@pytest.fixture
def sockets() -> Iterator[Callable[..., WebSocket]]:
    """Makes WebSockets that are closed when the test ends."""
    made: list[WebSocket] = []

    def make(**kwargs: Any) -> WebSocket:
        ws = WebSocket(**kwargs)
        made.append(ws)
        return ws

    yield make
    for ws in made:
        ws.active = False
    for ws in made:
        wait_until(lambda ws=ws: ws.status in (Status.CLOSED, Status.ERROR), what=f"{ws} to close")


class PausingWebSocket(WebSocket):
    """A WebSocket whose ``_conn``, when read by the thread named in ``pause_in``, waits until the
    connection is over before answering: what a thread switch at the worst moment does, every time.
    Not while the socket's lock is held: then the event thread cannot clear ``_conn`` meanwhile."""

    def __init__(self, **kwargs: Any) -> None:
        self.pause_in: int | None = None
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def _conn(self) -> Any:
        conn = self.__dict__.get("_live")
        held = self._lock.locked()
        if conn is not None and self.pause_in == threading.get_ident() and not held:
            self.pause_in = None
            wait_until(lambda: self.__dict__.get("_live") is None, what="the connection to end")
        return conn

    @_conn.setter
    def _conn(self, conn: Any) -> None:
        self.__dict__["_live"] = conn


def open_socket(make: Callable[..., WebSocket], url: str, **kwargs: Any) -> WebSocket:
    """A WebSocket to `url`, once OPEN."""
    ws = make(url=url, active=True, **kwargs)
    wait_until(lambda: ws.status is Status.OPEN or ws.status is Status.ERROR, what=f"{url} to open")
    assert ws.status is Status.OPEN, ws.error_string
    return ws


def drain_events() -> None:
    """Returns once wsbind's event thread has finished the handlers it was running and delivered
    every event queued before the call.

    A marker socket is opened to a port where nothing listens; its failure reaches the same
    queue after those events and is delivered by the same thread after them. Call it after
    waiting for the last expected event and before comparing an exact event log, so that an
    extra event that would come late is in the log. (A closed socket's connection is no longer
    registered: nothing its core sends later can reach its handlers.)
    """
    marker = WebSocket(url=f"ws://127.0.0.1:{free_port()}", active=True)
    wait_until(lambda: marker.status is Status.ERROR, what="the marker socket's failure")


@pytest.fixture
def servers() -> Iterator[Callable[..., WebSocketServer]]:
    """Makes listening WebSocketServers (waits for their URL); stopped when the test ends."""
    made: list[WebSocketServer] = []

    def make(**kwargs: Any) -> WebSocketServer:
        kwargs.setdefault("listen", True)
        server = WebSocketServer(**kwargs)
        made.append(server)
        if kwargs["listen"]:
            wait_until(lambda: server.url or server.error_string, what="the server to listen")
        return server

    yield make
    for server in made:
        server.listen = False


# -- throwaway certificates (trustme)


def pem(blob: Any) -> str:
    return str(blob.bytes().decode())


def leaf(ca: trustme.CA, *names: str, **kwargs: Any) -> tuple[str, str]:
    """A certificate chain and key issued by `ca`, as PEM text."""
    cert = ca.issue_cert(*names, **kwargs)
    return "".join(pem(b) for b in cert.cert_chain_pems), pem(cert.private_key_pem)


def trusting(ca: trustme.CA) -> SslConfiguration:
    return SslConfiguration(ca_certificates=[pem(ca.cert_pem)])


def tls_server(
    servers: Callable[..., WebSocketServer],
    ca: trustme.CA,
    names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    **kwargs: Any,
) -> WebSocketServer:
    """A wss:// echo server (made by the `servers` fixture) with a certificate for `names` from `ca`."""
    certificate, key = leaf(ca, *names)

    def on_client(ws: WebSocket) -> None:
        ws.text_message_received.connect(ws.send_text_message)

    return servers(
        secure_mode=True, certificate=certificate, private_key=key, on_client_connected=on_client, **kwargs
    )


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnection delays of milliseconds, so that the tests do not wait seconds."""
    monkeypatch.setattr(retry, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(retry, "MIN_DELAY", 0.02)
    monkeypatch.setattr(retry, "MAX_DELAY", 0.1)


@contextlib.contextmanager
def server_on(port: int, handler: Any) -> Iterator[Any]:
    """A `websockets` server on a given port, so that it can be started again on the same one."""
    server = websockets.sync.server.serve(handler, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)
