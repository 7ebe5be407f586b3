"""A blocking face for scripts: ``send()``, ``recv()`` and ``for message in ws``, from any thread.

::

    from wsbind.sync import connect

    with connect("ws://127.0.0.1:8765") as ws:
        ws.send("hi")
        print(ws.recv(timeout=5))
        for message in ws:      # ends quietly when the connection closes normally
            print(message)

No asyncio loop and no ``wsbind.run()``: every call blocks the calling thread
until it is done, and Ctrl-C interrupts a wait. What :func:`connect` returns
is a face over an ordinary :class:`wsbind.WebSocket`, ``ws.socket``: its
properties, signals and bindings keep working, its handlers still see every
message, and the other styles can be mixed in (``ws.socket.close_code``,
``ws.socket.pong.connect(...)``).

Each connection made here has a thread of its own for its handlers (not
wsbind's shared event thread), so that a script which stops reading holds
back only its own socket: messages wait for ``recv()`` in a queue of at most
``max_queue`` (default 256); when it is full that thread stops taking the
socket's events, wsbind's core stops reading the socket once 16 MiB wait, and
TCP makes the peer wait. Memory stays bounded whatever the peer sends.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from .aio import CLIENT_KEYWORDS, properties_of, queue_limit
from .dispatch import ThreadDispatcher, current
from .errors import (
    ConnectionClosed,
    ConnectionClosedOK,
    ConnectionEnd,
    InvalidURL,
    NotOpenError,
)
from .objects import WAIT_SLICE, wait_in_slices
from .status import Status
from .websocket import FragmentKind, WebSocket, decoded, undecodable_reason, whole_message

if TYPE_CHECKING:
    import uuid

    from typing_extensions import Buffer

    from .http import HandshakeResponse, Request

__all__ = ["MAX_QUEUE", "SyncWebSocket", "connect", "unix_connect"]

MAX_QUEUE = 256
"""Messages held for ``recv()`` before the socket is left unread: enough that a
stream of small messages flows without the socket's thread stopping for each,
few enough that messages of websockets' default 1 MiB hold 256 MiB at most."""

# Put in a face's inbox after its last message once close() was called, or
# the program exits.
_END = object()


class _Ended:
    """Put in a face's inbox after the last message of a connection, or of an attempt, that ended.

    The socket may open again (``auto_reconnect``, a new ``url``): recv()
    then raises each end once, in order, as the asyncio ``recv()`` does, and
    goes on with the next connection's messages.
    """

    __slots__ = ("end", "number")

    def __init__(self, number: int, end: ConnectionEnd) -> None:
        self.number = number
        """Which of the socket's ends it is, counted from 1."""
        self.end = end
        """Its close code, close reason, and error or None."""


# The faces whose threads run, to be released and stopped at exit.
_live: set[SyncWebSocket] = set()
_live_lock = threading.Lock()


def connect(
    url: str, *, max_queue: int | tuple[int, int] | None = MAX_QUEUE, **properties: Any
) -> SyncWebSocket:
    """Opens a WebSocket to ``url``, waits until it is OPEN, and returns its blocking face.

    ``properties`` are any of ``WebSocket``'s constructor keywords except
    ``active``: ``requested_subprotocols=["v1"]``, ``request_headers={...}``,
    ``ssl_configuration=...``, handlers such as ``on_pong=...``, or
    websockets' names for them, as ``wsbind.connect()`` takes. The wait is
    bounded by ``handshake_timeout`` (10 s by default); Ctrl-C gives it up.

    A failure raises with the words ``error_string`` holds:
    :class:`wsbind.InvalidStatus` when the server refuses (``status_code``
    is its HTTP status), :class:`wsbind.InvalidHandshake` when its answer is
    wrong, ``TimeoutError`` for the handshake timeout,
    ``ssl.SSLError`` kinds for TLS, and the ``OSError`` kinds for the
    network (``ConnectionRefusedError``...). Raises RuntimeError on a running
    asyncio loop, which it would block: ``await wsbind.connect()`` there.
    """
    _no_loop("wsbind.sync.connect()")
    if "active" in properties:
        raise TypeError("wsbind.sync.connect() opens the socket itself: leave out active")
    max_queue = queue_limit(max_queue)  # websockets' forms: None, (high, low)
    if not isinstance(max_queue, int) or isinstance(max_queue, bool):
        raise TypeError(f"max_queue must be an int, not {type(max_queue).__name__}")
    if max_queue < 1:
        raise ValueError(f"max_queue must be at least 1, not {max_queue}")
    socket = WebSocket(url=url, **properties_of("wsbind.sync.connect", properties, CLIENT_KEYWORDS))
    if not socket.url:
        raise InvalidURL("wsbind.sync.connect() needs a ws:// or wss:// URL")
    face = SyncWebSocket(socket, max_queue)
    face._open()
    return face


