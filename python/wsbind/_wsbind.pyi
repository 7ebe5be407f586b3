"""wsbind's private native module: sockets and the protocol on tokio.

The public API is the ``wsbind`` package; these are the pieces it is built on.
"""

from collections.abc import Awaitable, Callable
from typing import TypedDict, final, type_check_only

from typing_extensions import Buffer

__all__ = [
    "CLOSE_TIMEOUT",
    "Addresses",
    "accept_headers",
    "bind",
    "Authenticator",
    "ClientConnected",
    "Closed",
    "Connected",
    "Connection",
    "EVENT_ACCEPT_FAILED",
    "EVENT_AUTHENTICATE",
    "EVENT_BINARY",
    "EVENT_BINARY_FRAME",
    "EVENT_CLIENT_CONNECTED",
    "EVENT_CLOSED",
    "EVENT_CLOSING",
    "EVENT_CONNECTED",
    "EVENT_HTTP_REQUEST",
    "EVENT_REJECTED",
    "EVENT_FENCE",
    "EVENT_LISTENING",
    "EVENT_LISTEN_FAILED",
    "EVENT_ORIGIN_CHECK",
    "EVENT_PONG",
    "EVENT_PROXY_AUTH",
    "EVENT_BROKER",
    "EVENT_SERVER_ERROR",
    "EVENT_SSL_ERRORS",
    "EVENT_STOPPED",
    "EVENT_TEXT",
    "EVENT_TEXT_FRAME",
    "EVENT_WRITTEN",
    "EventQueue",
    "Frame",
    "HANDSHAKE_TIMEOUT",
    "HttpRequest",
    "LISTEN_BACKLOG",
    "Listener",
    "MAX_FILE_SIZE",
    "MAX_CONTROL_PAYLOAD",
    "MAX_INCOMING_FRAME_SIZE",
    "MAX_INCOMING_MESSAGE_SIZE",
    "MAX_OUTGOING_BUFFER",
    "MAX_PENDING_CONNECTIONS",
    "MAX_PENDING_EVENT_BYTES",
    "MAX_QUEUE",
    "MAX_REQUEST_BODY",
    "OUTGOING_FRAME_SIZE",
    "OriginAuthenticator",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "Pong",
    "ProxyAuthenticator",
    "Server",
    "WRITE_LIMIT",
    "Written",
    "__version__",
    "broadcast",
    "check_close",
    "check_header_value",
    "check_proxy",
    "check_url",
    "connect",
    "environment_proxy",
]

__version__: str

EVENT_CONNECTED: int
EVENT_TEXT: int
EVENT_BINARY: int
EVENT_CLOSING: int
EVENT_CLOSED: int
EVENT_TEXT_FRAME: int
EVENT_BINARY_FRAME: int
EVENT_PONG: int
EVENT_WRITTEN: int
EVENT_LISTENING: int
EVENT_LISTEN_FAILED: int
EVENT_CLIENT_CONNECTED: int
EVENT_ACCEPT_FAILED: int
EVENT_STOPPED: int
EVENT_SERVER_ERROR: int
EVENT_ORIGIN_CHECK: int
EVENT_SSL_ERRORS: int
EVENT_PROXY_AUTH: int
EVENT_AUTHENTICATE: int
EVENT_BROKER: int
EVENT_HTTP_REQUEST: int
EVENT_REJECTED: int
EVENT_FENCE: int

MAX_INCOMING_MESSAGE_SIZE: int
"""Largest incoming message, 64 MiB; over it the connection closes with 1009."""
MAX_CONTROL_PAYLOAD: int
"""The most bytes a ping's payload may have: a control frame's 125 (RFC 6455 §5.5)."""
MAX_INCOMING_FRAME_SIZE: int
"""Largest incoming frame payload, 16 MiB."""
MAX_OUTGOING_BUFFER: int
"""Bytes that may wait to be written on one socket before sending raises BufferFullError, 64 MiB."""
MAX_PENDING_EVENT_BYTES: int
"""Bytes of received messages that may wait for Python before sockets stop reading, 16 MiB."""
OUTGOING_FRAME_SIZE: int
"""Longer outgoing messages go out as continuation frames of this size, 512 KiB (Qt's default)."""
PING_INTERVAL: float
"""Seconds between keepalive pings, 20."""
PING_TIMEOUT: float
"""Seconds a keepalive ping may wait for its pong, 20."""
CLOSE_TIMEOUT: float
"""Seconds the closing handshake may take, 10."""
HANDSHAKE_TIMEOUT: float
"""Seconds the opening handshake may take, 10 (Qt's default)."""
MAX_PENDING_CONNECTIONS: int
"""Accepted connections Python has not taken yet before new ones get HTTP 503, 30 (Qt's default)."""
LISTEN_BACKLOG: int
"""Connections the kernel queues for a server before it accepts them, 1024."""
MAX_QUEUE: int
"""Messages a socket holds for ``recv()`` before it stops reading, 16 (websockets' default)."""
WRITE_LIMIT: int
"""Bytes waiting to be written above which ``await send()`` waits, 32 KiB (websockets' default)."""
MAX_FILE_SIZE: int
"""Largest file an HTTP response of a server carries, 8 MiB."""
MAX_REQUEST_BODY: int
"""Largest body of a plain HTTP request to a server, 64 KiB; longer ones get 413."""

