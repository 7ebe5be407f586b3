"""``WebSocketServer``: a WebSocket server as QML's ``WebSocketServer`` type has it."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from . import _wsbind
from .broker import BrokerState, check_broker, check_group, check_namespace
from .checks import (
    check_bool,
    check_compression,
    check_header_value,
    check_origin,
    check_size,
    check_ssl,
    check_subprotocols,
    check_time_limit,
    check_unix_socket_path,
)
from .dispatch import Dispatcher, EventKind, LoopDispatcher, current, handler_context
from .errors import ConnectionClosedOK
from .http import Request, Response
from .objects import Binding, BoundSignal, Object, Property, ReadOnly, Signal
from .routes import Routes
from .tls import SslConfiguration
from .waiters import LazyCoroutine, Waiters, wait_until
from .websocket import _OPTIONS, WebSocket

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["WebSocketServer"]

logger = logging.getLogger("wsbind")

F = TypeVar("F", bound=Callable[..., Any])


def check_host(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"host must be a str, not {type(value).__name__}")
    return value


def check_port(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"port must be an int, not {type(value).__name__}")
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be 0 to 65535, not {value}")
    return value


def check_name(value: Any) -> str:
    """Accepts what can be sent as the ``Server`` header: "" sends none."""
    return check_header_value(value, "name")


def check_pending(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"max_pending_connections must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"max_pending_connections must be at least 1, not {value}")
    return value


def check_backlog(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"listen_backlog_size must be an int, not {type(value).__name__}")
    if not 1 <= value <= 65535:
        raise ValueError(f"listen_backlog_size must be 1 to 65535, not {value}")
    return value


def check_origins(value: Any) -> list[str | re.Pattern[str]] | None:
    """Accepts None (any origin) or a list of origins such as "https://example.com" and
    compiled patterns of str such as ``re.compile(r"https://[a-z]+\\.example\\.com")``."""
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"allowed_origins must be a list of str and re.Pattern, or None, not {type(value).__name__}"
        )
    checked: list[str | re.Pattern[str]] = []
    for origin in value:
        if isinstance(origin, re.Pattern):
            if not isinstance(origin.pattern, str):
                raise TypeError("allowed_origins takes patterns of str, not of bytes")
            checked.append(origin)
        else:
            checked.append(check_origin(origin))
    return checked


def origin_matches(origin: str, allowed: list[str | re.Pattern[str]]) -> bool:
    """Whether ``origin`` is one of ``allowed`` or matches one of its patterns whole."""
    return any(origin == a if isinstance(a, str) else a.fullmatch(origin) for a in allowed)


def check_pem(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected PEM text or the path of a PEM file, not {type(value).__name__}")
    return value


def check_static_dir(value: Any) -> str | None:
    """Accepts None or the path (str or path-like) of an existing folder; stores its absolute path."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"static_dir must be a path or None, not {type(value).__name__}")
    path = Path(value).absolute()
    if not path.is_dir():
        raise ValueError(f"static_dir {str(path)!r} is not a folder")
    return str(path)


def server_url(host: str, port: int, secure: bool = False) -> str:
    # A wildcard address is reached through loopback, as Qt shows it.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'wss' if secure else 'ws'}://{host}:{port}"


# The server's limits its sockets start with, as their own properties.
_SOCKET_LIMITS = ("max_allowed_incoming_frame_size", "max_allowed_incoming_message_size")
# The options of its sockets that a server sets itself, before their first byte.
_SERVER_OPTIONS = ("handshake_timeout", *_SOCKET_LIMITS)
# Seconds a two-argument process_request's attributes wait for the socket of
# their handshake: far longer than a handshake takes (handshake_timeout, 10 s).
_CARRIED_FOR = 60.0