def unix_connect(
    path: str | os.PathLike[str], uri: str = "ws://localhost/", **properties: Any
) -> SyncWebSocket:
    """Opens a WebSocket over the Unix domain socket at ``path`` (websockets.sync: ``unix_connect()``).

    ``uri`` names the server in the request only (its Host header and path);
    the rest is :func:`connect`'s, with the socket's ``unix_socket_path``
    set to ``path``.
    """
    return connect(uri, unix_socket_path=path, **properties)


class SyncWebSocket:
    """The blocking face of a :class:`wsbind.WebSocket`, made by :func:`connect`.

    ``send()`` is safe from any thread; several threads may wait in
    ``recv()`` at once, and each message goes to one of them. Use it as a
    context manager, or call :meth:`close`: that ends the connection and the
    thread that runs its handlers.
    """

    def __init__(self, socket: WebSocket, max_queue: int = MAX_QUEUE) -> None:
        if socket.active or socket._conn is not None:
            # Its events already go to another thread, which cannot be left mid-connection.
            raise ValueError("a SyncWebSocket takes a WebSocket that is not active yet; connect() makes both")
        self.socket = socket
        """The WebSocket itself, with its properties, signals and bindings."""
        self.max_queue = max_queue
        """The most messages held for ``recv()``; then the socket is left unread."""
        # The thread that runs the socket's handlers, this face's among them.
        self._thread = ThreadDispatcher()
        self._thread.thread.name = "wsbind-sync"
        # Given before the socket opens, so that every event of the
        # connection goes there (a server's accepted sockets are given their
        # server's the same way).
        socket._dispatcher = self._thread
        # Messages not taken by recv() yet, oldest first, then _END. A
        # SimpleQueue, not a deque under the condition below: its get() and
        # put() are one C call each, where a Condition's wait and notify
        # are a dozen lines of Python per message.
        self._inbox: queue.SimpleQueue[str | bytes | object] = queue.SimpleQueue()
        # Guards everything below; notified on each status, pong and room.
        self._changed = threading.Condition()
        # The connection got OPEN.
        self._opened = False
        # How many connections and attempts of the socket ended.
        self._ends = 0
        # The last of those ends that recv() raised.
        self._raised = 0
        # How the connection ended (close_code, close_reason, the error or
        # None, the close frames), once its status is CLOSED or ERROR; None
        # again once the socket opens anew.
        self._end: ConnectionEnd | None = None
        # close() was called, or the program exits: hold no more messages.
        self._released = False
        with _live_lock:
            _live.add(self)
        # The socket's thread waits for recv() to make room in the queue.
        self._room_wanted = False
        socket.text_message_received.connect(self._received)
        socket.binary_message_received.connect(self._received)
        socket.status_changed.connect(self._status)
        socket.pong.connect(self._ponged)

    def __repr__(self) -> str:
        return f"<SyncWebSocket {self.socket.url} {self.socket.status.name}>"

    # -- websockets.sync's names, read from the socket

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The server's address as ``(host, port)`` (websockets.sync: ``remote_address``).

        The socket's ``remote_address``: ``(peer_address, peer_port)``.
        websockets' ``local_address`` is ``(ws.socket.local_address,
        ws.socket.local_port)``.
        """
        return self.socket.remote_address

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server picked, None for none (websockets.sync: ``subprotocol``).

        The socket's ``negotiated_subprotocol``, None where it holds "".
        """
        return self.socket.subprotocol

    @property
    def close_code(self) -> int | None:
        """The socket's ``close_code``: None while open (websockets.sync: ``close_code``)."""
        return self.socket.close_code

    @property
    def close_reason(self) -> str:
        """The socket's ``close_reason`` (websockets.sync: ``close_reason``)."""
        return self.socket.close_reason

    @property
    def latency(self) -> float:
        """Seconds from the last ping answered to its pong, keepalive's too (websockets.sync: ``latency``)."""
        return self.socket.latency

    @property
    def request(self) -> Request | None:
        """The opening request this side sent, a :class:`wsbind.Request` (websockets.sync: ``request``).

        Its ``path`` and ``target`` as sent, and as ``headers`` those the
        program gave (``origin``, ``request_headers``), not those the
        handshake writes itself; see ``WebSocket.request``.
        """
        return self.socket.request

    @property
    def state(self) -> Status:
        """The socket's status as websockets' four states, ERROR as CLOSED (websockets.sync: ``state``)."""
        return self.socket.state

    @property
    def id(self) -> uuid.UUID:
        """A random UUID that names the socket in logs (websockets.sync: ``id``)."""
        return self.socket.id

    @property
    def response(self) -> HandshakeResponse | None:
        """The server's 101, a :class:`wsbind.HandshakeResponse` (websockets.sync: ``response``)."""
        return self.socket.response

    # -- on the socket's thread

    def _received(self, message: str | bytes) -> None:
        inbox = self._inbox
        if inbox.qsize() >= self.max_queue:
            self._wait_for_room()
        if not self._released:
            inbox.put(message)

    def _wait_for_room(self) -> None:
        # Holding the socket's thread here is the backpressure: its events,
        # this connection's only, wait in wsbind's core meanwhile.
        with self._changed:
            # Set before the queue is looked at: a recv() that takes a message
            # after the look sees it, and notifies.
            self._room_wanted = True
            while self._inbox.qsize() >= self.max_queue and not self._released:
                self._changed.wait()
            self._room_wanted = False

    def _status(self, status: Status) -> None:
        with self._changed:
            if status is Status.CONNECTING or status is Status.OPEN:
                # A new attempt (auto_reconnect's): close() and the errors
                # wait for its end, not the last one's.
                self._opened = self._opened or status is Status.OPEN
                self._end = None
            elif status is Status.CLOSED or status is Status.ERROR:
                socket = self.socket
                error = socket.error_string if status is Status.ERROR else None
                self._end = (socket.close_code, socket.close_reason, error, *socket._close_frames)
                self._ends += 1
                # After the messages, which came before the end.
                self._inbox.put(_Ended(self._ends, self._end))
            self._changed.notify_all()

    def _ponged(self, *_: object) -> None:
        # A pong, whose PongWaiter the socket answered before this handler
        # runs: the wait in ping() looks again.
        with self._changed:
            self._changed.notify_all()

    # -- on the caller's thread

    def _wait(self, ready: Callable[[], object], timeout: float | None) -> bool:
        """Waits until ``ready()``, with the condition held; False if ``timeout`` passed first."""
        return wait_in_slices(lambda seconds: bool(self._changed.wait_for(ready, seconds)), timeout)

    def _open(self) -> None:
        try:
            self.socket.active = True
            with self._changed:
                self._wait(lambda: self._opened or self._end is not None, None)
                end = self._end
        except BaseException:
            # Ctrl-C while connecting: give the attempt up.
            self._release()
            self.socket.abort()
            if self.socket._conn is not None:
                # The attempt's end is in this face's thread's queue: heard
                # there before the thread stops, it leaves the socket CLOSED.
                with self._changed:
                    self._changed.wait_for(lambda: self._end is not None, self.socket._value("close_timeout"))
            self._stop()
            raise
        if self._opened:
            return
        self._release()
        self._stop()
        assert end is not None
        raise self.socket._connect_error(f"connection closed during the opening handshake ({end[0]})")

    def send(self, message: str | Buffer | Iterable[str | Buffer], text: bool | None = None) -> None:
        """Sends a text message (a ``str``) or a binary one (any bytes-like object).

        ``text`` says which whatever the type, as the asyncio ``send()``'s:
        True sends UTF-8 bytes as text (checked: UnicodeDecodeError if they
        are not UTF-8), False a str's UTF-8 as binary.

        Returns once the message is queued; it goes out at once, from this
        thread if nothing waits ahead of it. While more than the socket's
        ``write_limit`` (32 KiB by default) waits to be written to a peer
        that reads slowly, it blocks until a quarter of that is left, as
        websockets' ``send()`` does: backpressure, so that a script that
        sends in a loop goes at the peer's pace. Ctrl-C interrupts the wait
        (the message is sent all the same). Raises ConnectionClosed (with
        the close code and reason) once the connection is over or closing,
        and TypeError for anything else.

        An iterable of fragments (all str, or all bytes-like) is sent as one
        fragmented message, as the asyncio ``send()`` does: each fragment as
        it comes, backpressure between them, and an empty frame to end it.
        Other fragmented messages (from this thread or a coroutine) wait for
        it to end. If the iterable raises, the connection is closed with
        1011 and the exception propagates.
        """
        payload = whole_message(message)
        if payload is None:
            self._send_fragments(cast("Iterable[str | Buffer]", message), text)
            return
        socket = self.socket
        try:
            waiting = socket._open_connection("send").send_message(payload, text)
        except NotOpenError:
            raise self._closed_error() from None
        if waiting > socket._value("write_limit"):
            self._drain()

    def _send_fragments(self, fragments: Iterable[str | Buffer], text: bool | None) -> None:
        """Sends ``fragments`` as one fragmented message; see :meth:`send`."""
        if isinstance(fragments, Mapping) or not isinstance(fragments, Iterable):
            raise TypeError(
                "send() takes a str, a bytes-like object, or an iterable of fragments, "
                f"not {type(fragments).__name__}"
            )
        iterator = iter(fragments)
        if text is not None:
            iterator = FragmentKind(text).iterator(iterator)
        fragment = next(iterator, None)
        if fragment is None:
            return
        socket = self.socket
        self._start_fragments()
        with socket._fragmented_message():
            conn = socket._conn
            if conn is None or socket.status is not Status.OPEN:
                raise self._closed_error()
            text = isinstance(fragment, str)
            try:
                while fragment is not None:
                    if isinstance(fragment, str) is not text:
                        raise TypeError("the fragments of one message must be all str or all bytes-like")
                    conn.send_fragment(fragment, False)
                    if conn.bytes_to_write > socket._value("write_limit"):
                        self._drain()
                    fragment = next(iterator, None)
                conn.send_fragment("" if text else b"", True)
            except NotOpenError:
                raise self._closed_error() from None

    def _start_fragments(self) -> None:
        """Waits until no other send() sends a fragmented message, and marks this one's start."""
        socket = self.socket
        waiters = socket._fragment_waiters()
        while not socket._claim_fragments():
            ended = waiters.add_event()
            try:
                # Looked at again once registered: an end in between would not set it.
                if socket._fragmenting:
                    wait_in_slices(ended.wait, None)
            finally:
                waiters.discard(ended)

    def _drain(self) -> None:
        """After a send that left more than ``write_limit`` bytes to write: waits until a quarter is left."""
        socket = self.socket
        conn = socket._conn
        if conn is None or self._thread.owns_current_thread():
            # In a handler of this socket, waiting would hold back the events it waits for.
            return
        limit = socket._value("write_limit")
        # In slices, so that Ctrl-C interrupts the wait.
        wait_in_slices(lambda seconds: conn.wait_written(limit // 4, seconds), None)

    def ping(self, payload: Buffer | str = b"", timeout: float | None = None) -> float:
        """Sends a ping and returns the seconds until its pong (websockets.sync: ``ping()``).

        ``payload`` is at most 125 bytes, bytes-like or a str sent as its
        UTF-8. Waits up to ``timeout`` seconds (None: no limit) and raises
        TimeoutError if no pong came; raises ConnectionClosed if the
        connection ends first. The pong also reaches the socket's ``pong``
        signal.
        """
        self._not_on_own_thread("ping()")
        _no_loop("ping()")
        try:
            waiter = self.socket.ping(payload)
        except NotOpenError:
            raise self._closed_error() from None
        if not waiter._went:
            # The connection is closing or over: this face's own record of its end.
            raise self._closed_error()
        with self._changed:
            if not self._wait(lambda: waiter._latency is not None or waiter._end is not None, timeout):
                raise TimeoutError(f"no pong within {timeout} s")
        latency = waiter._outcome()
        assert latency is not None
        return latency

    # As websockets.sync's: a decode without a default cannot follow timeout's.
    @overload
    def recv(self, timeout: float | None, decode: Literal[True]) -> str: ...

    @overload
    def recv(self, timeout: float | None, decode: Literal[False]) -> bytes: ...

    @overload
    def recv(self, timeout: float | None = None, *, decode: Literal[True]) -> str: ...

    @overload
    def recv(self, timeout: float | None = None, *, decode: Literal[False]) -> bytes: ...

    @overload
    def recv(self, timeout: float | None = None, decode: bool | None = None) -> str | bytes: ...

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> str | bytes:
        """Returns the next message: a ``str`` for a text message, ``bytes`` for a binary one.

        Waits up to ``timeout`` seconds (None: no limit) and raises
        TimeoutError if none came; Ctrl-C interrupts the wait. Once the
        messages that arrived are all taken and the connection is over, raises
        :class:`wsbind.ConnectionClosedOK` after a normal close (1000, 1001, 1005)
        and :class:`wsbind.ConnectionClosedError` otherwise, with the close
        code and reason, and the socket's ``error_string`` as its text if it failed.
        A socket that opens again (``auto_reconnect=True``, a new ``url``) raises
        each end (the connection's, each failed attempt's) once, then goes on
        with the next connection's messages, as the asyncio ``recv()`` does.

        ``decode``, as websockets.sync's: False gives a text message as
        bytes, its UTF-8; True gives a binary message as a str decoded from
        UTF-8. A binary message that is not UTF-8 then fails the connection
        with 1007, as websockets does, and ConnectionClosedError is raised
        from the UnicodeDecodeError once it is over.
        """
        self._not_on_own_thread("recv()")
        _no_loop("recv()")
        if self._released:
            raise self._closed_error()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # A message that is waiting, or that comes within the wait's first slice.
            message = self._inbox.get(
                timeout=WAIT_SLICE if timeout is None else max(0.0, min(timeout, WAIT_SLICE))
            )
        except queue.Empty:
            message = self._wait_for_message(None if timeout is None else timeout - WAIT_SLICE)
            if message is None:
                raise TimeoutError(f"no message within {timeout} s") from None
        if type(message) is _Ended:
            message = self._after_end(message, timeout, deadline)
        if message is _END:
            self._inbox.put(_END)  # For the other waiters, and the next call.
            raise self._closed_error()
        if self._room_wanted:
            # Room for the socket's thread, which waits for some.
            with self._changed:
                self._changed.notify_all()
        if decode is None:
            return cast("str | bytes", message)
        try:
            return decoded(cast("str | bytes", message), decode)
        except UnicodeDecodeError as e:
            self.socket.close(1007, undecodable_reason(e))
            raise self._closed_error() from e

    def _after_end(
        self, ended: _Ended, timeout: float | None, deadline: float | None
    ) -> str | bytes | object:
        """What recv() returns after taking an end, unless it raises that end.

        Each end is raised once, in order; the latest, while the socket is
        down, for every call. One already raised, taken after the socket
        opened again, is passed over for the next connection's messages.
        """
        message: str | bytes | object | None = ended
        while type(message) is _Ended:
            ended = message
            with self._changed:
                sticky = ended.number == self._ends and self._end is not None
                first = ended.number > self._raised
                self._raised = max(self._raised, ended.number)
            if sticky:
                self._inbox.put(ended)  # For the other waiters, and the next call.
            if sticky or first:
                raise ConnectionClosed.of(*ended.end)
            message = self._wait_for_message(None if deadline is None else deadline - time.monotonic())
            if message is None:
                raise TimeoutError(f"no message within {timeout} s")
        return message

    def _wait_for_message(self, timeout: float | None) -> str | bytes | object | None:
        """The next message or _END, waiting up to ``timeout`` seconds in slices; None if none came."""
        taken: list[str | bytes | object] = []

        def take(seconds: float) -> bool:
            try:
                taken.append(self._inbox.get(timeout=seconds))
            except queue.Empty:
                return False
            return True

        return taken[0] if wait_in_slices(take, timeout) else None

    def __iter__(self) -> Iterator[str | bytes]:
        """Each message in turn (``for message in ws``); ends quietly after a normal close.

        Raises :class:`wsbind.ConnectionClosedError` if the connection failed
        or closed with another code than 1000, 1001 or 1005.
        """
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes the connection and waits until it is over (C++: ``QWebSocket::close``).

        The closing handshake takes at most the socket's ``close_timeout``
        (10 s by default). Messages not taken yet are dropped, and ``recv()``
        then raises ConnectionClosed. ``code`` and ``reason`` as for
        ``WebSocket.close()``; closing again does nothing.

        Afterwards the socket's handlers run on wsbind's event thread, as
        those of any socket made in a script: it can be reopened the QML way.
        """
        self._not_on_own_thread("close()")
        _no_loop("close()")
        self.socket.close(code, reason)
        self._release()
        with self._changed:
            self._wait(lambda: self._end is not None, None)
        self._stop()

    def __enter__(self) -> SyncWebSocket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # 1011 when an exception leaves the block, as websockets closes.
        self.close(1000 if exc_type is None else 1011)

    def _release(self) -> None:
        """Holds no more messages, and lets the socket's thread go if it waits for room."""
        with self._changed:
            self._released = True
            inbox = self._inbox
            while not inbox.empty():
                inbox.get_nowait()
            inbox.put(_END)
            self._changed.notify_all()

    def _stop(self) -> None:
        """Ends the thread of a socket whose connection is over; the socket goes back to wsbind's."""
        with _live_lock:
            if self not in _live:
                return
            _live.discard(self)
        self._thread.stop()
        socket = self.socket
        socket._dispatcher = current()
        socket.text_message_received.disconnect(self._received)
        socket.binary_message_received.disconnect(self._received)
        socket.status_changed.disconnect(self._status)
        socket.pong.disconnect(self._ponged)

    def _closed_error(self) -> ConnectionClosed:
        """The exception for a connection that is over; waits for its end if it is closing."""
        with self._changed:
            # Bounded by the socket's close_timeout; but in a handler of the
            # socket's own thread, the end cannot come while it waits.
            if not self._thread.owns_current_thread():
                self._wait(lambda: self._end is not None, None)
            end = self._end
        if end is None:
            return ConnectionClosed.of(None, "", "the connection is closing")
        return ConnectionClosed.of(*end)

    def _not_on_own_thread(self, method: str) -> None:
        if self._thread.owns_current_thread():
            raise RuntimeError(
                f"{method} in a handler of this socket would wait for ever: that thread is the one "
                "that takes its messages"
            )


def _no_loop(what: str) -> None:
    # Not get_running_loop(), whose RuntimeError costs recv() 0.4 µs where no loop runs.
    if asyncio._get_running_loop() is None:
        return
    raise RuntimeError(f"{what} would block the running asyncio loop; use await wsbind.connect() there")


@atexit.register
def _at_exit() -> None:
    # The threads of faces never closed must be out of Python before the
    # interpreter finalizes; their sockets are dropped with the process.
    with _live_lock:
        faces = list(_live)
    for face in faces:
        face._release()
        face._stop()