@type_check_only
class Options(TypedDict):
    """A socket's properties that its connection applies, by their Python names."""

    max_allowed_incoming_frame_size: int
    max_allowed_incoming_message_size: int
    outgoing_frame_size: int
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float
    handshake_timeout: float | None

@type_check_only
class TlsOptions(TypedDict):
    """TLS settings as ``SslConfiguration._options()`` gives them."""

    ca_certificates: list[str]
    local_certificate: str | None
    private_key: str | None
    peer_verify: bool

def check_url(url: str) -> None:
    """Raises ``InvalidURL`` unless ``url`` is a ws:// or wss:// URL with a host."""

def check_close(code: int, reason: str) -> None:
    """Raises ValueError unless ``code`` and ``reason`` may be sent in a close
    frame: ``close()`` checks them whatever the socket's status."""

def check_header_value(value: str) -> None:
    """Raises ValueError unless ``value`` can be an HTTP header value: tab, space and
    visible ASCII. The one rule for every header wsbind sends."""

def environment_proxy(url: str) -> str | None:
    """The proxy the environment gives for ``url``, as curl picks it, or None."""

def check_proxy(proxy: str) -> None:
    """Raises ValueError unless ``proxy`` is an http://, socks5:// or socks5h:// proxy URL."""

@final
class Listener:
    """A listening socket bound by :func:`bind`, for ``Server(listener=...)``."""

def accept_headers(
    key: str, subprotocol: str | None, extensions: str | None, server_name: str
) -> list[tuple[str, str]]:
    """The headers of the 101 with which a server accepts a request whose
    Sec-WebSocket-Key is ``key``, in the order written (``ws.response``)."""

def bind(
    host: str, port: int, backlog: int, reuse_port: bool, unix_path: str | None = None
) -> Awaitable[Listener]:
    """Binds ``host``:``port`` (or the Unix domain socket at ``unix_path``) without
    blocking the running loop; raises OSError as ``Server`` does. Binding may
    wait for another server of this process to let the address go."""

def broadcast(
    connections: list[Connection], message: str | Buffer
) -> tuple[int, list[tuple[int, Exception]]]:
    """Sends ``message`` to every open connection in ``connections``, framed once
    for all a server's connections; returns how many took it, and the open
    ones that did not (their queue is full) by their place in
    ``connections``, each with its error."""

def connect(
    queue: EventQueue,
    url: str,
    subprotocols: list[str],
    headers: list[tuple[str, str]],
    origin: str,
    options: Options,
    tls: TlsOptions | None = None,
    proxy: str | None = None,
    ask_proxy_auth: bool = False,
    *,
    compression: str | None = None,
    ask_auth: bool = False,
    unix_path: str | None = None,
    register: Callable[[Connection], object],
) -> Connection:
    """Opens a connection to ``url`` (over the Unix domain socket at ``unix_path``
    if given) in the background; its events go to ``queue``.

    ``register`` is called with the connection before any of its events can arrive."""

# The payloads of the events that are not a message's str or bytes.

@final
class Addresses:
    """Where a connection runs between ("" and 0 when unknown)."""

    @property
    def peer_address(self) -> str: ...
    @property
    def peer_port(self) -> int: ...
    @property
    def local_address(self) -> str: ...
    @property
    def local_port(self) -> int: ...

@final
class Connected:
    """``EVENT_CONNECTED``: a client's opening handshake succeeded."""

    @property
    def subprotocol(self) -> str:
        """The subprotocol the server picked ("" for none)."""
    @property
    def extensions(self) -> str:
        """The extensions the server accepted, as it wrote them ("" for none)."""
    @property
    def resource_name(self) -> str:
        """The request target as sent: path and query, percent-encoded."""
    @property
    def headers(self) -> list[tuple[str, str]]:
        """The server's 101 response's headers, in order, as (name, value)."""
    @property
    def addresses(self) -> Addresses: ...

