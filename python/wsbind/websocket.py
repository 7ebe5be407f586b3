"""``WebSocket``: a WebSocket connection as QML's ``WebSocket`` type has it."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast, overload
from urllib.parse import urlsplit

from . import _wsbind, retry
from .checks import (
    check_bool,
    check_compression,
    check_count,
    check_headers,
    check_optional_seconds,
    check_origin,
    check_proxy,
    check_seconds,
    check_size,
    check_ssl,
    check_subprotocols,
    check_time_limit,
    check_unix_socket_path,
    check_url,
)
from .dispatch import Dispatcher, EventKind, LoopDispatcher, current, handler_context
from .errors import (
    Close,
    CloseFrames,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    ConnectionEnd,
    Error,
    NotOpenError,
    connect_error,
)
from .http import HandshakeResponse, Headers, Request, opened_request
from .objects import Binding, BoundSignal, Object, Property, ReadOnly, Signal
from .status import Status
from .tls import SslConfiguration
from .waiters import LazyCoroutine, Waiters, wait_until, wake

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

    The same object is also the asyncio style's connection, as websockets
    has it (``wsbind.connect()`` and ``wsbind.serve()`` hand out such
    sockets, already OPEN)::

        await ws.send("hello")          # str: text, bytes-like: binary
        reply = await ws.recv()         # str or bytes
        async for message in ws: ...    # ends quietly on a normal close
        latency = await ws.ping()       # seconds until the pong
        await ws.close()                # waits until CLOSED

    Handlers keep seeing every message while ``recv()`` is used, and
    properties, signals and bindings keep working.
    """

    # Declarations for type checkers, written by tools/declarations.py from the properties
    # and signals below: run it after adding one (tests/test_typing.py fails until then).
    if TYPE_CHECKING:
        status: ClassVar[ReadOnly[Status]]
        error_string: ClassVar[ReadOnly[str]]
        negotiated_subprotocol: ClassVar[ReadOnly[str]]
        negotiated_extensions: ClassVar[ReadOnly[str]]
        close_code: ClassVar[ReadOnly[int | None]]
        close_reason: ClassVar[ReadOnly[str]]
        resource_name: ClassVar[ReadOnly[str]]
        peer_address: ClassVar[ReadOnly[str]]
        peer_port: ClassVar[ReadOnly[int]]
        peer_name: ClassVar[ReadOnly[str]]
        local_address: ClassVar[ReadOnly[str]]
        local_port: ClassVar[ReadOnly[int]]
        url_changed: BoundSignal[str]
        active_changed: BoundSignal[bool]
        auto_reconnect_changed: BoundSignal[bool]
        status_changed: BoundSignal[Status]
        error_string_changed: BoundSignal[str]
        requested_subprotocols_changed: BoundSignal[list[str]]
        negotiated_subprotocol_changed: BoundSignal[str]
        compression_changed: BoundSignal[str | None]
        negotiated_extensions_changed: BoundSignal[str]
        close_code_changed: BoundSignal[int | None]
        close_reason_changed: BoundSignal[str]
        ping_interval_changed: BoundSignal[float | None]
        ping_timeout_changed: BoundSignal[float | None]
        close_timeout_changed: BoundSignal[float]
        handshake_timeout_changed: BoundSignal[float | None]
        max_allowed_incoming_frame_size_changed: BoundSignal[int]
        max_allowed_incoming_message_size_changed: BoundSignal[int]
        outgoing_frame_size_changed: BoundSignal[int]
        request_headers_changed: BoundSignal[Mapping[str, str]]
        origin_changed: BoundSignal[str]
        resource_name_changed: BoundSignal[str]
        peer_address_changed: BoundSignal[str]
        peer_port_changed: BoundSignal[int]
        peer_name_changed: BoundSignal[str]
        local_address_changed: BoundSignal[str]
        local_port_changed: BoundSignal[int]
        max_queue_changed: BoundSignal[int]
        write_limit_changed: BoundSignal[int]
        ssl_configuration_changed: BoundSignal[SslConfiguration | None]
        proxy_changed: BoundSignal[str | None]
        unix_socket_path_changed: BoundSignal[str | None]

        def __init__(
            self,
            *,
            url: Binding[str] | str = ...,
            active: Binding[bool] | bool = ...,
            auto_reconnect: Binding[bool] | bool = ...,
            requested_subprotocols: Binding[list[str]] | list[str] = ...,
            compression: Binding[str | None] | str | None = ...,
            ping_interval: Binding[float | None] | float | None = ...,
            ping_timeout: Binding[float | None] | float | None = ...,
            close_timeout: Binding[float] | float = ...,
            handshake_timeout: Binding[float | None] | float | None = ...,
            max_allowed_incoming_frame_size: Binding[int] | int = ...,
            max_allowed_incoming_message_size: Binding[int] | int = ...,
            outgoing_frame_size: Binding[int] | int = ...,
            request_headers: Binding[Mapping[str, str]] | Mapping[str, str] = ...,
            origin: Binding[str] | str = ...,
            max_queue: Binding[int] | int = ...,
            write_limit: Binding[int] | int = ...,
            ssl_configuration: Binding[SslConfiguration | None] | SslConfiguration | None = ...,
            proxy: Binding[str | None] | str | None = ...,
            unix_socket_path: Binding[str | None] | str | None = ...,
            on_text_message_received: Callable[[str], object] | None = ...,
            on_binary_message_received: Callable[[bytes], object] | None = ...,
            on_text_frame_received: Callable[[str, bool], object] | None = ...,
            on_binary_frame_received: Callable[[bytes, bool], object] | None = ...,
            on_pong: Callable[[float, bytes], object] | None = ...,
            on_bytes_written: Callable[[int], object] | None = ...,
            on_bytes_to_write_changed: Callable[[int], object] | None = ...,
            on_ssl_errors: Callable[[list[str]], object] | None = ...,
            on_proxy_authentication_required: Callable[[_wsbind.ProxyAuthenticator], object] | None = ...,
            on_authentication_required: Callable[[_wsbind.Authenticator], object] | None = ...,
            on_connected: Callable[[], object] | None = ...,
            on_disconnected: Callable[[], object] | None = ...,
            on_about_to_close: Callable[[], object] | None = ...,
            on_error_occurred: Callable[[str], object] | None = ...,
            on_url_changed: Callable[[str], object] | None = ...,
            on_active_changed: Callable[[bool], object] | None = ...,
            on_auto_reconnect_changed: Callable[[bool], object] | None = ...,
            on_status_changed: Callable[[Status], object] | None = ...,
            on_error_string_changed: Callable[[str], object] | None = ...,
            on_requested_subprotocols_changed: Callable[[list[str]], object] | None = ...,
            on_negotiated_subprotocol_changed: Callable[[str], object] | None = ...,
            on_compression_changed: Callable[[str | None], object] | None = ...,
            on_negotiated_extensions_changed: Callable[[str], object] | None = ...,
            on_close_code_changed: Callable[[int | None], object] | None = ...,
            on_close_reason_changed: Callable[[str], object] | None = ...,
            on_ping_interval_changed: Callable[[float | None], object] | None = ...,
            on_ping_timeout_changed: Callable[[float | None], object] | None = ...,
            on_close_timeout_changed: Callable[[float], object] | None = ...,
            on_handshake_timeout_changed: Callable[[float | None], object] | None = ...,
            on_max_allowed_incoming_frame_size_changed: Callable[[int], object] | None = ...,
            on_max_allowed_incoming_message_size_changed: Callable[[int], object] | None = ...,
            on_outgoing_frame_size_changed: Callable[[int], object] | None = ...,
            on_request_headers_changed: Callable[[Mapping[str, str]], object] | None = ...,
            on_origin_changed: Callable[[str], object] | None = ...,
            on_resource_name_changed: Callable[[str], object] | None = ...,
            on_peer_address_changed: Callable[[str], object] | None = ...,
            on_peer_port_changed: Callable[[int], object] | None = ...,
            on_peer_name_changed: Callable[[str], object] | None = ...,
            on_local_address_changed: Callable[[str], object] | None = ...,
            on_local_port_changed: Callable[[int], object] | None = ...,
            on_max_queue_changed: Callable[[int], object] | None = ...,
            on_write_limit_changed: Callable[[int], object] | None = ...,
            on_ssl_configuration_changed: Callable[[SslConfiguration | None], object] | None = ...,
            on_proxy_changed: Callable[[str | None], object] | None = ...,
            on_unix_socket_path_changed: Callable[[str | None], object] | None = ...,
        ) -> None: ...

    # End of the declarations written by tools/declarations.py.

    # Read on every send: always stored, so that those reads need no default.
    _kept = ("status",)
    # Guards _conn against the event thread clearing it while another
    # thread decides on _reopen or _close_asked from it. One for all
    # sockets, as each hold is a few attribute reads and writes: a lock each
    # cost every idle server client 120 bytes.
    _lock = threading.Lock()
    # The last connection's latency once it is over; a class default until
    # then, so that an idle socket keeps nothing for it.
    _latency = 0.0
    # Class defaults too, for the same reason. websockets' id, made when
    # first read; a client's: the headers of the 101 its last connection
    # opened with; a server's: the name its 101 gave.
    _uuid: uuid.UUID | None = None
    _response_headers: Headers | None = None
    _server_name = ""

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
        "``wsbind.backoff()`` says (its constants are in ``wsbind.retry``): a random 0 to "
        "5 s, then 3.1 s growing by 1.618 times "
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
    compression = Property[str | None](
        "deflate",
        check=check_compression,
        doc='"deflate" offers permessage-deflate (RFC 7692) on the next open, as browsers and '
        "websockets do, and a server's socket uses it when the client offered it; None sends "
        "every message uncompressed. Messages under 128 bytes go uncompressed, but for the fragments "
        "of one ``send()``, which are one compressed stream whatever their size.",
    )
    negotiated_extensions = Property(
        "",
        read_only=True,
        doc="The extensions the server accepted, as its Sec-WebSocket-Extensions header wrote them, "
        'e.g. "permessage-deflate; server_max_window_bits=12"; "" when none (or not OPEN).',
    )
    close_code = Property[int | None](
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
    handshake_timeout = Property[float | None](
        _wsbind.HANDSHAKE_TIMEOUT,
        check=check_time_limit,
        changed="_options_changed",
        doc="Seconds the TCP connection and opening handshake may take. Default 10 "
        "(C++: ``QWebSocketServer::handshakeTimeout``, here on the client too). None, "
        "or a negative number as in Qt, for no limit (reads back None).",
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
        "client sent, a ``Headers`` looked up by name whatever its case, as HTTP reads them.",
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

    max_queue = Property(
        _wsbind.MAX_QUEUE,
        check=check_count,
        changed="_max_queue_changed",
        doc="Messages held for ``recv()`` at most before the socket stops reading, so that "
        "TCP makes the peer wait; reading resumes once ``recv()`` has left a quarter of "
        "them. A socket holds messages only once ``recv()`` or ``async for`` has been used "
        "on it, or when ``wsbind.connect()`` or ``wsbind.serve()`` made it: handlers alone "
        "hold nothing. Default 16, as websockets (websockets: ``max_queue``).",
    )
    write_limit = Property(
        _wsbind.WRITE_LIMIT,
        check=check_size,
        doc="Bytes waiting to be written above which ``await send()`` waits, without "
        "blocking the loop, until a quarter of them is left: backpressure from a peer "
        "that reads slowly. Default 32 KiB, as websockets (websockets: ``write_limit``). "
        "``send_text_message()`` and ``send_binary_message()`` never wait.",
    )

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
    unix_socket_path = Property[str | None](
        None,
        check=check_unix_socket_path,
        doc="A Unix domain socket to connect to instead of the URL's host and port, which then "
        "only name the server in the request: its Host header, and for wss:// the name its "
        "certificate must have (websockets: ``unix_connect(path=)``). No proxy is used. The "
        "next open connects there.",
    )

    text_message_received = Signal[str](
        "message", doc="A text message arrived, as ``str`` (QML: ``textMessageReceived``)."
    )
    binary_message_received = Signal[bytes](
        "message", doc="A binary message arrived, as ``bytes`` (QML: ``binaryMessageReceived``)."
    )

    text_frame_received = Signal[str, bool](
        "frame",
        "is_last_frame",
        watched="_watched",
        doc="A text frame arrived (QML: none; C++: ``textFrameReceived``). ``frame`` holds "
        "the characters complete so far: one split across frames comes with the frame that "
        "completes it.",
    )
    binary_frame_received = Signal[bytes, bool](
        "frame",
        "is_last_frame",
        watched="_watched",
        doc="A binary frame arrived (C++: ``binaryFrameReceived``).",
    )
    pong = Signal[float, bytes](
        "elapsed_ms",
        "payload",
        doc="The answer to ``ping()``, ``elapsed_ms`` after it was sent (QML/C++: ``pong``). "
        "An unsolicited pong comes with 0.",
    )
    bytes_written = Signal[int](
        "count",
        watched="_watched",
        doc="``count`` bytes of messages went out (C++: ``bytesWritten``).",
    )
    bytes_to_write_changed = Signal[int](
        "value",
        watched="_watched",
        doc="``bytes_to_write`` changed after a write; emitted while it has a handler.",
    )
    ssl_errors = Signal[list[str]](
        "errors",
        doc="The TLS handshake failed, for the reasons in ``errors`` (a list of str); the "
        "status becomes ERROR with the same words (C++: ``sslErrors``).",
    )
    proxy_authentication_required = Signal[_wsbind.ProxyAuthenticator](
        "authenticator",
        doc="The proxy answered 407: ``authenticator.set_credentials(user, password)`` tries "
        "again with them; ``authenticator.proxy`` names the proxy (C++: "
        "``proxyAuthenticationRequired``). Credentials in the proxy URL are tried first.",
    )
    authentication_required = Signal[_wsbind.Authenticator](
        "authenticator",
        doc="The server answered 401 (C++: ``authenticationRequired``, Qt 6.6): setting "
        "``authenticator.user`` and ``authenticator.password`` tries the handshake once more "
        "with them, as Basic or, where the server asks for it, Digest (RFC 7616, MD5 or "
        "SHA-256); ``authenticator.realm`` is the realm the server names. Credentials in the "
        "URL (``ws://user:pass@host/``) are sent as Basic from the first request instead. "
        'With neither, the status becomes ERROR with "handshake rejected: HTTP 401 Unauthorized".',
    )
    connected = Signal[()](doc="The opening handshake succeeded (C++: ``connected``).")
    disconnected = Signal[()](doc="A connection that was open is over (C++: ``disconnected``).")
    about_to_close = Signal[()](doc="The closing handshake starts, from either side (C++: ``aboutToClose``).")
    error_occurred = Signal[str](
        "message",
        doc="The connection failed; ``message`` is the new ``error_string`` (C++: ``errorOccurred``).",
    )

    def __init__(self, **kwargs: Any) -> None:  # type: ignore[no-redef]
        # The native connection while one is live (CONNECTING to CLOSED), else None.
        self._conn: _wsbind.Connection | None = None
        # Open again once the live connection has closed (url changed, or
        # active went False and back to True while it was closing).
        self._reopen = False
        # The connection close() was called on, from any thread, until the
        # socket's own thread has made the status CLOSING for it.
        self._close_asked: _wsbind.Connection | None = None
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
        # Where its handlers run: the context it was made in (a notebook's cell).
        self._context = handler_context()
        # Told when an accepted socket's connection is over (its server's client list).
        self._on_finished: Callable[[WebSocket], None] | None = None
        # The asyncio face. Messages held for recv(); None until recv() or
        # connect() first asks for them.
        self._inbox: Inbox | None = None
        # The future a recv() that found the inbox empty sleeps on.
        self._recv_waiter: asyncio.Future[None] | None = None
        # A recv() is waiting: a second one at the same time is an error.
        self._receiving = False
        # The connection whose reading is paused because the inbox is full.
        self._paused: _wsbind.Connection | None = None
        # A send() is sending a fragmented message: other send()s wait for its
        # end (set and cleared under _lock), woken through _fragmented.
        self._fragmenting = False
        self._fragmented: Waiters | None = None
        # The headers of the response that last refused a handshake, for the error raised.
        self._rejected_headers: list[tuple[str, str]] | None = None
        # Coroutines waiting for a connection to end (an awaited close()).
        self._ends: Waiters | None = None
        # The last connection that ended: its id, then what ConnectionClosed.of() takes.
        self._end: tuple[int, int, str, str | None, Close | None, Close | None, bool | None] | None = None
        # websockets' rcvd, sent and rcvd_then_sent of the last connection's end.
        self._close_frames: CloseFrames = (None, None, None)
        # Pings sent by ping() awaiting their pong, oldest first.
        self._pings: deque[PongWaiter] | None = None
        super().__init__(**kwargs)

    @classmethod
    def _accept(
        cls,
        dispatcher: Dispatcher,
        client: _wsbind.ClientConnected,
        on_finished: Callable[[WebSocket], None],
        limits: Mapping[str, Any],
        server_name: str,
    ) -> WebSocket:
        """The server's side of a connection that just finished its handshake.

        ``limits`` are the server's options its sockets start with (its
        incoming sizes): the socket's own properties read them, and any
        option set on the socket later is sent with them, not with the
        defaults. ``server_name`` is the name its 101 gave (``response``).
        """
        conn = client.connection
        addresses = client.addresses
        # An ordinary socket (inactive, so it opens nothing), then what differs.
        ws = cls()
        ws._dispatcher = dispatcher
        ws._conn = conn
        ws._accepted = True
        ws._was_open = True
        ws._on_finished = on_finished
        if server_name:
            ws._server_name = server_name
        # The strings most clients send alike (header names, most values,
        # the URL) are interned, so that thousands of idle sockets share one
        # copy of each; not the key, a nonce unique to each client.
        received = Headers(
            (sys.intern(name), value if name.lower() == "sec-websocket-key" else sys.intern(value))
            for name, value in client.headers
        )
        ws._preset(
            url=sys.intern(client.url),
            active=True,
            status=Status.OPEN,
            requested_subprotocols=client.requested_subprotocols,
            negotiated_subprotocol=client.negotiated_subprotocol,
            negotiated_extensions=client.extensions,
            compression="deflate" if client.extensions else None,
            resource_name=sys.intern(client.resource_name),
            request_headers=received,
            origin=received.get("Origin", ""),
            peer_address=addresses.peer_address,
            peer_port=addresses.peer_port,
            local_address=sys.intern(addresses.local_address),
            local_port=addresses.local_port,
            **limits,
        )
        dispatcher.register(conn.id, ws)
        return ws

    def __repr__(self) -> str:
        # A server's sockets share their url: the client tells them apart.
        client = f" from {self.peer_address}:{self.peer_port}" if self._accepted else ""
        return f"<WebSocket {self.url or '(no url)'} {self.status.name}{client}>"

    @property
    def bytes_to_write(self) -> int:
        """Bytes queued to be sent and not yet written (C++: ``bytesToWrite()``).

        It counts what the queue costs: each message's frames with their
        headers, and 128 bytes of bookkeeping per queued message or frame
        (pongs and our close frame too), so that the 64 MiB send limit, past
        which ``send_*`` raise :class:`BufferFullError`, bounds memory however
        small the messages. Read live from the connection;
        ``bytes_to_write_changed`` tells when it drops after a write.
        """
        conn = self._conn
        return conn.bytes_to_write if conn is not None else 0

    # -- websockets' names for what the properties hold: views, made when read

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The peer's address as ``(host, port)``, None before a connection (websockets: ``remote_address``).

        ``(ws.peer_address, ws.peer_port)`` under websockets' name. Once the
        connection is over it still names its peer, as websockets' does. An
        IPv6 peer gives these two items too, not ``getpeername()``'s four.

        websockets' ``local_address`` is ``(ws.local_address, ws.local_port)``
        here: ``local_address`` keeps Qt's meaning, the address alone, as a str.
        """
        address = self.peer_address
        return (address, self.peer_port) if address else None

    @property
    def state(self) -> Status:
        """The status as websockets' four states: ERROR reads CLOSED (websockets: ``state``).

        Its values are those of websockets' ``State``, so that
        ``ws.state == State.OPEN`` holds for either enum; ``status``, Qt's
        property, tells a failure from a close.
        """
        status = self.status
        return Status.CLOSED if status is Status.ERROR else status

    @property
    def id(self) -> uuid.UUID:
        """A random UUID that names this socket in logs (websockets: ``id``).

        Made when first read, and kept for the socket's life: a socket that
        connects again (``auto_reconnect``) keeps its id.
        """
        if self._uuid is None:
            self._uuid = uuid.uuid4()
        return self._uuid

    @property
    def response(self) -> HandshakeResponse | None:
        """The 101 that opened the connection, a :class:`wsbind.HandshakeResponse` (websockets: ``response``).

        ``status_code`` 101, ``reason_phrase`` and ``headers``: on a client's
        socket those the server sent (its ``Server``, a cookie it set), kept
        once the connection is over, until the next one opens. On a server's
        socket those it sent the client, made when read from the socket's
        properties (so, once the connection is over, without the
        subprotocol and extensions, which it no longer has). None before a
        connection opened.
        """
        if self._accepted:
            key = self.request_headers.get("Sec-WebSocket-Key")
            if key is None:
                return None
            headers = _wsbind.accept_headers(
                key, self.subprotocol, self.negotiated_extensions or None, self._server_name
            )
            return HandshakeResponse(101, "Switching Protocols", Headers(headers))
        if self._response_headers is None:
            return None
        return HandshakeResponse(101, "Switching Protocols", self._response_headers)

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server picked, None for none (websockets: ``subprotocol``).

        ``negotiated_subprotocol`` under websockets' name, with None where
        Qt's property holds "": while no subprotocol was agreed, and once
        the connection is over.
        """
        return self.negotiated_subprotocol or None

    @property
    def latency(self) -> float:
        """Seconds from the last ping answered to its pong; 0 before the first (websockets: ``latency``).

        Keepalive's pings (``ping_interval``) measure it as well as
        ``ping()``'s, so it stays current without a call. Once the
        connection is over it keeps its last value, as websockets' does.
        """
        conn = self._conn
        return conn.latency if conn is not None else self._latency

    @property
    def request(self) -> Request | None:
        """The opening handshake's request, a :class:`wsbind.Request` (websockets: ``request``).

        On a server's socket it is the client's, as ``serve(process_request=)``
        saw it: ``ws.request.path`` is the path percent-decoded, without the
        query, ``target`` the path and query as sent (``resource_name``;
        websockets' ``request.path`` is this one), ``query`` the
        query's parameters, ``headers`` every header the client sent (the
        ``Headers`` of ``request_headers``, looked up by name whatever its
        case: ``ws.request.headers["X-Token"]``), ``peer_address`` and
        ``peer_port`` the client's. Its ``method`` is "GET", ``body`` b"",
        ``params`` {} (a route's parts go to its handler as arguments), and
        ``respond()`` raises wsbind.Error: the handshake is over.

        On a client's socket it is the request it sent: ``path`` and
        ``target`` as sent, and as ``headers`` those the program gave, Origin
        (``origin``) and ``request_headers`` as they are now; not those the
        handshake writes itself (Host, Upgrade, Connection, the
        Sec-WebSocket-* ones, the URL's credentials), which websockets' has too.

        None before a connection opened. Made anew from the socket's
        properties at each read: a socket holds nothing more for it.
        """
        target = self.resource_name
        if not target:
            return None
        headers = self.request_headers
        raw = headers.raw if isinstance(headers, Headers) else tuple(headers.items())
        if self._accepted:
            return opened_request(target, raw, self.peer_address, self.peer_port)
        origin = self.origin
        if origin:
            raw = (("Origin", origin), *raw)
        # The client here is this side.
        return opened_request(target, raw, self.local_address, self.local_port)

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

    def ping(self, payload: Buffer | str = b"") -> PongWaiter:
        """Sends a ping; ``pong`` reports the answer and the round-trip time (QML/C++: ``ping``).

        ``payload`` is bytes-like, or a str sent as its UTF-8, as websockets
        does. Raises ValueError for a payload over 125 bytes (Qt clips it
        instead), and NotOpenError while the socket is CONNECTING or before it
        first tried to connect. The peer's pings are answered automatically.

        The ping leaves at once, awaited or not. What it returns may be
        awaited, as websockets' ``ping()``: ``latency = await ws.ping()``
        gives the seconds until the pong, from any loop. A pong answers its
        own ping and every earlier one; if the connection ends first, the
        await raises ConnectionClosed. So does awaiting a ping asked for once
        the connection is closing or over: none is sent then (Qt ignores it),
        as the peer may close at any moment.
        """
        if isinstance(payload, str):
            payload = payload.encode()
        try:
            key = memoryview(payload).tobytes()
        except TypeError:
            kind = type(payload).__name__
            raise TypeError(f"ping() takes a bytes-like object or a str, not {kind}") from None
        limit = _wsbind.MAX_CONTROL_PAYLOAD
        if len(key) > limit:
            raise ValueError(f"ping payload is {len(key)} bytes, over the limit of {limit}")
        conn = self._conn
        status = self._values["status"]
        sending = conn is not None and status is Status.OPEN and self._close_asked is None
        if not sending and (status is Status.CONNECTING or (conn is None and self._end is None)):
            self._open_connection("ping")  # Raises NotOpenError.
        waiter = PongWaiter(key, went=sending)
        with self._lock:  # Against _ended(), which fails the pings of a connection's end.
            end = self._end
            if end is not None and (conn is None or end[0] >= conn.id):
                waiter._fail(end[1:])
                return waiter
            # Waiting before the ping leaves: its pong may come at once, on another thread.
            pings = self._pings
            if pings is None:
                pings = self._pings = deque()
            pings.append(waiter)
        if sending:
            assert conn is not None
            try:
                conn.ping(key)
            except NotOpenError:
                waiter._went = False  # Closing on another thread just now: the end fails it.
            except BaseException:
                with self._lock:
                    pings.remove(waiter)
                raise
        return waiter

    def _connect_error(self, fallback: str) -> Exception:
        """The exception for an opening that failed: ``error_string``'s kind, the refusal's headers."""
        return connect_error(self._value("error_string") or fallback, self._rejected_headers)

    def _open_connection(self, method: str) -> _wsbind.Connection:
        conn = self._conn
        # _values, not the property: this is every send's cost, and no binding reads it here.
        status = self._values["status"]
        if conn is None or status is not Status.OPEN or self._close_asked is not None:
            # After close() on another thread the status is about to become CLOSING.
            name = "CLOSING" if status is Status.OPEN and conn is not None else status.name
            raise NotOpenError(f"{method}() needs an OPEN socket; this one is {name}")
        return conn

    def close(self, code: int = 1000, reason: str = "") -> LazyCoroutine[None]:
        """Starts the closing handshake (C++: ``QWebSocket::close``).

        ``code`` must be one that may be sent (1000-1003, 1007-1014, 3000-4999)
        and ``reason`` at most 123 bytes of UTF-8, or ValueError is raised.
        A peer that does not answer within ``close_timeout`` is dropped.
        ``active`` is left as it is; closing a socket that is not open does nothing.

        Safe from any thread: the closing handshake starts at once, and the
        status becomes CLOSING, with ``about_to_close``, on the socket's own
        thread or loop, where its handlers run (at once when that is the
        calling thread).

        What it returns may be awaited, as websockets' ``close()``:
        ``await ws.close()`` returns once the status is CLOSED (or ERROR),
        which ``close_timeout`` bounds. It never raises for the network.
        """
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"close code must be an int, not {type(code).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"close reason must be a str, not {type(reason).__name__}")
        # Whatever the status: a wrong code is the caller's mistake even on a closed socket.
        _wsbind.check_close(code, reason)
        conn = self._conn
        self._close(code, reason, reopen=False)
        return _Ending(self, conn)

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
        # The peer's answer to our close frame must be read, whatever recv() holds.
        self._resume_reading(conn)
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

    # -- the asyncio face (websockets' names)

    async def send(
        self,
        message: str | Buffer | Iterable[str | Buffer] | AsyncIterable[str | Buffer],
        text: bool | None = None,
    ) -> None:
        """Sends a message: a str as text, a bytes-like object as binary (websockets: ``send()``).

        ``text``, as websockets', says which whatever the type: True sends
        bytes that hold UTF-8 (JSON a library wrote as bytes, say) as a text
        message without decoding them (they are checked: UnicodeDecodeError
        if they are not UTF-8), False sends a str's UTF-8 as a binary one.

        Returns at once while at most ``write_limit`` bytes wait to be
        written, and otherwise waits, without blocking the loop, until the
        peer has taken enough: backpressure.

        An iterable or async iterable of fragments (all str, or all
        bytes-like) is sent as one fragmented message (RFC 6455 §5.4): each
        fragment goes out as it comes, as a frame of its own (or several,
        past ``outgoing_frame_size``), and an empty frame ends the message,
        as websockets does; where permessage-deflate was agreed the whole
        message is one compressed stream. ``text`` makes every fragment
        that kind (bytes fragments' UTF-8 may split a character).
        Backpressure applies between fragments. Other ``send()`` calls wait
        until the message is over, and messages sent meanwhile by
        ``send_text_message()`` and the like (from any thread) wait, in
        order, inside wsbind; pings and pongs do not. An empty iterable
        sends nothing. If the iterable raises, or gives a
        fragment of the other kind (TypeError), the message cannot be
        finished: the connection is closed with 1011 and the exception
        propagates.

        Raises ConnectionClosed once the connection is closing or over (after
        waiting for its end, as websockets does), NotOpenError while it is
        CONNECTING, TypeError for anything else. Safe from any loop or thread.
        """
        # whole_message() tests these two first too; tested here, the usual
        # message costs no call (asyncio pipelined rows: benches/README.md).
        payload = message if isinstance(message, (str, bytes)) else whole_message(message)
        if payload is None:
            fragments = cast("Iterable[str | Buffer] | AsyncIterable[str | Buffer]", message)
            await self._send_fragments(fragments, text)
            return
        if self._fragmenting:
            await wait_until(self._fragment_waiters(), lambda: not self._fragmenting)
        conn = self._conn
        if conn is None or self._values["status"] is not Status.OPEN or self._close_asked is not None:
            raise await self._send_error(conn)
        try:
            waiting = conn.send_message(payload, text)
        except NotOpenError:
            # The connection started closing on another thread just now.
            raise await self._send_error(conn) from None
        if waiting > self._value("write_limit"):
            await self._drain(conn)

    def _fragment_waiters(self) -> Waiters:
        waiters = self._fragmented
        if waiters is None:
            waiters = self._fragmented = Waiters()
        return waiters

    async def _send_fragments(
        self, fragments: Iterable[str | Buffer] | AsyncIterable[str | Buffer], text: bool | None
    ) -> None:
        """Sends ``fragments`` as one fragmented message, each as it comes; see :meth:`send`."""
        if isinstance(fragments, Mapping):
            raise TypeError("send() takes a str, a bytes-like object or the fragments of one, not a mapping")
        following: Callable[[], Awaitable[str | Buffer]]
        if isinstance(fragments, AsyncIterable):
            following = aiter(fragments).__anext__
        elif isinstance(fragments, Iterable):
            following = _next_of(iter(fragments))
        else:
            raise TypeError(
                "send() takes a str, a bytes-like object, or an iterable or async iterable of "
                f"fragments, not {type(fragments).__name__}"
            )
        if text is not None:
            following = FragmentKind(text).following(following)
        try:
            fragment = await following()
        except StopAsyncIteration:
            return
        await self._start_fragments()
        with self._fragmented_message():
            conn = self._conn
            if conn is None or self._values["status"] is not Status.OPEN or self._close_asked is not None:
                raise await self._send_error(conn)
            text = isinstance(fragment, str)
            try:
                while True:
                    if isinstance(fragment, str) is not text:
                        raise TypeError("the fragments of one message must be all str or all bytes-like")
                    conn.send_fragment(fragment, False)
                    if conn.bytes_to_write > self._value("write_limit"):
                        await self._drain(conn)
                    try:
                        fragment = await following()
                    except StopAsyncIteration:
                        break
                conn.send_fragment("" if text else b"", True)
            except NotOpenError:
                # The connection started closing on another thread just now.
                raise await self._send_error(conn) from None

    async def _start_fragments(self) -> None:
        """Waits until no other send() sends a fragmented message, and marks this one's start."""
        while not self._claim_fragments():
            await wait_until(self._fragment_waiters(), lambda: not self._fragmenting)

    def _claim_fragments(self) -> bool:
        """Marks the start of a fragmented message unless another is under way; whether it did.

        The blocking face's ``send()`` claims the same mark: one fragmented
        message at a time, whichever face sends it.
        """
        with self._lock:
            if self._fragmenting:
                return False
            self._fragmenting = True
            return True

    @contextlib.contextmanager
    def _fragmented_message(self) -> Iterator[None]:
        """Around the sending of a claimed fragmented message: lets the next one go at its end."""
        try:
            yield
        except (NotOpenError, ConnectionClosed):
            raise
        except BaseException:
            # Half a message was sent and the rest never will be (the
            # iterator failed, or the send() was cancelled): the connection
            # cannot carry another message. websockets does the same.
            self._close(1011, "error in fragmented message", reopen=False)
            raise
        finally:
            with self._lock:
                self._fragmenting = False
            self._fragment_waiters().wake_all()

    @overload
    async def recv(self, decode: Literal[True]) -> str: ...

    @overload
    async def recv(self, decode: Literal[False]) -> bytes: ...

    @overload
    async def recv(self, decode: bool | None = None) -> str | bytes: ...

    async def recv(self, decode: bool | None = None) -> str | bytes:
        """The next message: a str for text, bytes for binary (websockets: ``recv()``).

        Returns at once when a message is waiting, else waits for one without
        blocking the loop. Raises ConnectionClosed once the connection is
        over and every message before its end was received:
        ConnectionClosedOK after a normal close, ConnectionClosedError
        otherwise, with the socket's ``error_string`` as its message.

        ``decode``, as websockets': False gives a text message as bytes, its
        UTF-8 (for a JSON parser that takes bytes); True gives a binary
        message as a str decoded from UTF-8 (for a peer that sends text in
        binary frames). A binary message that is not UTF-8 then fails the
        connection with 1007, as websockets does, and ConnectionClosedError
        is raised from the UnicodeDecodeError once it is over.

        Cancelling it (``asyncio.timeout``, ``wait_for``) loses nothing: a
        message is taken only by the recv() that returns it. Two coroutines
        waiting in recv() at once raise ConcurrencyError. Messages are held
        from the first call on (from the start for sockets of
        ``wsbind.connect()`` and ``wsbind.serve()``), at most ``max_queue``
        before the socket stops reading; handlers see every message too.
        """
        # A message that is waiting is returned without a trip through the loop.
        message = self._take_waiting()
        if message is None:
            message = await self._wait_for_message()
        if isinstance(message, ConnectionClosed):
            raise message
        if decode is None:
            return message
        try:
            return decoded(message, decode)
        except UnicodeDecodeError as e:
            raise await self._undecodable(e) from e

    async def _undecodable(self, error: UnicodeDecodeError) -> ConnectionClosed:
        """recv(decode=True) met a binary message that is not UTF-8: closes with 1007, as websockets.

        Returns the exception of the connection's end, once it came.
        """
        await self.close(1007, undecodable_reason(error))
        # A message came, so a connection did: its end, or a later one's, is recorded now.
        end = self._end
        assert end is not None
        return ConnectionClosed.of(*end[1:])

    def __aiter__(self) -> Messages:
        """Each message, as ``recv()`` returns it (websockets: ``async for message in websocket``).

        Ends quietly when the connection closes normally (1000, 1001, 1005)
        and raises ConnectionClosedError after any other end.
        """
        return Messages(self)

    def _take_waiting(self) -> str | bytes | ConnectionClosed | None:
        """What recv() returns or raises next, if it waits already; else None."""
        inbox = self._inbox
        if not inbox or self._receiving:
            return None
        message = inbox.popleft()
        # Tested here before the call: in a pipeline nearly every message is
        # taken from a paused socket's inbox that is still well above the mark.
        if self._paused is not None and len(inbox) <= inbox.limit // 4:
            self._resume_if_low()
        return message

    async def _wait_for_message(self) -> str | bytes | ConnectionClosed:
        if self._receiving:
            raise ConcurrencyError(
                "recv() is already waiting for a message on this socket in another coroutine; "
                "two coroutines cannot receive from one socket at once"
            )
        inbox = self._inbox
        if inbox is None:
            inbox = self._hold_messages()
        if not inbox:
            self._raise_if_loop_closed()
        self._receiving = True
        try:
            if not inbox:
                self._look_before_sleeping()
            while not inbox:
                self._raise_if_over()
                waiter = asyncio.get_running_loop().create_future()
                self._recv_waiter = waiter
                try:
                    # A message held on another thread before the waiter was seen.
                    if inbox:
                        break
                    await waiter
                finally:
                    self._recv_waiter = None
            message = inbox.popleft()
        finally:
            self._receiving = False
        if self._paused is not None:
            self._resume_if_low()
        return message

    def _look_before_sleeping(self) -> None:
        """Reads the loop's sockets for up to the event spin before recv() sleeps, if the loop is idle.

        Waking a loop asleep in its selector costs as much as a loopback
        round trip: a reply that comes within the spin is delivered here, in
        order, as the loop's reader would deliver it, and recv() returns it
        without sleeping (asyncio round trips: see benches/README.md). Only
        while nothing else on the loop is ready to run, so that no other
        task waits for it; and not at all while the last looks found
        nothing in time (messages far apart), as on the event thread.
        """
        dispatcher = self._dispatcher
        if not isinstance(dispatcher, LoopDispatcher):
            return
        loop = dispatcher.loop
        # asyncio's own loops keep their ready callbacks there; others (uvloop) do not spin.
        ready = getattr(loop, "_ready", None)
        if ready is None or asyncio.get_running_loop() is not loop:
            return
        # The queue's own reader, already called for what came meanwhile, may be there alone.
        if ready and (len(ready) > 1 or getattr(ready[0], "_callback", None) != dispatcher._ready):
            return
        dispatcher.deliver_from(dispatcher.queue.look)

    def _hold_messages(self) -> Inbox:
        """From now on, messages are held for recv() as well as handed to handlers."""
        if self._inbox is None:
            self._inbox = Inbox(self._value("max_queue"))
        return self._inbox

    def _hold(self, message: str | bytes) -> None:
        """On the socket's thread: a message for recv(), and maybe a pause in reading."""
        inbox = self._inbox
        assert inbox is not None
        limit = inbox.limit
        if len(inbox) >= limit and (self._closing or self._close_asked is not None):
            # Reading goes on while we close, to hear the peer's answer; the
            # program asked to close, so what comes meanwhile beyond the
            # limit is left to handlers rather than held without bound.
            return
        inbox.append(message)
        waiter = self._recv_waiter
        if waiter is not None:
            wake(waiter)
        if len(inbox) >= limit and self._paused is None:
            self._pause_reading()

    def _pause_reading(self) -> None:
        with self._lock:
            conn = self._conn
            inbox = self._inbox
            if (
                conn is None
                or inbox is None
                or self._paused is not None
                or self._closing
                or self._close_asked is not None
                or len(inbox) < inbox.limit
            ):
                return
            self._paused = conn
            # Under the lock, so that a resume from another thread cannot overtake it.
            conn.pause_reading(True)

    def _resume_if_low(self) -> None:
        """After a recv(): reading resumes once a quarter of ``max_queue`` or less is held."""
        inbox = self._inbox
        if inbox is None or len(inbox) > inbox.limit // 4:
            return
        with self._lock:
            conn = self._paused
            if conn is None or len(inbox) > inbox.limit // 4:
                return
            self._paused = None
            conn.pause_reading(False)

    def _resume_reading(self, conn: _wsbind.Connection) -> None:
        with self._lock:
            if self._paused is conn:
                self._paused = None
                conn.pause_reading(False)

    def _max_queue_changed(self) -> None:
        inbox = self._inbox
        if inbox is None:
            return
        inbox.limit = self._value("max_queue")
        if self._paused is not None:
            self._resume_if_low()
        elif len(inbox) >= inbox.limit:
            self._pause_reading()

    def _raise_if_over(self) -> None:
        """Raises what recv() raises on a socket with no connection that could bring messages."""
        if self._values["status"] in (Status.CLOSED, Status.ERROR) and self._conn is None:
            end = self._end
            if end is None:
                raise NotOpenError("recv() needs a socket that is OPEN or CONNECTING; this one never opened")
            raise ConnectionClosed.of(*end[1:])

    async def _send_error(self, conn: _wsbind.Connection | None) -> Error:
        """What send() raises when the socket is not OPEN: the end, once it came."""
        if conn is not None and self._values["status"] is Status.CONNECTING and self._close_asked is None:
            return NotOpenError("send() needs an OPEN socket; this one is CONNECTING")
        if conn is not None:
            await self._wait_end(conn)
        end = self._end
        if end is None:
            return NotOpenError(f"send() needs an OPEN socket; this one is {self._values['status'].name}")
        return ConnectionClosed.of(*end[1:])

    async def _drain(self, conn: _wsbind.Connection) -> None:
        """Waits until ``conn`` has a quarter of ``write_limit`` or less left to write."""
        low = self._value("write_limit") // 4
        # A Rust future (the writer wakes it), not a wait for write events.
        await conn.drained(low)
        if conn.bytes_to_write > low:
            # The connection ended with this much unsent.
            raise await self._send_error(conn)

    async def wait_closed(self) -> None:
        """Returns once the connection is over, its status CLOSED or ERROR (websockets: ``wait_closed()``).

        At once if no connection is open or opening. It never raises for the
        network: ``close_code``, ``close_reason`` and ``error_string`` say
        how the connection ended. A server's handler that only keeps its
        client in a set for broadcasts awaits it, as with websockets::

            async def handler(ws):
                clients.add(ws)
                try:
                    await ws.wait_closed()
                finally:
                    clients.remove(ws)
        """
        conn = self._conn
        if conn is not None:
            await self._wait_end(conn)

    def _raise_if_loop_closed(self) -> None:
        """Raises RuntimeError if the loop this socket's events go to is closed: they never would."""
        dispatcher = self._dispatcher
        if isinstance(dispatcher, LoopDispatcher) and dispatcher.loop.is_closed():
            raise RuntimeError(
                "this socket was made on an asyncio loop that is closed now (an asyncio.run() that "
                "returned), and its events are delivered only there: make the socket in the loop "
                "that uses it"
            )

    async def _wait_end(self, conn: _wsbind.Connection) -> None:
        """Returns once ``conn`` has ended and the socket shows it (CLOSED or ERROR)."""
        if self._end is None or self._end[0] < conn.id:
            self._raise_if_loop_closed()
        ends = self._ends
        if ends is None:
            ends = self._ends = Waiters()
        # Ids grow: an end recorded for this connection or a later one means this one is over.
        await wait_until(ends, lambda: self._end is not None and self._end[0] >= conn.id)

    def _ended(self, conn_id: int, code: int, reason: str, error: str | None) -> None:
        """On the socket's thread, once a connection's end shows: tells every waiter."""
        end = (code, reason, error, *self._close_frames)
        self._end = (conn_id, *end)
        self._paused = None
        if self._inbox is not None:
            self._inbox.append(ConnectionClosed.of(*end))
            waiter = self._recv_waiter
            if waiter is not None:
                wake(waiter)
        with self._lock:  # Against ping(), which adds to them from any thread.
            pings, self._pings = self._pings, None
        for ping in pings or ():
            ping._fail(end)
        if self._ends:
            self._ends.wake_all()

    def _ponged(self, pong: _wsbind.Pong) -> None:
        """On the socket's thread: the pong of a ping() answers it and every earlier one."""
        if pong.elapsed_ms <= 0:
            return  # A pong nobody asked for.
        payload = pong.payload
        with self._lock:  # Against ping(), which adds to them from any thread.
            pings = self._pings
            assert pings is not None
            index = next((i for i, ping in enumerate(pings) if ping.payload == payload), None)
            if index is None:
                return
            answered = [pings.popleft() for _ in range(index + 1)]
        for ping in answered[:-1]:
            ping._answer(None)
        answered[-1]._answer(pong.elapsed_ms / 1000)

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
        return cast("_wsbind.Options", {name: self._value(name) for name in _OPTIONS})

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
            # QML opens nothing either; a script that forgot the URL learns
            # why. A bound url (to a server's, say) may just not be there yet.
            if "url" not in (self._bindings or ()):
                logger.warning('%r is active but its url is "": there is no URL to open', self)
            return
        self._rejected_headers = None
        conn = _wsbind.connect(
            self._dispatcher.queue,
            self.url,
            self.requested_subprotocols,
            list(self.request_headers.items()),
            self.origin,
            self._options(),
            None if self.ssl_configuration is None else self.ssl_configuration._options(client=True),
            _wsbind.environment_proxy(self.url) if self.proxy == "" else self.proxy,
            # Asked whatever handlers there are now: one connected after
            # active=True, before the 401 or 407 comes, must hear of it.
            True,
            compression=self.compression,
            ask_auth=True,
            unix_path=self.unix_socket_path,
            # Before the connection starts: its events may be taken at once.
            register=self._connecting,
        )
        self._report(conn)

    def _connecting(self, conn: _wsbind.Connection) -> None:
        """The connection exists and has not started: nothing of it can have been delivered yet."""
        self._conn = conn
        self._dispatcher.register(conn.id, self)
        self._set_status(Status.CONNECTING)

    def _set_status(self, status: Status, error: str = "") -> None:
        # Stored at once; told on this socket's thread or loop, where its
        # other handlers run: a CONNECTING set off by `active = True` on
        # another thread must not run beside a handler of the last CLOSED.
        tell = self._store_status(status, error)
        if tell is not None:
            self._dispatcher.call(tell)

    def _store_status(self, status: Status, error: str) -> Callable[[], None] | None:
        """Stores a status and its error string; returns what tells of them, None if neither changed.

        As Qt, the error string is in place before ``status_changed`` runs.
        """
        emits: list[Callable[[], None]] = []
        changed = self._write_all({"error_string": error, "status": status}, emit_on=emits.append)
        if not changed:
            return None

        def tell() -> None:
            for emit in emits:
                emit()
            if "status" in changed:
                self._status_told(status, error)

        return tell

    def _status_told(self, status: Status, error: str) -> None:
        """The signals that follow a status change: about_to_close, error_occurred."""
        if status is Status.CLOSING:
            self.about_to_close.emit()
        elif status is Status.ERROR:
            self.error_occurred.emit(error)
            if not self._error_heard():
                # A client of a server that vanished is the peer's business, and
                # would log a WARNING per closed browser tab: INFO for those.
                level = logging.INFO if self._accepted else logging.WARNING
                logger.log(level, "%s: %s", self.url or "WebSocket", error)

    def _error_heard(self) -> bool:
        """Whether a handler or a waiting coroutine learns of an ERROR; else it is logged.

        The asyncio and blocking faces (which hold messages in ``_inbox``)
        raise it from ``recv()`` instead.
        """
        signals = self.__dict__
        return self._inbox is not None or any(
            name in signals and signals[name].connected for name in ("status_changed", "error_occurred")
        )

    def _event(self, kind: int, payload: Any) -> None:
        # The messages' signals are emitted only if connected: most asyncio
        # code connects none, and a call for nothing costs every message.
        if kind == _TEXT:
            if self._inbox is not None:
                self._hold(payload)
            if self.text_message_received._handlers:
                self.text_message_received.emit(payload)
        elif kind == _BINARY:
            if self._inbox is not None:
                self._hold(payload)
            if self.binary_message_received._handlers:
                self.binary_message_received.emit(payload)
        elif kind == _TEXT_FRAME:
            self.text_frame_received.emit(payload.data, payload.last)
        elif kind == _BINARY_FRAME:
            self.binary_frame_received.emit(payload.data, payload.last)
        elif kind == _PONG:
            if self._pings:
                self._ponged(payload)
            self.pong.emit(payload.elapsed_ms, payload.payload)
        elif kind == _WRITTEN:
            self.bytes_written.emit(payload.count)
            self.bytes_to_write_changed.emit(payload.remaining)
        elif kind == _PROXY_AUTH:
            try:
                self.proxy_authentication_required.emit(payload)
            finally:
                payload.finish()
        elif kind == _AUTHENTICATE:
            try:
                self.authentication_required.emit(payload)
            finally:
                payload.finish()
        elif kind == _SSL_ERRORS:
            self.ssl_errors.emit(payload)
        elif kind == _REJECTED:
            self._rejected_headers = payload
        elif kind == _CONNECTED:
            self._connected(payload)
        elif kind == _CLOSING:
            self._set_status(Status.CLOSING)
        elif kind == _CLOSED:
            self._closed(payload.code, payload.reason, payload.error, _close_frames(payload))

    def _connected(self, connected: _wsbind.Connected) -> None:
        addresses = connected.addresses
        self._response_headers = Headers(connected.headers)
        self._write_all(
            {
                "negotiated_subprotocol": connected.subprotocol,
                "negotiated_extensions": connected.extensions,
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

    def _closed(self, code: int, reason: str, error: str | None, frames: CloseFrames) -> None:
        # A close() whose CLOSING this thread has not shown yet shows it now.
        self._closing_started()
        with self._lock:
            conn, self._conn = self._conn, None
            reopen, self._reopen = self._reopen, False
            if conn is not None:
                self._latency = conn.latency
            ended_by_program, self._ended_by_program = self._ended_by_program, False
            # Decided under the lock, where close() from another thread calls it
            # off; a handler below may call it off too.
            retry: object | None = None
            if (
                not reopen
                and not ended_by_program
                and not self._accepted
                and self._value("auto_reconnect")
                and self._value("active")
            ):
                retry = self._retry = object()
            # Stored with the end of _conn, told below in its usual place: an
            # open on another thread in between stores its CONNECTING after
            # this, which then reads as the status, as its signal says last.
            tell_status = self._store_status(Status.CLOSED if error is None else Status.ERROR, error or "")
            # Before the status is told: the blocking face reads them then.
            self._close_frames = frames
        if conn is not None:
            self._dispatcher.unregister(conn.id)
        was_open = self._was_open
        self._was_open = self._closing = False
        self._write_all(
            {
                "close_code": code,
                "close_reason": reason,
                "negotiated_subprotocol": "",
                "negotiated_extensions": "",
            }
        )
        if tell_status is not None:
            tell_status()
        self._ended(0 if conn is None else conn.id, code, reason, error)
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
            self._delays = retry.backoff()
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


# EventKind's members as plain ints for WebSocket._event, which compares
# them for every message: reading an Enum member costs about 80 ns on
# Python 3.11, reading a module's int about 15 (a tenth of a small echo).
_TEXT, _BINARY, _TEXT_FRAME, _BINARY_FRAME, _PONG, _WRITTEN = (
    int(kind)
    for kind in (
        EventKind.TEXT,
        EventKind.BINARY,
        EventKind.TEXT_FRAME,
        EventKind.BINARY_FRAME,
        EventKind.PONG,
        EventKind.WRITTEN,
    )
)
_PROXY_AUTH, _AUTHENTICATE, _SSL_ERRORS, _REJECTED, _CONNECTED, _CLOSING, _CLOSED = (
    int(kind)
    for kind in (
        EventKind.PROXY_AUTH,
        EventKind.AUTHENTICATE,
        EventKind.SSL_ERRORS,
        EventKind.REJECTED,
        EventKind.CONNECTED,
        EventKind.CLOSING,
        EventKind.CLOSED,
    )
)


class Inbox(deque[str | bytes | ConnectionClosed]):
    """The messages a socket holds for ``recv()``, oldest first, each connection's end as a
    ConnectionClosed after its last message; and ``max_queue``'s value.

    The limit is kept here, not only read from the property, because every
    message held and every recv() of a paused socket compares with it.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit


class Messages:
    """What ``async for message in ws`` iterates: each message ``recv()`` would return.

    A small async iterator of its own rather than an async generator: a
    message that waits already costs one coroutine, not a generator's step
    as well (asyncio pipelined rows: benches/README.md).
    """

    __slots__ = ("_socket",)

    def __init__(self, socket: WebSocket) -> None:
        self._socket = socket

    def __aiter__(self) -> Messages:
        return self

    async def __anext__(self) -> str | bytes:
        socket = self._socket
        message = socket._take_waiting()
        try:
            if message is None:
                message = await socket._wait_for_message()
            if isinstance(message, ConnectionClosed):
                raise message
        except ConnectionClosedOK:
            raise StopAsyncIteration from None
        return message


class PongWaiter(LazyCoroutine[float]):
    """What ``WebSocket.ping()`` returns: await it for the round-trip time in seconds.

    websockets' ``ping()`` returns such an awaitable too. Code in the QML
    style ignores it and listens to ``pong`` instead; nothing is lost either way.
    """

    __slots__ = ("_end", "_latency", "_sent", "_waiters", "_went", "payload")

    def __init__(self, payload: bytes, went: bool = True) -> None:
        self.payload = payload
        """The ping's payload, which its pong carries back."""
        # When the ping left, for a pong that answers it with a later ping's.
        self._sent = time.monotonic()
        # False for a ping asked for once the connection was closing or over:
        # nothing was sent, and only the end answers it.
        self._went = went
        # Seconds until the pong, once it came.
        self._latency: float | None = None
        # What ConnectionClosed.of() takes, if the connection ended first.
        self._end: ConnectionEnd | None = None
        self._waiters = Waiters()

    def _answer(self, latency: float | None) -> None:
        """On the socket's thread: the pong came; None measures the time here."""
        self._latency = time.monotonic() - self._sent if latency is None else latency
        self._waiters.wake_all()

    def _fail(self, end: ConnectionEnd) -> None:
        self._end = end
        self._waiters.wake_all()

    async def _wait(self) -> float:
        await wait_until(self._waiters, lambda: self._latency is not None or self._end is not None)
        latency = self._outcome()
        assert latency is not None
        return latency

    def _outcome(self) -> float | None:
        """Seconds until the pong once it came, None before; ConnectionClosed if the end came first."""
        if self._latency is not None:
            return self._latency
        if self._end is not None:
            raise ConnectionClosed.of(*self._end)
        return None


def _close_frames(closed: _wsbind.Closed) -> CloseFrames:
    """websockets' ``rcvd``, ``sent`` and ``rcvd_then_sent`` of a connection's end."""
    rcvd = None if closed.received is None else Close(*closed.received)
    sent = None if closed.sent is None else Close(*closed.sent)
    return rcvd, sent, closed.received_first if rcvd is not None and sent is not None else None


class _Ending(LazyCoroutine[None]):
    """What ``WebSocket.close()`` returns: awaited, it waits until that connection is over."""

    __slots__ = ("_conn", "_ws")

    def __init__(self, ws: WebSocket, conn: _wsbind.Connection | None) -> None:
        self._ws = ws
        self._conn = conn

    async def _wait(self) -> None:
        if self._conn is not None:
            await self._ws._wait_end(self._conn)


def whole_message(message: object) -> str | Buffer | None:
    """What ``send()`` sends as one message: a str, or a bytes-like object as a
    memoryview; None for anything else, which it takes for fragments."""
    if isinstance(message, (str, bytes, bytearray, memoryview)):
        return message
    try:
        return memoryview(cast("Buffer", message))
    except TypeError:
        return None


def decoded(message: str | bytes, decode: bool) -> str | bytes:
    """``message`` as ``recv(decode=...)`` gives it: a str if ``decode``, else bytes (a text message's UTF-8).

    Raises UnicodeDecodeError for a binary message that is not UTF-8.
    """
    if decode:
        return message if isinstance(message, str) else message.decode()
    return message.encode() if isinstance(message, str) else message


def undecodable_reason(error: UnicodeDecodeError) -> str:
    """The reason of the 1007 close after ``recv(decode=True)`` met ``error``, as websockets words it."""
    return f"{error.reason} at position {error.start}"


class FragmentKind:
    """Fragments made the kind ``send(fragments, text=)`` asks for.

    Text: all str, bytes decoded from UTF-8 as they come (a character may
    span two fragments); binary: all bytes-like, a str as its UTF-8. The
    fragments then go out as any others.
    """

    def __init__(self, text: bool) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")() if text else None

    def convert(self, fragment: str | Buffer) -> str | Buffer:
        """``fragment`` as the kind asked for."""
        if self._decoder is None:
            return fragment.encode() if isinstance(fragment, str) else fragment
        return fragment if isinstance(fragment, str) else self._decoder.decode(fragment)

    def end(self) -> None:
        """After the last fragment: raises UnicodeDecodeError if the text ends inside a character."""
        if self._decoder is not None:
            self._decoder.decode(b"", final=True)

    def iterator(self, fragments: Iterator[str | Buffer]) -> Iterator[str | Buffer]:
        """``fragments`` converted, for the blocking ``send()``."""
        for fragment in fragments:
            yield self.convert(fragment)
        self.end()

    def following(
        self, following: Callable[[], Awaitable[str | Buffer]]
    ) -> Callable[[], Awaitable[str | Buffer]]:
        """``following`` (the next fragment, StopAsyncIteration at the end) converted."""

        async def converted() -> str | Buffer:
            try:
                fragment = await following()
            except StopAsyncIteration:
                self.end()
                raise
            return self.convert(fragment)

        return converted


def _next_of(iterator: Iterator[str | Buffer]) -> Callable[[], Awaitable[str | Buffer]]:
    """``iterator``'s next item as an awaitable, ending with StopAsyncIteration as an async iterator's."""

    async def following() -> str | Buffer:
        try:
            return next(iterator)
        except StopIteration:
            raise StopAsyncIteration from None

    return following


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


def open_connections(sockets: Iterable[WebSocket]) -> tuple[list[WebSocket], list[_wsbind.Connection]]:
    """Those of ``sockets`` that have a native connection, and their connections, for a broadcast.

    The package's internal API: other modules get a socket's connection
    here, not from its private attribute, which the event thread may clear
    at any moment.
    """
    chosen = []
    connections = []
    for ws in sockets:
        conn = ws._conn
        if conn is not None:
            chosen.append(ws)
            connections.append(conn)
    return chosen, connections
