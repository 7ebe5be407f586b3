"""``WebSocket``: a WebSocket connection as QML's ``WebSocket`` type has it."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from . import _wsbind, backoff
from .checks import (
    check_bool,
    check_headers,
    check_optional_seconds,
    check_origin,
    check_proxy,
    check_seconds,
    check_size,
    check_ssl,
    check_subprotocols,
    check_url,
)
from .dispatch import Dispatcher, EventKind, LoopDispatcher, current
from .errors import Error, NotOpenError
from .objects import Object, Property, Signal
from .status import Status
from .tls import SslConfiguration

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["WebSocket"]

logger = logging.getLogger("wsbind")


class WebSocket(Object):
    """A WebSocket connection (QML: ``WebSocket``; C++: ``QWebSocket``).

    Declare it with its properties and handlers; setting ``active`` opens and
    closes it::

        ws = WebSocket(url="ws://127.0.0.1:8765", active=True,
                       on_text_message_received=print)

    A server hands out WebSockets too, through ``client_connected``: those are
    already open and active, and cannot be reopened once closed.

    Handlers run on the asyncio loop that was running where the socket was
    made, or else on wsbind's event thread; one at a time, in order.
    """

    url = Property(
        "",
        check=check_url,
        changed="_url_changed",
        doc="The ws:// or wss:// URL to connect to (QML: ``url``). Changing it while "
        "active closes the connection and opens the new URL. On a server's socket: "
        "the full request URL.",
    )
    active = Property(
        False,
        check=check_bool,
        changed="_active_changed",
        doc="True opens ``url``; False closes with 1000 (QML: ``active``). It stays "
        "True when the peer closes: set it to False and back to True to reconnect, "
        "or let ``auto_reconnect`` do it.",
    )
    auto_reconnect = Property(
        False,
        check=check_bool,
        doc="True makes a socket whose ``active`` is True open again by itself after an "
        "error or any close the program did not ask for: the peer's close, a server "
        "restart's 1001, a lost connection, a failed attempt. It waits first, as "
        "``wsbind.backoff`` says: a random 0 to 5 s, then 3.1 s growing by 1.618 times "
        "up to 90 s, starting over once a connection opens. The status goes ERROR or "
        "CLOSED, then CONNECTING and OPEN, each with its signals. ``close()``, ``abort()`` "
        "and ``active = False`` end it, even while it waits. Default False, as Qt, which "
        "never reconnects; a server's sockets never do.",
    )
    status = Property(
        Status.CLOSED,
        read_only=True,
        doc="CONNECTING, OPEN, CLOSING, CLOSED or ERROR (QML: ``status``). "
        "OPEN only once the handshake succeeded.",
    )
    error_string = Property(
        "",
        read_only=True,
        doc='Why the status is ERROR, in words; "" otherwise (QML: ``errorString``).',
    )
    requested_subprotocols = Property[list[str]](
        [],
        check=check_subprotocols,
        doc="Subprotocols to offer, in order of preference; used on the next open "
        "(QML: ``requestedSubprotocols``). On a server's socket: what the client offered.",
    )
    negotiated_subprotocol = Property(
        "",
        read_only=True,
        doc='The subprotocol the server picked while OPEN, else "" (QML: ``negotiatedSubprotocol``).',
    )
    close_code = Property(
        None,
        read_only=True,
        doc="The close code of the last connection: the peer's, or 1006 when it "
        "ended without a close frame, or the code we sent when we failed it; "
        "None before any close (C++: ``closeCode()``).",
    )
    close_reason = Property(
        "",
        read_only=True,
        doc="The close reason the peer sent with ``close_code`` (C++: ``closeReason()``).",
    )

    ping_interval = Property[float | None](
        _wsbind.PING_INTERVAL,
        check=check_optional_seconds,
        changed="_options_changed",
        doc="Seconds between keepalive pings; None sends none. Default 20, as websockets "
        "(Qt has no keepalive).",
    )
    ping_timeout = Property[float | None](
        _wsbind.PING_TIMEOUT,
        check=check_optional_seconds,
        changed="_options_changed",
        doc="Seconds a keepalive ping may wait for its pong; then the connection fails "
        'with 1011 and error_string "keepalive ping timeout". This is what notices a '
        "peer whose host vanished. None waits for ever. Default 20.",
    )
    close_timeout = Property(
        _wsbind.CLOSE_TIMEOUT,
        check=check_seconds,
        changed="_options_changed",
        doc="Seconds the closing handshake may take before the connection is dropped. Default 10.",
    )
    handshake_timeout = Property(
        _wsbind.HANDSHAKE_TIMEOUT,
        check=check_seconds,
        changed="_options_changed",
        doc="Seconds the TCP connection and opening handshake may take. Default 10 "
        "(C++: ``QWebSocketServer::handshakeTimeout``, here on the client too).",
    )
    max_allowed_incoming_frame_size = Property(
        _wsbind.MAX_INCOMING_FRAME_SIZE,
        check=check_size,
        changed="_options_changed",
        doc="Largest frame accepted, in bytes; a larger one fails the connection with "
        "1009. Default 16 MiB (C++: ``maxAllowedIncomingFrameSize``).",
    )
    max_allowed_incoming_message_size = Property(
        _wsbind.MAX_INCOMING_MESSAGE_SIZE,
        check=check_size,
        changed="_options_changed",
        doc="Largest message accepted, in bytes; a larger one fails the connection with "
        "1009. Default 64 MiB (C++: ``maxAllowedIncomingMessageSize``).",
    )
    outgoing_frame_size = Property(
        _wsbind.OUTGOING_FRAME_SIZE,
        check=check_size,
        changed="_options_changed",
        doc="Longer messages go out as continuation frames of this size. Default 512 KiB "
        "(C++: ``outgoingFrameSize``).",
    )
    request_headers = Property[Mapping[str, str]](
        {},
        check=check_headers,
        doc="Extra headers of the opening request, e.g. Authorization or Cookie; used on the "
        "next open (C++: ``QNetworkRequest`` headers). On a server's socket: the headers the "
        "client sent.",
    )
    origin = Property(
        "",
        check=check_origin,
        doc='The Origin header of the opening request; "" sends none (C++: ``origin()``). '
        "On a server's socket: the client's origin.",
    )
    resource_name = Property(
        "",
        read_only=True,
        doc="The path and query of the connection's URL (C++: ``resourceName()``).",
    )
    peer_address = Property(
        "", read_only=True, doc="The peer's IP address while connected (C++: ``peerAddress()``)."
    )
    peer_port = Property(0, read_only=True, doc="The peer's port while connected (C++: ``peerPort()``).")
    peer_name = Property(
        "",
        read_only=True,
        doc='The host name the client connected to; "" on a server\'s socket (C++: ``peerName()``).',
    )
    local_address = Property(
        "", read_only=True, doc="Our IP address on this connection (C++: ``localAddress()``)."
    )
    local_port = Property(0, read_only=True, doc="Our port on this connection (C++: ``localPort()``).")

    ssl_configuration = Property[SslConfiguration | None](
        None,
        check=check_ssl,
        doc="TLS settings for wss://: extra CAs, a client certificate, verification; None "
        "verifies the server against the system's trust store (C++: ``sslConfiguration``).",
    )

    proxy = Property[str | None](
        "",
        check=check_proxy,
        doc='The proxy to tunnel through: ``"http://[user:pass@]host:port"`` (HTTP CONNECT), '
        '``"socks5://…"``, ``"socks5h://…"`` (the proxy resolves names), or None for a direct '
        'connection. "" lets the environment decide as curl does: https_proxy for wss://, '
        "http_proxy for ws://, then all_proxy, unless no_proxy covers the host (C++: ``setProxy``).",
    )

    text_message_received = Signal(
        "message", doc="A text message arrived, as ``str`` (QML: ``textMessageReceived``)."
    )
    binary_message_received = Signal(
        "message", doc="A binary message arrived, as ``bytes`` (QML: ``binaryMessageReceived``)."
    )

    text_frame_received = Signal(
        "frame",
        "is_last_frame",
        watched="_watched",
        doc="A text frame arrived (QML: none; C++: ``textFrameReceived``). ``frame`` holds "
        "the characters complete so far: one split across frames comes with the frame that "
        "completes it.",
    )
    binary_frame_received = Signal(
        "frame",
        "is_last_frame",
        watched="_watched",
        doc="A binary frame arrived (C++: ``binaryFrameReceived``).",
    )
    pong = Signal(
        "elapsed_ms",
        "payload",
        doc="The answer to ``ping()``, ``elapsed_ms`` after it was sent (QML/C++: ``pong``). "
        "An unsolicited pong comes with 0.",
    )
    bytes_written = Signal(
        "count",
        watched="_watched",
        doc="``count`` bytes of messages went out (C++: ``bytesWritten``).",
    )
    bytes_to_write_changed = Signal(
        "value",
        watched="_watched",
        doc="``bytes_to_write`` changed after a write; emitted while it has a handler.",
    )
    ssl_errors = Signal(
        "errors",
        doc="The TLS handshake failed, for the reasons in ``errors`` (a list of str); the "
        "status becomes ERROR with the same words (C++: ``sslErrors``).",
    )
    proxy_authentication_required = Signal(
        "authenticator",
        doc="The proxy answered 407: ``authenticator.set_credentials(user, password)`` tries "
        "again with them; ``authenticator.proxy`` names the proxy (C++: "
        "``proxyAuthenticationRequired``). Credentials in the proxy URL are tried first.",
    )
    connected = Signal(doc="The opening handshake succeeded (C++: ``connected``).")
    disconnected = Signal(doc="A connection that was open is over (C++: ``disconnected``).")
    about_to_close = Signal(doc="The closing handshake starts, from either side (C++: ``aboutToClose``).")
    error_occurred = Signal(
        "message",
        doc="The connection failed; ``message`` is the new ``error_string`` (C++: ``errorOccurred``).",
    )

    if TYPE_CHECKING:
        from .objects import BoundSignal

        url_changed: BoundSignal
        active_changed: BoundSignal
        status_changed: BoundSignal
        error_string_changed: BoundSignal
        requested_subprotocols_changed: BoundSignal
        negotiated_subprotocol_changed: BoundSignal
        close_code_changed: BoundSignal
        close_reason_changed: BoundSignal

    def __init__(self, **kwargs: Any) -> None:
        # The native connection while one is live (CONNECTING to CLOSED), else None.
        self._conn: _wsbind.Connection | None = None
        # Open again once the live connection has closed (url changed, or
        # active went False and back to True while it was closing).
        self._reopen = False
        # The connection close() was called on, from any thread, until the
        # socket's own thread has made the status CLOSING for it.
        self._close_asked: _wsbind.Connection | None = None
        # Guards _conn against the event thread clearing it while another
        # thread decides on _reopen or _close_asked from it.
        self._lock = threading.Lock()
        # Handed out by a server: cannot connect anywhere by itself.
        self._accepted = False
        # False until the constructor's keywords are all applied.
        self._completed = False
        # The live connection got OPEN (so its end is a `disconnected`).
        self._was_open = False
        # A close() of the live connection has reached the socket's own thread.
        self._closing = False
        # The program ended the live connection (close(), abort(), active =
        # False, run()'s shutdown): its end is no reason to reconnect.
        self._ended_by_program = False
        # auto_reconnect's delays since the last OPEN, or None to start over.
        self._delays: Iterator[float] | None = None
        # The token of the reconnection that waits for its delay; replacing it
        # (with None) calls that reconnection off.
        self._retry: object | None = None
        self._dispatcher: Dispatcher = current()
        # Told when an accepted socket's connection is over (its server's client list).
        self._on_finished: Callable[[WebSocket], None] | None = None
        super().__init__(**kwargs)

    @classmethod
    def _accept(
        cls,
        dispatcher: Dispatcher,
        client: _wsbind.ClientConnected,
        on_finished: Callable[[WebSocket], None],
    ) -> WebSocket:
        """The server's side of a connection that just finished its handshake."""
        conn = client.connection
        addresses = client.addresses
        # An ordinary socket (inactive, so it opens nothing), then what differs.
        ws = cls()
        ws._dispatcher = dispatcher
        ws._conn = conn
        ws._accepted = True
        ws._was_open = True
        ws._on_finished = on_finished
        received: dict[str, str] = {}
        for name, value in client.headers:
            received[name] = f"{received[name]}, {value}" if name in received else value
        ws._values.update(
            url=client.url,
            active=True,
            status=Status.OPEN,
            requested_subprotocols=client.requested_subprotocols,
            negotiated_subprotocol=client.negotiated_subprotocol,
            resource_name=client.resource_name,
            request_headers=received,
            origin=next((v for k, v in received.items() if k.lower() == "origin"), ""),
            peer_address=addresses.peer_address,
            peer_port=addresses.peer_port,
            local_address=addresses.local_address,
            local_port=addresses.local_port,
        )
        dispatcher.register(conn.id, ws)
        return ws

    def __repr__(self) -> str:
        return f"<WebSocket {self.url or '(no url)'} {self.status.name}>"

    @property
    def bytes_to_write(self) -> int:
        """Message bytes queued by ``send_*`` and not yet written (C++: ``bytesToWrite()``).

        Read live from the connection; ``bytes_to_write_changed`` tells when it
        drops after a write.
        """
        conn = self._conn
        return conn.bytes_to_write if conn is not None else 0

    # -- sending

    def send_text_message(self, message: str) -> int:
        """Queues a text message; returns its size in bytes of UTF-8 (QML: ``sendTextMessage``).

        Safe from any thread; never waits for the network. Raises NotOpenError
        unless the status is OPEN, and TypeError for anything but a str.
        """
        return self._open_connection("send_text_message").send_text(message)

    def send_binary_message(self, message: Buffer) -> int:
        """Queues a binary message from any bytes-like object; returns its size (QML: ``sendBinaryMessage``).

        Safe from any thread; never waits for the network. Raises NotOpenError
        unless the status is OPEN, and TypeError for anything not bytes-like.
        """
        return self._open_connection("send_binary_message").send_binary(message)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued message has been written to the socket (C++: ``flush``).

        Returns True when nothing waits any more, False if ``timeout`` seconds
        passed first or the connection ended with data unwritten. wsbind writes
        a message as soon as it is queued, so unlike Qt's ``flush()`` this pushes
        nothing: it waits, with the GIL released, for instance before a script
        exits. It blocks the calling thread, so do not call it on an asyncio loop.
        """
        conn = self._conn
        if conn is None:
            return True
        return conn.flush(timeout)

    def ping(self, payload: Buffer = b"") -> None:
        """Sends a ping; ``pong`` reports the answer and the round-trip time (QML/C++: ``ping``).

        Raises ValueError for a payload over 125 bytes (Qt clips it instead),
        and NotOpenError unless the status is OPEN. The peer's pings are
        answered automatically.
        """
        self._open_connection("ping").ping(payload)

    def _open_connection(self, method: str) -> _wsbind.Connection:
        conn = self._conn
        # _values, not the property: this is every send's cost, and no binding reads it here.
        status = self._values["status"]
        if conn is None or status is not Status.OPEN or self._close_asked is not None:
            # After close() on another thread the status is about to become CLOSING.
            name = "CLOSING" if status is Status.OPEN and conn is not None else status.name
            raise NotOpenError(f"{method}() needs an OPEN socket; this one is {name}")
        return conn

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake (C++: ``QWebSocket::close``).

        ``code`` must be one that may be sent (1000-1003, 1007-1011, 3000-4999)
        and ``reason`` at most 123 bytes of UTF-8, or ValueError is raised.
        A peer that does not answer within ``close_timeout`` is dropped.
        ``active`` is left as it is; closing a socket that is not open does nothing.

        Safe from any thread: the closing handshake starts at once, and the
        status becomes CLOSING, with ``about_to_close``, on the socket's own
        thread or loop, where its handlers run (at once when that is the
        calling thread).
        """
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"close code must be an int, not {type(code).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"close reason must be a str, not {type(reason).__name__}")
        self._close(code, reason, reopen=False)

    def _close(self, code: int, reason: str, reopen: bool) -> None:
        with self._lock:
            # Also when there is nothing to close: a reconnection that waits is off.
            self._retry = None
            conn = self._conn
            if conn is None:
                return
            self._reopen = reopen
            ended, self._ended_by_program = self._ended_by_program, True
            earlier, self._close_asked = self._close_asked, conn
        try:
            conn.close(code, reason)
        except BaseException:
            # A code or reason that cannot be sent: nothing was asked after all.
            with self._lock:
                if self._close_asked is conn:
                    self._close_asked = earlier
                    self._ended_by_program = ended
            raise
        self._dispatcher.call(self._closing_started)

    def _closing_started(self) -> None:
        """On the socket's thread: the CLOSING that a close() from any thread sets off.

        Run once the closing handshake has started, or, if the connection's
        end arrives first, just before CLOSED, so that CLOSING never follows CLOSED.
        """
        with self._lock:
            conn, self._close_asked = self._close_asked, None
        if conn is None or conn is not self._conn:
            return
        self._closing = True
        # Closing while CONNECTING gives up the attempt: there is no closing
        # handshake to be in, and CLOSED follows.
        if self._values["status"] is Status.OPEN:
            self._set_status(Status.CLOSING)

    def ignore_ssl_errors(self) -> None:
        """Turns TLS certificate verification off for the next open (C++: ``ignoreSslErrors``).

        Anyone on the network path can then pretend to be the server, so this
        is logged as a warning every time. Meant for tests against
        self-signed certificates; prefer ``SslConfiguration(ca_certificates=...)``.
        """
        logger.warning(
            "TLS certificate verification is OFF for %s: anyone on the network path can impersonate "
            "the server",
            self.url or "this socket",
        )
        current = self.ssl_configuration or SslConfiguration()
        self.ssl_configuration = dataclasses.replace(current, peer_verify=False)

    def abort(self) -> None:
        """Drops the connection at once, without a closing handshake (C++: ``abort``).

        The status becomes CLOSED with close_code 1006, on the socket's own
        thread or loop, like every status change.
        """
        with self._lock:
            self._reopen = False
            self._retry = None
            conn = self._conn
            if conn is not None:
                self._ended_by_program = True
        if conn is not None:
            conn.abort()

    # -- QML semantics of the properties

    def _complete(self) -> None:
        self._completed = True
        if self.active:
            self._open()

    def _active_changed(self) -> None:
        if not self._completed:
            return
        if self.active:
            self._open()
        else:
            self._close(1000, "", reopen=False)

    def _url_changed(self) -> None:
        if not self._completed or not self.active:
            return
        if self._conn is None:
            self._open()
        else:
            self._close(1000, "", reopen=True)

    def _options(self) -> _wsbind.Options:
        return cast("_wsbind.Options", {name: self._values[name] for name in _OPTIONS})

    def _options_changed(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.configure(self._options())

    def _watched(self, signal: str, on: bool) -> None:
        conn = self._conn
        if conn is not None:
            self._report(conn)

    def _report(self, conn: _wsbind.Connection) -> None:
        """Asks the connection for frame and write events while somebody listens."""

        def listened(*names: str) -> bool:
            # Signals are made on first use: one never made has no handler.
            return any(name in self.__dict__ and self.__dict__[name].connected for name in names)

        conn.report_frames(listened("text_frame_received", "binary_frame_received"))
        conn.report_writes(listened("bytes_written", "bytes_to_write_changed"))

    def _open(self) -> None:
        with self._lock:
            # Opening now makes a reconnection that waits for its delay needless.
            self._retry = None
            if self._conn is not None:
                # Still closing: open once that is over.
                closing = self._values["status"] is Status.CLOSING
                self._reopen = closing or self._closing or self._close_asked is not None
                return
        if self._accepted:
            raise Error("a socket a server accepted cannot be reopened")
        if not self.url:
            return
        conn = self._conn = _wsbind.connect(
            self._dispatcher.queue,
            self.url,
            self.requested_subprotocols,
            list(self.request_headers.items()),
            self.origin,
            self._options(),
            None if self.ssl_configuration is None else self.ssl_configuration._options(client=True),
            _wsbind.environment_proxy(self.url) if self.proxy == "" else self.proxy,
            self.proxy_authentication_required.connected,
            # Before connect() returns: its events may be taken at once.
            register=lambda native_id: self._dispatcher.register(native_id, self),
        )
        self._report(conn)
        self._set_status(Status.CONNECTING)

    def _set_status(self, status: Status, error: str = "") -> None:
        # As Qt: the error string is in place before status_changed runs.
        if "status" not in self._write_all({"error_string": error, "status": status}):
            return
        if status is Status.CLOSING:
            self.about_to_close.emit()
        elif status is Status.ERROR:
            self.error_occurred.emit(error)

    def _event(self, kind: int, payload: Any) -> None:
        if kind == EventKind.TEXT:
            self.text_message_received.emit(payload)
        elif kind == EventKind.BINARY:
            self.binary_message_received.emit(payload)
        elif kind == EventKind.TEXT_FRAME:
            self.text_frame_received.emit(payload.data, payload.last)
        elif kind == EventKind.BINARY_FRAME:
            self.binary_frame_received.emit(payload.data, payload.last)
        elif kind == EventKind.PONG:
            self.pong.emit(payload.elapsed_ms, payload.payload)
        elif kind == EventKind.WRITTEN:
            self.bytes_written.emit(payload.count)
            self.bytes_to_write_changed.emit(payload.remaining)
        elif kind == EventKind.PROXY_AUTH:
            try:
                self.proxy_authentication_required.emit(payload)
            finally:
                payload.finish()
        elif kind == EventKind.SSL_ERRORS:
            self.ssl_errors.emit(payload)
        elif kind == EventKind.CONNECTED:
            self._connected(payload)
        elif kind == EventKind.CLOSING:
            self._set_status(Status.CLOSING)
        elif kind == EventKind.CLOSED:
            self._closed(payload.code, payload.reason, payload.error)

    def _connected(self, connected: _wsbind.Connected) -> None:
        addresses = connected.addresses
        self._write_all(
            {
                "negotiated_subprotocol": connected.subprotocol,
                "resource_name": connected.resource_name,
                "peer_name": urlsplit(self.url).hostname or "",
                "peer_address": addresses.peer_address,
                "peer_port": addresses.peer_port,
                "local_address": addresses.local_address,
                "local_port": addresses.local_port,
            }
        )
        self._was_open = True
        # auto_reconnect's next failure waits as briefly as its first.
        self._delays = None
        self._set_status(Status.OPEN)
        self.connected.emit()

    def _closed(self, code: int, reason: str, error: str | None) -> None:
        # A close() whose CLOSING this thread has not shown yet shows it now.
        self._closing_started()
        with self._lock:
            conn, self._conn = self._conn, None
            reopen, self._reopen = self._reopen, False
            ended_by_program, self._ended_by_program = self._ended_by_program, False
            # Decided under the lock, where close() from another thread calls it
            # off; a handler below may call it off too.
            retry: object | None = None
            if (
                not reopen
                and not ended_by_program
                and not self._accepted
                and self._values["auto_reconnect"]
                and self._values["active"]
            ):
                retry = self._retry = object()
        if conn is not None:
            self._dispatcher.unregister(conn.id)
        was_open = self._was_open
        self._was_open = self._closing = False
        self._write_all({"close_code": code, "close_reason": reason, "negotiated_subprotocol": ""})
        if error is None:
            self._set_status(Status.CLOSED)
        else:
            self._set_status(Status.ERROR, error)
        if was_open:
            self.disconnected.emit()
        if self._on_finished is not None:
            self._on_finished(self)
        if reopen and self.active:
            self._open()
        elif retry is not None and self._retry is retry:
            self._reconnect_later(retry)

    def _reconnect_later(self, token: object) -> None:
        """auto_reconnect: opens again after the schedule's next delay, on this socket's thread or loop."""
        if self._delays is None:
            self._delays = backoff.delays()
        delay = next(self._delays)

        def attempt() -> None:
            with self._lock:
                if self._retry is not token:
                    return
                self._retry = None
            if self.active and self.auto_reconnect and self._conn is None:
                self._open()

        logger.info("%s: reconnecting in %.2f s", self.url, delay)
        _call_later(self._dispatcher, delay, attempt)

    def _shutdown(self) -> None:
        with self._lock:
            self._retry = None
            conn = self._conn
            if conn is not None:
                self._ended_by_program = True
        if conn is not None:
            conn.close(1001, "")


def _call_later(dispatcher: Dispatcher, delay: float, fn: Callable[[], None]) -> None:
    """Runs ``fn`` on ``dispatcher``'s thread or loop once ``delay`` seconds have passed."""
    if isinstance(dispatcher, LoopDispatcher):
        # Called while that loop handles an event, as loop.call_later must be.
        dispatcher.loop.call_later(delay, fn)
        return
    # A thread that sleeps, then hands fn over as a close() from another thread is.
    timer = threading.Timer(delay, dispatcher.call, (fn,))
    timer.name = "wsbind-reconnect"
    # A reconnection that waits never keeps the program from exiting.
    timer.daemon = True
    timer.start()


# The properties the native connection applies, by name.
_OPTIONS = (
    "max_allowed_incoming_frame_size",
    "max_allowed_incoming_message_size",
    "outgoing_frame_size",
    "ping_interval",
    "ping_timeout",
    "close_timeout",
    "handshake_timeout",
)


def open_connections(sockets: Iterable[WebSocket]) -> list[_wsbind.Connection]:
    """The native connections of those of ``sockets`` that have one, for a broadcast.

    The package's internal API: other modules get a socket's connection
    here, not from its private attribute, which the event thread may clear
    at any moment.
    """
    connections = []
    for ws in sockets:
        conn = ws._conn
        if conn is not None:
            connections.append(conn)
    return connections