@final
class ClientConnected:
    """``EVENT_CLIENT_CONNECTED``: a server accepted a client."""

    @property
    def connection(self) -> Connection: ...
    @property
    def url(self) -> str:
        """The full request URL: ``ws://host[:port]/path?query``."""
    @property
    def requested_subprotocols(self) -> list[str]: ...
    @property
    def negotiated_subprotocol(self) -> str: ...
    @property
    def extensions(self) -> str:
        """The extensions the server accepted, as its response wrote them."""
    @property
    def resource_name(self) -> str:
        """The request target: path and query."""
    @property
    def headers(self) -> list[tuple[str, str]]:
        """The request's headers, in order."""
    @property
    def addresses(self) -> Addresses: ...

@final
class Closed:
    """``EVENT_CLOSED``: the connection is over."""

    @property
    def code(self) -> int:
        """The close code (1005 for a close frame without one, 1006 for none)."""
    @property
    def reason(self) -> str: ...
    @property
    def error(self) -> str | None:
        """Why it failed, for ``error_string``; None for a normal close."""
    @property
    def received(self) -> tuple[int, str] | None:
        """The peer's close frame as (code, reason), if one came."""
    @property
    def sent(self) -> tuple[int, str] | None:
        """Ours, or our echo of the peer's, if it went out."""
    @property
    def received_first(self) -> bool:
        """Whether the peer's came before ours went out."""

@final
class Frame:
    """``EVENT_TEXT_FRAME`` and ``EVENT_BINARY_FRAME``: one data frame."""

    @property
    def data(self) -> str | bytes:
        """A str for a text frame, bytes for a binary one."""
    @property
    def last(self) -> bool:
        """Whether it ends its message."""

@final
class Pong:
    """``EVENT_PONG``: the answer to a ping."""

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds since our ping (0 for a pong nobody asked for)."""
    @property
    def payload(self) -> bytes: ...

@final
class Written:
    """``EVENT_WRITTEN``: message bytes went out."""

    @property
    def count(self) -> int: ...
    @property
    def remaining(self) -> int:
        """Bytes that still wait."""

@final
class EventQueue:
    """A queue of ``(id, kind, payload)`` events for the objects one Python thread serves."""

    def __new__(cls, *, wakeup_fd: bool = False) -> EventQueue: ...
    def fileno(self) -> int | None:
        """The file descriptor that becomes readable when events arrive or sockets are ready, or None."""
    def take(self) -> list[tuple[int, int, _Payload]]:
        """Every event that has arrived, and what the ready sockets hold; never blocks."""
    def wait(self, timeout: float) -> list[tuple[int, int, _Payload]]:
        """Blocks, without the GIL, until events arrive, ``timeout`` s pass or the queue closes.

        Meanwhile it reads the plain TCP sockets of the queue's objects itself."""
    def look(self) -> list[tuple[int, int, _Payload]]:
        """Looks for events as ``wait()`` does before it sleeps, without the GIL, and returns
        what came instead of sleeping."""
    def wake(self) -> None:
        """Makes the queue's thread return from ``wait()`` soon (a loop's descriptor becomes
        readable), even if no event comes: another thread handed it work."""
    def close(self) -> None:
        """Wakes every waiter for good; later events are dropped."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""

@final
class Connection:
    """The handle to send on one connection and to close it."""

    @property
    def id(self) -> int:
        """The id under which this connection's events arrive."""
    @property
    def bytes_to_write(self) -> int:
        """Payload bytes queued by ``send_*`` and not yet written."""
    @property
    def latency(self) -> float:
        """Seconds between the last ping answered (keepalive's too) and its pong; 0 before the first."""
    def send_text(self, message: str) -> int:
        """Queues a text message; returns its size in bytes of UTF-8."""
    def send_binary(self, data: Buffer) -> int:
        """Queues a binary message from any bytes-like object; returns its size."""
    def send_message(self, message: str | Buffer, text: bool | None = None) -> int:
        """Queues a whole message, text for a str and binary for any other
        bytes-like object unless ``text`` says which (True: UTF-8 bytes as
        text, checked; False: a str's UTF-8 as binary); returns the bytes
        then waiting to be written."""
    def send_fragment(self, fragment: str | Buffer, last: bool) -> int:
        """Queues one fragment of a message sent in several: a str continues
        (or opens) a text message, a bytes-like object a binary one; ``last``
        ends it. Until then, other messages sent here wait for its end.
        Returns the fragment's size in bytes."""
    def drained(self, low: int) -> Awaitable[None]:
        """Done once at most ``low`` bytes wait to be written or the connection is over."""
    def flush(self, timeout: float | None = None) -> bool:
        """Waits, without the GIL, until everything queued is written; returns
        whether it was before ``timeout`` seconds (None: no limit) passed."""
    def wait_written(self, low: int, timeout: float | None = None) -> bool:
        """Waits, without the GIL, until at most ``low`` bytes wait to be written
        or the connection is over; False if ``timeout`` seconds passed first.
        The blocking twin of :meth:`drained`."""
    def ping(self, payload: Buffer) -> None:
        """Sends a ping with ``payload`` (at most 125 bytes)."""
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake with ``code`` and ``reason``."""
    def abort(self) -> None:
        """Drops the TCP connection without a closing handshake."""
    def taken(self) -> None:
        """The server takes this connection for its handlers: it is no longer pending."""
    def report_frames(self, on: bool) -> None:
        """Whether data frames are reported one by one, besides whole messages."""
    def configure(self, options: Options) -> None:
        """Applies a socket's limits, keepalive and timeouts to the open connection."""
    def report_writes(self, on: bool) -> None:
        """Whether each write is reported (for ``bytes_written``)."""
    def pause_reading(self, paused: bool) -> None:
        """Stops (True) or resumes (False) reading the socket, so that TCP pushes back on the
        peer while Python holds as many messages as it may. While paused nothing is read, not
        even a pong or a close frame."""