class WebSocketServer(Object):
    """A WebSocket server (QML: ``WebSocketServer``; C++: ``QWebSocketServer``).

    ::

        server = WebSocketServer(listen=True)
        @server.client_connected.connect
        def greet(ws):
            ws.send_text_message("hello")

    ``port`` 0 lets the system pick a free port; once listening, ``port`` and
    ``url`` hold the real values. Whatever one client sends, the server keeps
    serving the others.

    In the asyncio style, ``wsbind.serve(handler, host, port)`` makes one and
    runs ``handler(ws)`` for each client; ``serve_forever()``, ``close()``
    and ``wait_closed()`` are awaitable, as websockets' server has them.
    """

    # Declarations for type checkers, written by tools/declarations.py from the properties
    # and signals below: run it after adding one (tests/test_typing.py fails until then).
    if TYPE_CHECKING:
        url: ClassVar[ReadOnly[str]]
        error_string: ClassVar[ReadOnly[str]]
        clients: ClassVar[ReadOnly[list[WebSocket]]]
        client_count: ClassVar[ReadOnly[int]]
        groups: ClassVar[ReadOnly[tuple[str, ...]]]
        broker_state: ClassVar[ReadOnly[BrokerState]]
        host_changed: BoundSignal[str]
        port_changed: BoundSignal[int]
        listen_changed: BoundSignal[bool]
        accept_changed: BoundSignal[bool]
        name_changed: BoundSignal[str]
        url_changed: BoundSignal[str]
        error_string_changed: BoundSignal[str]
        supported_subprotocols_changed: BoundSignal[list[str]]
        handshake_timeout_changed: BoundSignal[float | None]
        max_pending_connections_changed: BoundSignal[int]
        listen_backlog_size_changed: BoundSignal[int]
        compression_changed: BoundSignal[str | None]
        max_allowed_incoming_frame_size_changed: BoundSignal[int]
        max_allowed_incoming_message_size_changed: BoundSignal[int]
        allowed_origins_changed: BoundSignal[list[str | re.Pattern[str]] | None]
        clients_changed: BoundSignal[list[WebSocket]]
        client_count_changed: BoundSignal[int]
        static_dir_changed: BoundSignal[str | None]
        max_file_size_changed: BoundSignal[int]
        groups_changed: BoundSignal[tuple[str, ...]]
        unix_socket_path_changed: BoundSignal[str | None]
        reuse_port_changed: BoundSignal[bool]
        broker_changed: BoundSignal[str]
        broker_namespace_changed: BoundSignal[str]
        broker_state_changed: BoundSignal[BrokerState]
        secure_mode_changed: BoundSignal[bool]
        certificate_changed: BoundSignal[str]
        private_key_changed: BoundSignal[str]
        ssl_configuration_changed: BoundSignal[SslConfiguration | None]

        def __init__(
            self,
            *,
            host: Binding[str] | str = ...,
            port: Binding[int] | int = ...,
            listen: Binding[bool] | bool = ...,
            accept: Binding[bool] | bool = ...,
            name: Binding[str] | str = ...,
            supported_subprotocols: Binding[list[str]] | list[str] = ...,
            handshake_timeout: Binding[float | None] | float | None = ...,
            max_pending_connections: Binding[int] | int = ...,
            listen_backlog_size: Binding[int] | int = ...,
            compression: Binding[str | None] | str | None = ...,
            max_allowed_incoming_frame_size: Binding[int] | int = ...,
            max_allowed_incoming_message_size: Binding[int] | int = ...,
            allowed_origins: Binding[list[str | re.Pattern[str]] | None]
            | list[str | re.Pattern[str]]
            | None = ...,
            static_dir: Binding[str | None] | str | None = ...,
            max_file_size: Binding[int] | int = ...,
            unix_socket_path: Binding[str | None] | str | None = ...,
            reuse_port: Binding[bool] | bool = ...,
            broker: Binding[str] | str = ...,
            broker_namespace: Binding[str] | str = ...,
            secure_mode: Binding[bool] | bool = ...,
            certificate: Binding[str] | str = ...,
            private_key: Binding[str] | str = ...,
            ssl_configuration: Binding[SslConfiguration | None] | SslConfiguration | None = ...,
            on_client_connected: Callable[[WebSocket], object] | None = ...,
            on_new_connection: Callable[[], object] | None = ...,
            on_accept_error: Callable[[str], object] | None = ...,
            on_server_error: Callable[[int], object] | None = ...,
            on_ssl_errors: Callable[[list[str]], object] | None = ...,
            on_peer_verify_error: Callable[[str], object] | None = ...,
            on_closed: Callable[[], object] | None = ...,
            on_members_changed: Callable[[str], object] | None = ...,
            on_origin_authentication_required: Callable[[_wsbind.OriginAuthenticator], object] | None = ...,
            on_http_request: Callable[[Request], object] | None = ...,
            on_host_changed: Callable[[str], object] | None = ...,
            on_port_changed: Callable[[int], object] | None = ...,
            on_listen_changed: Callable[[bool], object] | None = ...,
            on_accept_changed: Callable[[bool], object] | None = ...,
            on_name_changed: Callable[[str], object] | None = ...,
            on_url_changed: Callable[[str], object] | None = ...,
            on_error_string_changed: Callable[[str], object] | None = ...,
            on_supported_subprotocols_changed: Callable[[list[str]], object] | None = ...,
            on_handshake_timeout_changed: Callable[[float | None], object] | None = ...,
            on_max_pending_connections_changed: Callable[[int], object] | None = ...,
            on_listen_backlog_size_changed: Callable[[int], object] | None = ...,
            on_compression_changed: Callable[[str | None], object] | None = ...,
            on_max_allowed_incoming_frame_size_changed: Callable[[int], object] | None = ...,
            on_max_allowed_incoming_message_size_changed: Callable[[int], object] | None = ...,
            on_allowed_origins_changed: Callable[[list[str | re.Pattern[str]] | None], object] | None = ...,
            on_clients_changed: Callable[[list[WebSocket]], object] | None = ...,
            on_client_count_changed: Callable[[int], object] | None = ...,
            on_static_dir_changed: Callable[[str | None], object] | None = ...,
            on_max_file_size_changed: Callable[[int], object] | None = ...,
            on_groups_changed: Callable[[tuple[str, ...]], object] | None = ...,
            on_unix_socket_path_changed: Callable[[str | None], object] | None = ...,
            on_reuse_port_changed: Callable[[bool], object] | None = ...,
            on_broker_changed: Callable[[str], object] | None = ...,
            on_broker_namespace_changed: Callable[[str], object] | None = ...,
            on_broker_state_changed: Callable[[BrokerState], object] | None = ...,
            on_secure_mode_changed: Callable[[bool], object] | None = ...,
            on_certificate_changed: Callable[[str], object] | None = ...,
            on_private_key_changed: Callable[[str], object] | None = ...,
            on_ssl_configuration_changed: Callable[[SslConfiguration | None], object] | None = ...,
        ) -> None: ...

    # End of the declarations written by tools/declarations.py.

    host = Property(
        "127.0.0.1",
        check=check_host,
        changed="_relisten",
        doc='The address to listen on, "" for every interface, IPv4 and IPv6 (QML: ``host``); '
        "changing it while listening listens anew.",
    )
    port = Property(
        0,
        check=check_port,
        changed="_relisten",
        doc="The port to listen on; 0 picks a free one, and the real port is "
        "stored once listening (QML: ``port``).",
    )
    listen = Property(
        False,
        check=check_bool,
        changed="_listen_changed",
        doc="True listens; False stops and closes every client with 1001 (QML: ``listen``).",
    )
    accept = Property(
        True,
        check=check_bool,
        changed="_accept_changed",
        doc="False pauses accepting new connections; they wait in the system's "
        "backlog (QML: ``accept``; C++: ``pauseAccepting()``).",
    )
    name = Property(
        "",
        check=check_name,
        changed="_name_changed",
        doc='Sent to clients as the HTTP ``Server`` header; "" sends none (QML: ``name``).',
    )
    url = Property(
        "",
        read_only=True,
        doc="``ws://host:port`` once listening (``ws+unix:///path`` on a ``unix_socket_path``), "
        'else "" (QML: ``url``).',
    )
    error_string = Property(
        "",
        read_only=True,
        doc='Why listening failed, e.g. the address is in use; "" otherwise (QML: ``errorString``).',
    )
    supported_subprotocols = Property[list[str]](
        [],
        check=check_subprotocols,
        changed="_subprotocols_changed",
        doc="Subprotocols the server speaks; it picks the client's first preference "
        "among them (QML: ``supportedSubprotocols``).",
    )

    handshake_timeout = Property[float | None](
        _wsbind.HANDSHAKE_TIMEOUT,
        check=check_time_limit,
        changed="_limits_changed",
        doc="Seconds a client may take over its opening handshake; then it is dropped. "
        "Default 10, as Qt (C++: ``handshakeTimeout``). None, or a negative number as "
        "in Qt, for no limit (reads back None): clients that stall then hold their "
        "place among ``max_pending_connections``.",
    )
    max_pending_connections = Property(
        _wsbind.MAX_PENDING_CONNECTIONS,
        check=check_pending,
        changed="_limits_changed",
        doc="Connections that finished their handshake but that the server has not handed "
        "to ``client_connected`` yet (its thread is busy); over it a new client waits up to "
        "5 s for a place (a burst of clients is served, not refused), then gets HTTP 503 "
        "and ``server_error(1006)``. "
        "Default 30, as Qt (C++: ``maxPendingConnections``).",
    )
    listen_backlog_size = Property(
        _wsbind.LISTEN_BACKLOG,
        check=check_backlog,
        doc="Connections the kernel queues before the server accepts them; past it new "
        "clients wait for their kernel's retry, a second later. Default 1024 (Qt's is 50); "
        "the kernel caps it at ``net.core.somaxconn``. A change applies at the next "
        "``listen`` (C++: QTcpServer ``listenBacklogSize``).",
    )
    compression = Property[str | None](
        "deflate",
        check=check_compression,
        changed="_compression_changed",
        doc='"deflate" accepts permessage-deflate (RFC 7692) from clients that offer it, as '
        "websockets' server does; None sends and receives every message uncompressed. A "
        "socket's ``negotiated_extensions`` says what its handshake agreed.",
    )
    max_allowed_incoming_frame_size = Property(
        _wsbind.MAX_INCOMING_FRAME_SIZE,
        check=check_size,
        changed="_limits_changed",
        doc="Largest frame the server's sockets accept, in bytes, from their first byte (after "
        "decompression); a larger one fails the connection with 1009. Default 16 MiB; each "
        "socket's own property can change it later (C++: ``maxAllowedIncomingFrameSize``).",
    )
    max_allowed_incoming_message_size = Property(
        _wsbind.MAX_INCOMING_MESSAGE_SIZE,
        check=check_size,
        changed="_limits_changed",
        doc="Largest message the server's sockets accept, in bytes, from their first byte "
        "(after decompression: a small compressed message that inflates past it fails with "
        "1009). Default 64 MiB (C++: ``maxAllowedIncomingMessageSize``).",
    )
    allowed_origins = Property[list[str | re.Pattern[str]] | None](
        None,
        check=check_origins,
        changed="_origins_changed",
        doc='Origins allowed to connect, e.g. ``["https://example.com"]``; None allows any. '
        "Others get HTTP 403 and ``server_error(1008)``. Compiled patterns may stand among "
        'them, as in websockets\' ``origins``: ``re.compile(r"https://[a-z]+\\.example\\.com")`` '
        "lets in an origin it matches whole. With a pattern, each handshake asks Python.",
    )
    clients = Property[list[WebSocket]](
        [],
        read_only=True,
        doc="The server's open sockets, in the order they connected.",
    )
    client_count = Property(
        0,
        read_only=True,
        doc="How many sockets are open: ``len(clients)``, with a change signal to bind to.",
    )
    static_dir = Property[str | None](
        None,
        check=check_static_dir,
        changed="_http_changed",
        doc="A folder whose files GET requests get, on the server's own port: ``index.html`` for "
        "a folder, content types by extension, nothing outside the folder (``..``, encoded "
        "separators and symbolic links leading out get 400 or 404), at most ``max_file_size`` "
        "bytes a file. Handlers and routes answer first. None serves no files.",
    )
    max_file_size = Property(
        _wsbind.MAX_FILE_SIZE,
        check=check_size,
        changed="_http_changed",
        doc="Largest file an HTTP response carries, from ``static_dir`` or a Response's path; a "
        "larger one gets 500. Files are read whole, off the server's thread. Default 8 MiB.",
    )
    groups = Property[tuple[str, ...]](
        (),
        read_only=True,
        doc="The names of the groups that have members here, in the order they were made: a "
        "group exists from its first :meth:`join` to its last :meth:`leave` (or close). Qt "
        "has no groups.",
    )
    unix_socket_path = Property[str | None](
        None,
        check=check_unix_socket_path,
        changed="_relisten",
        doc="A Unix domain socket to listen on instead of ``host`` and ``port`` (websockets: "
        "``unix_serve(path=)``), for a proxy on the same machine (nginx's ``proxy_pass "
        "http://unix:/run/app.sock``). A socket file nobody listens on any more is replaced, "
        "and the server removes its file when it stops; ``url`` is then "
        "``ws+unix:///absolute/path``, ``port`` 0, and the sockets have no peer address. "
        "Changing it while listening listens anew.",
    )
    reuse_port = Property(
        False,
        check=check_bool,
        doc="True listens with SO_REUSEPORT: several processes that all set it listen on one "
        "port, and the kernel spreads new connections over them, so a server of several "
        "processes on one host needs no balancer. A change applies at the next ``listen``.",
    )
    broker = Property(
        "",
        check=check_broker,
        changed="_broker_changed",
        doc='A Redis URL ("redis://host:6379/0", "rediss://" for TLS) that carries group '
        "broadcasts to every server process attached to it, and theirs to this one's members; "
        '"" for none. Delivery is at most once (see :mod:`wsbind.broker`).',
    )
    broker_namespace = Property(
        "wsbind",
        check=check_namespace,
        changed="_broker_changed",
        doc="The prefix of the broker's channels: a group's channel is ``<namespace>:<group>``. "
        "Servers with different namespaces share a Redis without hearing each other.",
    )
    broker_state = Property(
        BrokerState.DISCONNECTED,
        read_only=True,
        doc="Where the connection to ``broker`` stands: a :class:`~wsbind.BrokerState`. On "
        "ERROR, ``error_string`` says why, broadcasts still reach this process's members, and "
        "the server connects again, then subscribes to every group it has members in.",
    )

    secure_mode = Property(
        False,
        check=check_bool,
        changed="_relisten",
        doc="True serves wss:// with ``certificate`` and ``private_key`` (C++: "
        "``QWebSocketServer::SecureMode``); ``url`` then starts with wss://.",
    )
    certificate = Property(
        "",
        check=check_pem,
        changed="_certificate_changed",
        doc="The server's certificate chain, PEM text or a PEM file's path. Replacing it "
        "(with ``private_key``) while listening serves the new one to new connections, "
        "no restart (C++: ``sslConfiguration().localCertificate()``).",
    )
    private_key = Property(
        "",
        check=check_pem,
        changed="_certificate_changed",
        doc="The key of ``certificate``, PEM text or a PEM file's path (C++: "
        "``sslConfiguration().privateKey()``).",
    )
    ssl_configuration = Property[SslConfiguration | None](
        None,
        check=check_ssl,
        changed="_relisten",
        doc="Client certificates: ``SslConfiguration(ca_certificates=[...], peer_verify=True)`` "
        "requires each client to present one signed by those CAs (C++: ``sslConfiguration``).",
    )

    client_connected = Signal[WebSocket](
        "web_socket",
        doc="A client finished its handshake; the argument is an OPEN, active "
        ":class:`WebSocket` (QML: ``clientConnected``).",
    )

    new_connection = Signal[()](
        doc="A client finished its handshake; emitted just before ``client_connected`` "
        "(C++: ``newConnection``).",
    )
    accept_error = Signal[str](
        "message",
        doc="Accepting a connection failed, e.g. out of file descriptors; the server goes "
        "on (C++: ``acceptError``).",
    )
    server_error = Signal[int](
        "close_code",
        doc="A client was refused: 1008 for its origin, 1006 over "
        "``max_pending_connections`` (C++: ``serverError``).",
    )
    ssl_errors = Signal[list[str]](
        "errors",
        doc="A client's TLS handshake failed, for the reasons in ``errors``; only that "
        "client is affected (C++: ``sslErrors``).",
    )
    peer_verify_error = Signal[str](
        "message",
        doc="A client's certificate did not verify, or another TLS failure of one client "
        "(C++: ``peerVerifyError``).",
    )
    closed = Signal[()](doc="The server stopped listening (C++: ``closed``).")
    members_changed = Signal[str](
        "group",
        doc="A socket joined or left ``group`` (or closed while in it); :meth:`members` has "
        "the new members. Emitted on the server's thread: joins made together from another "
        "thread may be told in one emission.",
    )
    origin_authentication_required = Signal[_wsbind.OriginAuthenticator](
        "authenticator",
        watched="_watched",
        doc="A client's handshake asks to be allowed: ``authenticator.origin`` is its "
        "Origin, and ``authenticator.set_allowed(False)`` refuses it with HTTP 403 "
        "(C++: ``originAuthenticationRequired``). With no handler, every origin "
        "``allowed_origins`` lets through may connect.",
    )

    http_request = Signal[Request](
        "request",
        watched="_http_watched",
        doc="An HTTP request came to the server's port: a :class:`~wsbind.Request`, which a "
        "handler answers with ``request.respond(...)``. Upgrade requests (``request.upgrade``) "
        "come too, before their handshake: a response refuses the WebSocket (a 401, a "
        "redirect). Unanswered, a request goes on to the routes, ``static_dir``, and then 404; "
        "an upgrade to its handshake. With no handler, route or folder, a plain GET gets 426 as "
        "before. Qt has no such signal.",
    )

    def __init__(self, **kwargs: Any) -> None:  # type: ignore[no-redef]
        # The native server while listening, else None.
        self._server: _wsbind.Server | None = None
        # A socket bound ahead (wsbind.serve() binds without blocking its
        # loop), for the next start to serve on.
        self._listener: _wsbind.Listener | None = None
        self._completed = False
        # Set when wsbind.run() ends: the native server stops, the object stays as it was.
        self._shutting_down = False
        self._dispatcher: Dispatcher = current()
        # The tasks of wsbind.serve()'s handler that have not returned yet.
        self._handlers: set[asyncio.Task[None]] = set()
        # Coroutines waiting for the server to stop, its clients to close or
        # its handlers to return; woken at each of these.
        self._changes = Waiters()
        # Handlers of WebSocket clients by path, and of HTTP requests.
        self._routes = Routes()
        self._http_routes = Routes()
        # wsbind.serve()'s handler: clients no route takes go to it.
        self._fallback: Callable[[WebSocket], Awaitable[object]] | None = None
        # wsbind.serve()'s process_request, first to see every request.
        self._process_request: Callable[[Request], Any] | None = None
        # wsbind.serve()'s options for each socket it accepts (keepalive, queues).
        self._socket_properties: dict[str, Any] = {}
        # What a two-argument process_request set on its connection, by the
        # native connection's id, for the socket its handshake opens; and when.
        self._carried: dict[int, tuple[float, dict[str, Any]]] = {}
        # Where handlers run: the context it was made in (a notebook's cell).
        self._context = handler_context()
        # Native connection id -> its open socket, to name a group's members.
        self._by_id: dict[int, WebSocket] = {}
        # What every accepted socket calls as it ends: one bound method for all, not one each.
        self._on_client_finished = self._client_finished
        # Group name -> its members here, as the object's thread last saw them.
        self._members: dict[str, tuple[WebSocket, ...]] = {}
        # The broker's last error, logged once however often it recurs.
        self._broker_error = ""
        super().__init__(**kwargs)

    def __repr__(self) -> str:
        state = (self.url or "starting to listen") if self._server is not None else "not listening"
        return f"<WebSocketServer {state}>"

    def _complete(self) -> None:
        self._completed = True
        if self.listen:
            self._start()

    def broadcast_text_message(self, message: str, group: str | None = None) -> int:
        """Sends a text message to every open client, or to ``group``'s members; returns how many took it.

        Framed once in the native core, with no Python loop per client; clients
        that are not open or whose queue is full are skipped. With ``group``
        and a ``broker``, the message also goes to the group's members in
        every other process attached to the broker, at most once; the count
        is of this process's clients. See also :func:`wsbind.broadcast` for
        any list of sockets. Qt has no broadcast.
        """
        if not isinstance(message, str):
            raise TypeError(f"broadcast_text_message() takes a str, not {type(message).__name__}")
        return self._broadcast(message, group)

    def broadcast_binary_message(self, message: Buffer, group: str | None = None) -> int:
        """Sends a binary message (any bytes-like object) to every open client, or to ``group``'s members.

        As :meth:`broadcast_text_message`, for binary messages.
        """
        if isinstance(message, str):
            raise TypeError("broadcast_binary_message() takes a bytes-like object, not str")
        return self._broadcast(message, group)

    def _broadcast(self, message: str | Buffer, group: str | None) -> int:
        if group is not None:
            check_group(group)
        server = self._server
        return server.broadcast(message, group) if server is not None else 0

    def join(self, ws: WebSocket, group: str) -> bool:
        """Adds the client ``ws`` to ``group``; returns False if it was in it already or is not open.

        A group exists while it has members (``groups``); a socket may be in
        any number of them, and leaves them all when it closes. With a
        ``broker``, the server subscribes to the group's channel while the
        group has a member here. Safe from any thread; ``members_changed``
        is emitted on the server's thread. Qt has no groups.
        """
        return self._regroup("join", ws, group)

    def leave(self, ws: WebSocket, group: str) -> bool:
        """Takes the client ``ws`` out of ``group``; returns False if it was not in it.

        The last member to leave ends the group (and, with a ``broker``, the
        subscription to its channel). Safe from any thread.
        """
        return self._regroup("leave", ws, group)

    def _regroup(self, verb: str, ws: WebSocket, group: str) -> bool:
        """join() or leave(), by the native server's method of that name."""
        if not isinstance(ws, WebSocket):
            raise TypeError(f"{verb}() takes a WebSocket, not {type(ws).__name__}")
        check_group(group)
        server, conn = self._server, ws._conn
        if server is None or conn is None or not getattr(server, verb)(conn, group):
            return False
        self._dispatcher.call(lambda: self._update_members(group))
        return True

    def members(self, group: str) -> tuple[WebSocket, ...]:
        """The open sockets in ``group`` here, in the order they connected; () for no such group."""
        return self._members.get(check_group(group), ())

    @property
    def broker_dropped(self) -> int:
        """Group broadcasts the broker did not carry since it was set.

        Those published while Redis was unreachable or the queue of
        publications was full (they reached this process's members only),
        and those received in a form that is not wsbind's. A plain count,
        not a Property: it may change with every broadcast.
        """
        server = self._server
        return server.broker_dropped if server is not None else 0

    def _update_members(self, group: str) -> None:
        """Reads ``group``'s members from the native core after a join or leave, and tells."""
        server = self._server
        ids = server.member_ids(group) if server is not None else []
        members = tuple(self._by_id[i] for i in ids if i in self._by_id)
        self._set_members(group, members)

    def _set_members(self, group: str, members: tuple[WebSocket, ...]) -> None:
        old = self._members.get(group, ())
        if members == old:
            return
        if members:
            self._members[group] = members
        else:
            del self._members[group]
        if not old or not members:
            self._write("groups", tuple(self._members))
        self.members_changed.emit(group)

    def _broker_changed(self) -> None:
        if self._server is not None:
            self._server.set_broker(self._broker())
            if not self.broker:
                self._write("broker_state", BrokerState.DISCONNECTED)

    def _broker(self) -> tuple[str, str] | None:
        return (self.broker, self.broker_namespace) if self.broker else None

    def _broker_event(self, state: int, error: str) -> None:
        if state == BrokerState.ERROR:
            # A Redis that stays down fails every retry: said once in the log.
            if error != self._broker_error:
                logger.warning("%r: %s", self, error)
            self._broker_error = error
            self._write_all({"error_string": error, "broker_state": BrokerState.ERROR})
            return
        values: dict[str, Any] = {"broker_state": BrokerState(state)}
        if state == BrokerState.CONNECTED and self._broker_error:
            if self.error_string == self._broker_error:
                values["error_string"] = ""
            self._broker_error = ""
        self._write_all(values)

    def route(self, pattern: str) -> Callable[[F], F]:
        """Decorates the handler of WebSocket clients whose path matches ``pattern``.

        ``pattern`` is a path with ``{name}`` parts (see :mod:`wsbind.routes`);
        the handler is called with the OPEN socket and each part as a
        keyword, after ``client_connected``::

            @server.route("/chat/{room}")
            def chat(ws, room):
                ws.text_message_received.connect(lambda m: server.broadcast_text_message(m))

        A coroutine function runs as a task, as ``wsbind.serve()``'s handler
        does (``async for message in ws``), on the asyncio loop the server
        was made on: on a server made outside one, it raises TypeError at
        once, as no loop would run it. Once a route is declared, a
        client whose path none matches is refused with 404 before its
        handshake (unless ``serve()`` has a handler for the rest). Qt has
        no routing.
        """

        def add(handler: F) -> F:
            if inspect.iscoroutinefunction(handler) and not isinstance(self._dispatcher, LoopDispatcher):
                raise TypeError(
                    f"route {pattern!r}: an async def handler runs on the asyncio loop the server "
                    "was made on, and this one was made outside a loop: make it inside one "
                    "(wsbind.serve(), or in a coroutine), or give a plain function"
                )
            self._routes.add(pattern, handler)
            self._http_changed()
            return handler

        return add

    def http_route(self, pattern: str, handler: Callable[..., Any] | None = None) -> Any:
        """Routes HTTP requests whose path matches ``pattern`` to ``handler(request, **parts)``.

        The handler returns a :class:`~wsbind.Response`, or a str, bytes,
        path, dict or list (see :meth:`Response.of`), or None to let the
        request go on (to ``static_dir``, then 404). A coroutine function
        is awaited. One line makes a health check::

            server.http_route("/healthz", lambda request: "ok")

        Without ``handler`` it decorates one. Requests for an upgrade go to
        ``route()`` instead.
        """
        if handler is None:

            def add(handler: F) -> F:
                self.http_route(pattern, handler)
                return handler

            return add
        self._http_routes.add(pattern, handler)
        self._http_changed()
        return handler

    def pause_accepting(self) -> None:
        """Stops accepting new connections (C++: ``pauseAccepting``); same as ``accept = False``."""
        self.accept = False

    def resume_accepting(self) -> None:
        """Accepts new connections again (C++: ``resumeAccepting``); same as ``accept = True``."""
        self.accept = True

    def _options(self) -> _wsbind.Options:
        """What the server's sockets start with: WebSocket's defaults, but the server's limits."""
        options = {name: WebSocket._properties[name].default for name in _OPTIONS}
        for name in _SERVER_OPTIONS:
            options[name] = self._value(name)
        return cast("_wsbind.Options", options)

    def close(self) -> LazyCoroutine[None]:
        """Stops listening and closes every client with 1001 (C++: ``close``); same as ``listen = False``.

        What it returns may be awaited, as websockets' ``close()`` followed by
        ``wait_closed()``: ``await server.close()`` returns once every client
        is closed and every handler of ``wsbind.serve()`` has returned.
        """
        self.listen = False
        return _Closing(self)

    async def wait_closed(self) -> None:
        """Waits until the server has stopped, its clients are closed and its handlers returned.

        Returns at once for a server that does not listen and has no clients
        (websockets: ``wait_closed()``). It does not stop the server: see
        :meth:`close`. Handlers that never return keep it waiting.
        """
        await wait_until(
            self._changes,
            lambda: self._server is None and not self._value("clients") and not self._handlers,
        )

    @property
    def connections(self) -> set[WebSocket]:
        """The open sockets as a set (websockets: ``connections``); ``clients`` lists them in order."""
        return set(self.clients)

    def is_serving(self) -> bool:
        """Whether the server listens and accepts connections (websockets, asyncio: ``is_serving()``)."""
        return self._server is not None and self.accept

    async def serve_forever(self) -> None:
        """Waits until the server stops listening (websockets, asyncio: ``serve_forever()``).

        Cancelling it (Ctrl-C under ``asyncio.run()``) closes the server and
        waits for its clients and handlers, then lets the cancellation go on.
        """
        try:
            await wait_until(self._changes, lambda: self._server is None)
        except asyncio.CancelledError:
            await self.close()
            raise

    def _start(self) -> None:
        listener, self._listener = self._listener, None
        try:
            server = _wsbind.Server(
                self._dispatcher.queue,
                self.host,
                self.port,
                self._options(),
                name=self.name,
                subprotocols=self.supported_subprotocols,
                accepting=self.accept,
                **self._origin_config(),
                max_pending_connections=self.max_pending_connections,
                backlog=self.listen_backlog_size,
                reuse_port=self.reuse_port,
                tls=self._tls(),
                compression=self.compression,
                **self._http_config(),
                broker=self._broker(),
                listener=listener,
                unix_path=self.unix_socket_path,
                # Before the server starts: its events then find this object.
                register=lambda native_id: self._dispatcher.register(native_id, self),
            )
        except OSError as e:
            # Qt's listen() returns false and leaves isListening() false.
            self._write_all(
                {"listen": False, "error_string": e.strerror or str(e)}, emit_on=self._dispatcher.call
            )
            self._changes.wake_all()
            raise
        self._server = server
        if server.took_over is not None:
            logger.warning(
                "%s was taken over from another WebSocketServer of this process (a notebook cell "
                "run again?), which stopped listening and closed its clients with 1001",
                server.took_over,
            )
        # Bound already, as Qt's listen() has bound when it returns; the
        # change signals' handlers run on the server's thread all the same.
        self._write_all(
            {
                "error_string": "",
                "port": server.port,
                "url": self._url(server.port),
            },
            emit_on=self._dispatcher.call,
        )

    def _carry(self, connection_id: int, attributes: dict[str, Any]) -> None:
        """Sets ``attributes`` on the socket whose handshake came on ``connection_id``, once it opens."""
        self._forget_stale_carried()
        self._carried[connection_id] = (time.monotonic(), attributes)

    def _forget_stale_carried(self) -> None:
        # A handshake that failed after its hook leaves them: gone once it would have timed out.
        now = time.monotonic()
        for stale in [c for c, (since, _) in self._carried.items() if now - since > _CARRIED_FOR]:
            del self._carried[stale]

    def _http_config(self) -> dict[str, Any]:
        """What the native server does with HTTP requests: which it asks about, the folder."""
        asked = bool(self._routes) or self.http_request.connected or self._process_request is not None
        return {
            "ask_plain": asked or bool(self._http_routes),
            "ask_upgrade": asked,
            "static_dir": self.static_dir,
            "max_file_size": self.max_file_size,
        }

    def _http_changed(self) -> None:
        if self._server is not None:
            self._server.set_http(**self._http_config())

    def _http_watched(self, signal: str, on: bool) -> None:
        self._http_changed()

    def _answer(self, native: _wsbind.HttpRequest) -> None:
        """Finds the answer to an HTTP request, on the server's thread; the request waits for it."""
        request = Request(native)
        if self._carried:
            # What an earlier request on this connection carried is for a
            # handshake that is over (refused after its hook, say).
            self._carried.pop(native.connection_id, None)
            self._forget_stale_carried()
        self._run_steps(request, iter(self._steps(request)))

    def _steps(self, request: Request) -> list[Callable[[], Any]]:
        """What may answer ``request``, in turn, until one does."""
        steps: list[Callable[[], Any]] = []
        process_request = self._process_request
        if process_request is not None:
            steps.append(lambda: process_request(request))
        if self.http_request.connected:
            steps.append(lambda: self.http_request.emit(request))
        if request.upgrade:
            if self._routes and self._fallback is None and self._routes.match(request.target) is None:
                steps.append(lambda: Response(404, f"no WebSocket at {request.path}\n"))
            return steps
        matched = self._http_routes.match(request.target)
        if matched is not None:
            route, parts = matched
            request.params = parts
            steps.append(lambda: route.handler(request, **parts))
        if self.static_dir is None and self._routes.match(request.target) is not None:
            # A browser that opens a socket's URL as a page learns what it is;
            # with a folder, the page of that URL may be there (the order the
            # docs give: handlers, routes, the folder, then 404).
            steps.append(
                lambda: Response(
                    426,
                    "this is a WebSocket: send an Upgrade: websocket request\n",
                    headers={"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
                )
            )
        return steps

    def _run_steps(self, request: Request, steps: Any) -> None:
        for step in steps:
            if request.answered:
                break
            try:
                result = step()
                if inspect.isawaitable(result):
                    self._await_step(request, result, steps)
                    return
                answer = Response.of(result)
            except Exception:
                logger.exception("HTTP handler failed for %r on %r", request, self)
                answer = Response(500, "internal server error\n")
            if answer is not None:
                answer._send(request._native)
                break
        request._native.finish()

    def _await_step(self, request: Request, awaitable: Awaitable[Any], steps: Any) -> None:
        """Awaits an async handler's answer in a task, then goes on with the steps left."""

        async def finish() -> None:
            answer: Response | None
            try:
                answer = Response.of(await awaitable)
            except Exception:
                logger.exception("HTTP handler failed for %r on %r", request, self)
                answer = Response(500, "internal server error\n")
            if answer is not None:
                answer._send(request._native)
                request._native.finish()
            else:
                self._run_steps(request, steps)

        try:
            task = asyncio.get_running_loop().create_task(finish())
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            logger.error("%r: an async HTTP handler needs a server made on an asyncio loop", self)
            Response(500, "internal server error\n")._send(request._native)
            request._native.finish()
            return
        self._track(task)

    def _track(self, task: asyncio.Task[None]) -> None:
        """Counts ``task`` among the handlers that ``wait_closed()`` waits for."""
        self._handlers.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._handlers.discard(task)
            self._changes.wake_all()

        task.add_done_callback(done)

    def _start_handler(self, handler: Callable[..., Awaitable[object]], ws: WebSocket, **parts: str) -> None:
        """Runs a coroutine function's handler of ``ws`` as a task of the running loop."""
        # Before any message of the client can be delivered.
        ws._hold_messages()
        self._track(asyncio.get_running_loop().create_task(_handle(handler, ws, parts)))

    def _route(self, ws: WebSocket) -> None:
        """Hands a new client to the handler of its path, if any."""
        matched = self._routes.match(ws.resource_name)
        if matched is not None:
            route, parts = matched
            handler: Callable[..., Any] = route.handler
        elif self._fallback is not None:
            handler, parts = self._fallback, {}
        else:
            return
        if handler is self._fallback or inspect.iscoroutinefunction(handler):
            self._start_handler(handler, ws, **parts)
        else:
            handler(ws, **parts)

    def _tls(self) -> tuple[str, str, _wsbind.TlsOptions] | None:
        if not self.secure_mode:
            return None
        if not self.certificate or not self.private_key:
            raise ValueError("secure_mode needs certificate and private_key")
        tls = self.ssl_configuration or SslConfiguration()
        return self.certificate, self.private_key, tls._options(client=False)

    def _certificate_changed(self) -> None:
        if self._server is None or not self.secure_mode or not (self.certificate and self.private_key):
            return
        try:
            self._server.set_certificate(self.certificate, self.private_key)
        except ValueError as e:
            # Between setting certificate and private_key the pair may not match.
            logger.warning("%r keeps its previous certificate: %s", self, e)

    def _stop(self) -> None:
        server, self._server = self._server, None
        # Told on the server's thread, as listen = True's changes are, also
        # when `listen = False` is set on another.
        call = self._dispatcher.call
        if server is not None:
            self._dispatcher.unregister(server.id)
            server.stop()
            call(self.closed.emit)
        self._write_all({"url": ""}, emit_on=call)
        self._write_all({"broker_state": BrokerState.DISCONNECTED}, emit_on=call)
        self._changes.wake_all()

    def _listen_changed(self) -> None:
        if not self._completed:
            return
        if self.listen:
            self._start()
        else:
            self._stop()

    def _url(self, port: int) -> str:
        """What ``url`` holds while it listens on ``port``."""
        path = self.unix_socket_path
        if path is not None:
            # As Node's ws writes a Unix socket's URL.
            return f"{'wss' if self.secure_mode else 'ws'}+unix://{os.path.abspath(path)}"
        return server_url(self.host, port, self.secure_mode)

    def _relisten(self) -> None:
        if self._completed and self.listen:
            self._stop()
            self._start()

    def _accept_changed(self) -> None:
        if self._server is not None:
            self._server.set_accepting(self.accept)

    def _name_changed(self) -> None:
        if self._server is not None:
            self._server.set_name(self.name)

    def _subprotocols_changed(self) -> None:
        if self._server is not None:
            self._server.set_subprotocols(self.supported_subprotocols)

    def _limits_changed(self) -> None:
        if self._server is not None:
            self._server.set_limits(self._options(), self.max_pending_connections)

    def _compression_changed(self) -> None:
        if self._server is not None:
            self._server.set_compression(self.compression)

    def _origin_config(self) -> dict[str, Any]:
        """What the native server checks of an Origin: the list, and whether to ask Python.

        The native core compares strings only: with a pattern among
        ``allowed_origins`` it lets every origin through to Python, which
        checks the whole list (``ORIGIN_CHECK`` below).
        """
        allowed = self.allowed_origins
        patterns = allowed is not None and any(isinstance(a, re.Pattern) for a in allowed)
        return {
            "allowed_origins": None if patterns else allowed,
            "ask_origin": patterns or self.origin_authentication_required.connected,
        }

    def _origins_changed(self) -> None:
        if self._server is not None:
            config = self._origin_config()
            self._server.set_allowed_origins(config["allowed_origins"])
            self._server.set_ask_origin(config["ask_origin"])

    def _watched(self, signal: str, on: bool) -> None:
        self._origins_changed()

    def _set_clients(self, clients: list[WebSocket]) -> None:
        self._write("clients", clients)
        self._write("client_count", len(clients))

    def _client_finished(self, ws: WebSocket) -> None:
        # The native core takes it out of its groups as its connection ends.
        for native_id in [i for i, w in self._by_id.items() if w is ws]:
            del self._by_id[native_id]
        for group, members in list(self._members.items()):
            if ws in members:
                self._set_members(group, tuple(m for m in members if m is not ws))
        if ws in self.clients:
            self._set_clients([c for c in self.clients if c is not ws])
            self._changes.wake_all()

    def _event(self, kind: int, payload: Any) -> None:
        if kind == EventKind.CLIENT_CONNECTED:
            conn = payload.connection
            ws = WebSocket._accept(
                self._dispatcher,
                payload,
                self._on_client_finished,
                {name: self._value(name) for name in _SOCKET_LIMITS},
                self._value("name"),
            )
            for name, value in self._socket_properties.items():
                setattr(ws, name, value)
            if self._carried:
                _, carried = self._carried.pop(conn.id, (0, {}))
                for name, value in carried.items():
                    try:
                        setattr(ws, name, value)
                    except Exception:
                        # A property's name, with a value it refuses: the client is served anyway.
                        logger.exception(
                            "process_request set %s on its connection, which %r refuses", name, ws
                        )
            self._by_id[conn.id] = ws
            # Taken now, as Qt's nextPendingConnection() takes it: no longer pending.
            conn.taken()
            self._set_clients([*self.clients, ws])
            self.new_connection.emit()
            self.client_connected.emit(ws)
            try:
                self._route(ws)
            except Exception:
                logger.exception("route handler failed for %r on %r", ws, self)
            # Frames were reported in case these handlers listen; now they have.
            ws._report(conn)
        elif kind == EventKind.HTTP_REQUEST:
            self._answer(payload)
        elif kind == EventKind.ORIGIN_CHECK:
            try:
                allowed = self.allowed_origins
                if allowed is not None and not origin_matches(payload.origin, allowed):
                    payload.set_allowed(False)
                else:
                    self.origin_authentication_required.emit(payload)
            finally:
                payload.finish()
        elif kind == EventKind.SSL_ERRORS:
            for message in payload:
                self.peer_verify_error.emit(message)
            self.ssl_errors.emit(payload)
        elif kind == EventKind.SERVER_ERROR:
            self.server_error.emit(payload)
            if not self._error_heard():
                why = "its origin is not allowed" if payload == 1008 else "too many pending connections"
                logger.warning("%r refused a client (server_error %d): %s", self, payload, why)
        elif kind == EventKind.LISTENING:
            self._write("error_string", "")
            self._write("port", payload)
            self._write("url", self._url(payload))
            self._changes.wake_all()
        elif kind == EventKind.LISTEN_FAILED:
            if self._server is not None:
                self._dispatcher.unregister(self._server.id)
            self._server = None
            self._write_all({"listen": False, "error_string": payload})
            if not self._error_heard():
                logger.warning("%r: %s", self, payload)
            self._changes.wake_all()
        elif kind == EventKind.ACCEPT_FAILED:
            logger.warning("%r: %s", self, payload)
            self.accept_error.emit(payload)
        elif kind == EventKind.BROKER:
            self._broker_event(*payload)
        elif kind == EventKind.STOPPED:
            # A stop _stop() asked for does not arrive (it unregisters
            # first); one _shutdown() asked for leaves the properties as
            # they were; any other is a newer server taking the address over.
            taken_over = self._server is not None and not self._shutting_down
            if self._server is not None:
                self._dispatcher.unregister(self._server.id)
            self._server = None
            if taken_over:
                self._write_all({"listen": False, "url": ""})
                self.closed.emit()
            self._changes.wake_all()

    def _error_heard(self) -> bool:
        """Whether a handler hears of a server's error; else it is logged at WARNING."""
        signals = self.__dict__
        return any(
            name in signals and signals[name].connected for name in ("server_error", "error_string_changed")
        )

    def _shutdown(self) -> None:
        self._shutting_down = True
        if self._server is not None:
            self._server.stop()


async def _handle(handler: Callable[..., Awaitable[object]], ws: WebSocket, parts: dict[str, str]) -> None:
    """One client's task (serve()'s handler, an async route): the handler, then the close that says how."""
    try:
        await handler(ws, **parts)
    except ConnectionClosedOK:
        # The client closed while the handler was receiving: nothing went wrong.
        pass
    except asyncio.CancelledError:
        # The loop is going away (asyncio.run() ends), and so is the server.
        ws.close(1001)
        raise
    except Exception:
        logger.exception("connection handler failed for %r", ws)
        await ws.close(1011)
        return
    await ws.close()


class _Closing(LazyCoroutine[None]):
    """What ``WebSocketServer.close()`` returns: awaited, it waits as ``wait_closed()`` does."""

    __slots__ = ("_server",)

    def __init__(self, server: WebSocketServer) -> None:
        self._server = server

    async def _wait(self) -> None:
        await self._server.wait_closed()
