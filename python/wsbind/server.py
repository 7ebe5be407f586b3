"""``WebSocketServer``: a WebSocket server as QML's ``WebSocketServer`` type has it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any, cast

from . import _wsbind
from .broker import BrokerState, check_broker, check_group, check_namespace
from .checks import (
    check_bool,
    check_compression,
    check_header_value,
    check_origin,
    check_seconds,
    check_size,
    check_ssl,
    check_subprotocols,
)
from .dispatch import Dispatcher, EventKind, current
from .objects import Object, Property, Signal
from .tls import SslConfiguration
from .waiters import Waiters, wait_until
from .websocket import _OPTIONS, WebSocket

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["WebSocketServer"]

logger = logging.getLogger("wsbind")


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


def check_origins(value: Any) -> list[str] | None:
    """Accepts None (any origin) or a list of origins such as "https://example.com"."""
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"allowed_origins must be a list of str or None, not {type(value).__name__}")
    return [check_origin(origin) for origin in value]


def check_pem(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected PEM text or the path of a PEM file, not {type(value).__name__}")
    return value


def server_url(host: str, port: int, secure: bool = False) -> str:
    # A wildcard address is reached through loopback, as Qt shows it.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'wss' if secure else 'ws'}://{host}:{port}"


# The options of its sockets that a server sets itself, before their first byte.
_SERVER_OPTIONS = (
    "handshake_timeout",
    "max_allowed_incoming_frame_size",
    "max_allowed_incoming_message_size",
)


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

    host = Property(
        "127.0.0.1",
        check=check_host,
        changed="_relisten",
        doc="The address to listen on (QML: ``host``); changing it while listening listens anew.",
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
        doc='``ws://host:port`` once listening, else "" (QML: ``url``).',
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

    handshake_timeout = Property(
        _wsbind.HANDSHAKE_TIMEOUT,
        check=check_seconds,
        changed="_limits_changed",
        doc="Seconds a client may take over its opening handshake; then it is dropped. "
        "Default 10, as Qt (C++: ``handshakeTimeout``).",
    )
    max_pending_connections = Property(
        _wsbind.MAX_PENDING_CONNECTIONS,
        check=check_pending,
        changed="_limits_changed",
        doc="Connections that finished their handshake but that the server has not handed "
        "to ``client_connected`` yet (its thread is busy); over it new clients get HTTP 503 "
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
    allowed_origins = Property[list[str] | None](
        None,
        check=check_origins,
        changed="_origins_changed",
        doc='Origins allowed to connect, e.g. ``["https://example.com"]``; None allows any. '
        "Others get HTTP 403 and ``server_error(1008)``.",
    )
    clients = Property[list[WebSocket]](
        [],
        read_only=True,
        doc="The server's open sockets, in the order they connected.",
    )
    groups = Property[tuple[str, ...]](
        (),
        read_only=True,
        doc="The names of the groups that have members here, in the order they were made: a "
        "group exists from its first :meth:`join` to its last :meth:`leave` (or close). Qt "
        "has no groups.",
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

    client_connected = Signal(
        "web_socket",
        doc="A client finished its handshake; the argument is an OPEN, active "
        ":class:`WebSocket` (QML: ``clientConnected``).",
    )

    new_connection = Signal(
        doc="A client finished its handshake; emitted just before ``client_connected`` "
        "(C++: ``newConnection``).",
    )
    accept_error = Signal(
        "message",
        doc="Accepting a connection failed, e.g. out of file descriptors; the server goes "
        "on (C++: ``acceptError``).",
    )
    server_error = Signal(
        "close_code",
        doc="A client was refused: 1008 for its origin, 1006 over "
        "``max_pending_connections`` (C++: ``serverError``).",
    )
    ssl_errors = Signal(
        "errors",
        doc="A client's TLS handshake failed, for the reasons in ``errors``; only that "
        "client is affected (C++: ``sslErrors``).",
    )
    peer_verify_error = Signal(
        "message",
        doc="A client's certificate did not verify, or another TLS failure of one client "
        "(C++: ``peerVerifyError``).",
    )
    closed = Signal(doc="The server stopped listening (C++: ``closed``).")
    members_changed = Signal(
        "group",
        doc="A socket joined or left ``group`` (or closed while in it); :meth:`members` has "
        "the new members. Emitted on the server's thread: joins made together from another "
        "thread may be told in one emission.",
    )
    origin_authentication_required = Signal(
        "authenticator",
        watched="_watched",
        doc="A client's handshake asks to be allowed: ``authenticator.origin`` is its "
        "Origin, and ``authenticator.set_allowed(False)`` refuses it with HTTP 403 "
        "(C++: ``originAuthenticationRequired``). With no handler, every origin "
        "``allowed_origins`` lets through may connect.",
    )

    if TYPE_CHECKING:
        from .objects import BoundSignal

        host_changed: BoundSignal
        port_changed: BoundSignal
        listen_changed: BoundSignal
        accept_changed: BoundSignal
        name_changed: BoundSignal
        url_changed: BoundSignal
        error_string_changed: BoundSignal
        supported_subprotocols_changed: BoundSignal

    def __init__(self, **kwargs: Any) -> None:
        # The native server while listening, else None.
        self._server: _wsbind.Server | None = None
        self._completed = False
        self._dispatcher: Dispatcher = current()
        # The tasks of wsbind.serve()'s handler that have not returned yet.
        self._handlers: set[asyncio.Task[None]] = set()
        # Coroutines waiting for the server to stop, its clients to close or
        # its handlers to return; woken at each of these.
        self._changes = Waiters()
        # Native connection id -> its open socket, to name a group's members.
        self._by_id: dict[int, WebSocket] = {}
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
        if not isinstance(ws, WebSocket):
            raise TypeError(f"join() takes a WebSocket, not {type(ws).__name__}")
        check_group(group)
        server, conn = self._server, ws._conn
        if server is None or conn is None or not server.join(conn, group):
            return False
        self._dispatcher.call(lambda: self._update_members(group))
        return True

    def leave(self, ws: WebSocket, group: str) -> bool:
        """Takes the client ``ws`` out of ``group``; returns False if it was not in it.

        The last member to leave ends the group (and, with a ``broker``, the
        subscription to its channel). Safe from any thread.
        """
        if not isinstance(ws, WebSocket):
            raise TypeError(f"leave() takes a WebSocket, not {type(ws).__name__}")
        check_group(group)
        server, conn = self._server, ws._conn
        if server is None or conn is None or not server.leave(conn, group):
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
            options[name] = self._values[name]
        return cast("_wsbind.Options", options)

    def close(self) -> Awaitable[None]:
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
            self._changes, lambda: self._server is None and not self._values["clients"] and not self._handlers
        )

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
        server = _wsbind.Server(
            self._dispatcher.queue,
            self.host,
            self.port,
            self._options(),
            name=self.name,
            subprotocols=self.supported_subprotocols,
            accepting=self.accept,
            allowed_origins=self.allowed_origins,
            ask_origin=self.origin_authentication_required.connected,
            max_pending_connections=self.max_pending_connections,
            backlog=self.listen_backlog_size,
            reuse_port=self.reuse_port,
            tls=self._tls(),
            compression=self.compression,
            broker=self._broker(),
            # Before the server starts: a failure to listen may be taken at once.
            register=lambda native_id: self._dispatcher.register(native_id, self),
        )
        self._server = server

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
        if server is not None:
            self._dispatcher.unregister(server.id)
            server.stop()
            self.closed.emit()
        self._write("url", "")
        self._write("broker_state", BrokerState.DISCONNECTED)
        self._changes.wake_all()

    def _listen_changed(self) -> None:
        if not self._completed:
            return
        if self.listen:
            self._start()
        else:
            self._stop()

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

    def _origins_changed(self) -> None:
        if self._server is not None:
            self._server.set_allowed_origins(self.allowed_origins)

    def _watched(self, signal: str, on: bool) -> None:
        if self._server is not None:
            self._server.set_ask_origin(on)

    def _client_finished(self, ws: WebSocket) -> None:
        # The native core takes it out of its groups as its connection ends.
        for native_id in [i for i, w in self._by_id.items() if w is ws]:
            del self._by_id[native_id]
        for group, members in list(self._members.items()):
            if ws in members:
                self._set_members(group, tuple(m for m in members if m is not ws))
        if ws in self.clients:
            self._write("clients", [c for c in self.clients if c is not ws])
            self._changes.wake_all()

    def _event(self, kind: int, payload: Any) -> None:
        if kind == EventKind.CLIENT_CONNECTED:
            conn = payload.connection
            ws = WebSocket._accept(self._dispatcher, payload, self._client_finished)
            self._by_id[conn.id] = ws
            # Taken now, as Qt's nextPendingConnection() takes it: no longer pending.
            conn.taken()
            self._write("clients", [*self.clients, ws])
            self.new_connection.emit()
            self.client_connected.emit(ws)
            # Frames were reported in case these handlers listen; now they have.
            ws._report(conn)
        elif kind == EventKind.ORIGIN_CHECK:
            try:
                self.origin_authentication_required.emit(payload)
            finally:
                payload.finish()
        elif kind == EventKind.SSL_ERRORS:
            for message in payload:
                self.peer_verify_error.emit(message)
            self.ssl_errors.emit(payload)
        elif kind == EventKind.SERVER_ERROR:
            self.server_error.emit(payload)
        elif kind == EventKind.LISTENING:
            self._write("error_string", "")
            self._write("port", payload)
            self._write("url", server_url(self.host, payload, self.secure_mode))
            self._changes.wake_all()
        elif kind == EventKind.LISTEN_FAILED:
            if self._server is not None:
                self._dispatcher.unregister(self._server.id)
            self._server = None
            self._write("error_string", payload)
            self._changes.wake_all()
        elif kind == EventKind.ACCEPT_FAILED:
            logger.warning("%r: %s", self, payload)
            self.accept_error.emit(payload)
        elif kind == EventKind.BROKER:
            self._broker_event(*payload)
        elif kind == EventKind.STOPPED:
            if self._server is not None:
                self._dispatcher.unregister(self._server.id)
            self._server = None
            self._changes.wake_all()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.stop()


class _Closing:
    """What ``WebSocketServer.close()`` returns: awaited, it waits as ``wait_closed()`` does."""

    __slots__ = ("_server",)

    def __init__(self, server: WebSocketServer) -> None:
        self._server = server

    def __await__(self) -> Generator[Any, None, None]:
        return self._server.wait_closed().__await__()