@final
class ProxyAuthenticator:
    """Handed to ``proxy_authentication_required`` handlers (Qt's ``QAuthenticator``)."""

    @property
    def proxy(self) -> str:
        """The proxy that asks, as host:port."""
    def set_credentials(self, user: str, password: str) -> None:
        """Answers with these credentials (Qt: ``setUser``, ``setPassword``)."""
    def finish(self) -> None:
        """Gives the answer to the waiting connection; later calls change nothing."""

@final
class Authenticator:
    """Handed to ``authentication_required`` handlers (Qt's ``QAuthenticator``): setting
    ``user`` and ``password`` answers the server's 401, and the handshake is tried once
    more with them (Basic, or Digest where the server asks for it)."""

    @property
    def realm(self) -> str:
        """The realm the server names ("" when it names none)."""
    @property
    def user(self) -> str:
        """The user name to answer with; "" until a handler sets it."""
    @user.setter
    def user(self, user: str) -> None: ...
    @property
    def password(self) -> str:
        """The password to answer with; "" until a handler sets it."""
    @password.setter
    def password(self, password: str) -> None: ...
    def finish(self) -> None:
        """Gives the answer to the waiting handshake; later calls change nothing."""

@final
class OriginAuthenticator:
    """Handed to ``origin_authentication_required`` handlers (Qt's ``QWebSocketCorsAuthenticator``)."""

    @property
    def origin(self) -> str:
        """The Origin header the client sent ("" when it sent none)."""
    @property
    def allowed(self) -> bool:
        """Whether the client may connect; True unless set otherwise."""
    def set_allowed(self, allowed: bool) -> None:
        """Allows (True) or refuses (False, HTTP 403) the client."""
    def finish(self) -> None:
        """Gives the answer to the waiting handshake; later calls change nothing."""

@final
class HttpRequest:
    """EVENT_HTTP_REQUEST: a request to a server's port, waiting for its answer.

    ``wsbind.Request`` wraps it."""

    @property
    def method(self) -> str:
        """ "GET", "POST", ... as sent."""
    @property
    def target(self) -> str:
        """The request target as sent: path and query, percent-encoded."""
    @property
    def headers(self) -> list[tuple[str, str]]:
        """The headers, in order, as (name, value)."""
    @property
    def body(self) -> bytes:
        """The body (at most 64 KiB; b"" for none)."""
    @property
    def upgrade(self) -> bool:
        """Whether the client asks for a WebSocket."""
    @property
    def connection_id(self) -> int:
        """The id the connection's events arrive under, should an upgrade open it."""
    @property
    def addresses(self) -> Addresses:
        """The client's address and ours."""
    @property
    def answered(self) -> bool:
        """Whether a response was given."""
    def respond(
        self, status: int, headers: list[tuple[str, str]], body: bytes | None = None, file: str | None = None
    ) -> None:
        """Answers with ``status``, ``headers`` and ``body`` or the file at ``file``."""
    def finish(self) -> None:
        """Gives the answer (or none) to the waiting task; later calls change nothing."""

@final
class Server:
    """A listening server; dropping the handle stops it."""

    def __new__(
        cls,
        queue: EventQueue,
        host: str,
        port: int,
        options: Options,
        *,
        name: str = ...,
        subprotocols: list[str] = ...,
        accepting: bool = True,
        allowed_origins: list[str] | None = None,
        ask_origin: bool = False,
        max_pending_connections: int = ...,
        backlog: int = ...,
        reuse_port: bool = False,
        tls: tuple[str, str, TlsOptions] | None = None,
        compression: str | None = None,
        ask_plain: bool = False,
        ask_upgrade: bool = False,
        static_dir: str | None = None,
        max_file_size: int = ...,
        broker: tuple[str, str] | None = None,
        listener: Listener | None = None,
        unix_path: str | None = None,
        register: Callable[[int], object],
    ) -> Server:
        """Listens before it returns (OSError with its errno if it cannot; an address
        held by another server of this process is taken over), on ``listener`` if
        given (from :func:`bind`; ``host`` and ``port`` are then its), or on the Unix
        domain socket at ``unix_path`` (port 0), then serves in the background;
        ``register`` is called with the server's id before any of its events can
        arrive."""
    @property
    def port(self) -> int:
        """The port it listens on: the one asked for, or the one the system picked for port 0
        (0 on a Unix domain socket)."""
    @property
    def took_over(self) -> str | None:
        """The address that another server of this process listened on and was stopped
        for this one, as host:port; None when it was free."""
    @property
    def id(self) -> int:
        """The id under which this server's events arrive."""
    def set_name(self, name: str) -> None:
        """Sets the ``Server`` header of later handshakes."""
    def set_subprotocols(self, subprotocols: list[str]) -> None:
        """Sets the subprotocols that later handshakes may pick from."""
    def set_allowed_origins(self, origins: list[str] | None) -> None:
        """Sets the origins later handshakes accept (None: any)."""
    def set_ask_origin(self, ask: bool) -> None:
        """Whether later handshakes ask Python about their origin."""
    def set_limits(self, options: Options, max_pending_connections: int) -> None:
        """Sets how long later handshakes may take, the limits and timeouts their sockets start
        with, and the pending-connection bound."""
    def set_compression(self, compression: str | None) -> None:
        """Sets whether later handshakes accept permessage-deflate ("deflate") or not (None)."""
    def set_http(
        self, ask_plain: bool, ask_upgrade: bool, static_dir: str | None, max_file_size: int
    ) -> None:
        """Sets what later HTTP requests get: whether Python answers plain requests and sees
        upgrades first, the static folder, and the largest file a response carries."""
    def broadcast(self, message: str | Buffer, group: str | None = None) -> int:
        """Sends ``message`` (str: text, bytes-like: binary) to every open client, or to the
        members of ``group`` here and through the broker elsewhere, framed once; returns how
        many clients here took it."""
    def join(self, connection: Connection, group: str) -> bool:
        """Adds the client ``connection`` to ``group``; False if it was a member already or
        has left the server."""
    def leave(self, connection: Connection, group: str) -> bool:
        """Takes the client ``connection`` out of ``group``; False if it was not in it."""
    def member_ids(self, group: str) -> list[int]:
        """The ids of the connections in ``group``, in the order they connected."""
    def set_broker(self, broker: tuple[str, str] | None) -> None:
        """Attaches the server to the Redis at ``url`` with channels named
        ``<namespace>:<group>``, or detaches it (None); its state arrives as EVENT_BROKER."""
    @property
    def broker_dropped(self) -> int:
        """Group broadcasts the broker did not carry."""
    def set_certificate(self, certificate: str, private_key: str) -> None:
        """Serves a new certificate (PEM path or text) to later TLS handshakes."""
    def set_accepting(self, accepting: bool) -> None:
        """Pauses (False) or resumes (True) accepting connections."""
    def stop(self) -> None:
        """Stops listening and closes every client with 1001."""

_Payload = (
    str
    | bytes
    | int
    | list[str]
    | Connected
    | ClientConnected
    | Closed
    | Frame
    | Pong
    | Written
    | ProxyAuthenticator
    | OriginAuthenticator
    | HttpRequest
    | None
)
"""What an event carries, by kind: see ``wsbind.dispatch.EventKind``."""
