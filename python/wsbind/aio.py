"""The asyncio style: ``connect()`` and ``serve()``, named and used as websockets' are.

What they hand out are the ordinary :class:`~wsbind.WebSocket` and
:class:`~wsbind.WebSocketServer` objects, made on the running loop, so that
``await ws.recv()`` and the QML style's properties, signals and bindings
work on the same socket::

    async with wsbind.connect("ws://127.0.0.1:8765") as ws:
        await ws.send("hello")
        print(await ws.recv())

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with wsbind.serve(echo, "127.0.0.1", 8765) as server:
        await server.serve_forever()

Both work under ``asyncio.run()`` and at the top level of a notebook, and
never start a loop of their own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from . import _wsbind
from .checks import check_url
from .errors import InvalidProxy, InvalidStatus, connect_error
from .http import Request, Response
from .retry import backoff
from .routes import Routes
from .server import WebSocketServer
from .status import Status
from .waiters import wait_until
from .websocket import WebSocket

__all__ = ["connect", "serve", "unix_connect", "unix_serve"]

logger = logging.getLogger("wsbind")

# HTTP statuses that say "try again later": a server restarting, a proxy
# whose backend is away. Other refusals (401, 403, 404) will not change by
# trying again. websockets retries the same.
RETRY_STATUSES = frozenset({500, 502, 503, 504})


# websockets' keyword arguments that set a property of another name:
# connect(), serve() and wsbind.sync.connect() take them, so that a call
# written for websockets runs unchanged. The others it has (ping_interval,
# ping_timeout, close_timeout, max_queue, write_limit, compression, origin,
# proxy) are already the properties' names.
CLIENT_KEYWORDS = {
    "additional_headers": "request_headers",
    "extra_headers": "request_headers",  # websockets' legacy API
    "subprotocols": "requested_subprotocols",
    "open_timeout": "handshake_timeout",
    "max_size": "max_allowed_incoming_message_size",
}
SERVER_KEYWORDS = {
    "subprotocols": "supported_subprotocols",
    "origins": "allowed_origins",
    "open_timeout": "handshake_timeout",
    "max_size": "max_allowed_incoming_message_size",
    "server_header": "name",
}
# websockets' keyword arguments that wsbind does not take, and what to do
# instead: the TypeError says so, rather than suggesting a property whose
# name is merely close.
NOT_TAKEN = {
    "ssl": "wsbind's TLS is rustls, not Python's ssl module. Give "
    "ssl_configuration=wsbind.SslConfiguration(...) (CA certificates, a client certificate, "
    "verification), and to a server secure_mode=True with certificate= and private_key=",
    "process_response": "wsbind's native core writes the 101 itself. Refuse or answer a "
    "handshake in process_request=, and name the server with server_header=",
    "select_subprotocol": "a server picks, among the subprotocols a client offers, one of its "
    "subprotocols= (supported_subprotocols); Qt has no hook either",
    "logger": 'wsbind logs on the "wsbind" logger: logging.getLogger("wsbind")',
    "create_connection": "wsbind's WebSocket is one class for every face; subclass WebSocket "
    "and connect it with the QML style instead",
}
# Properties of each socket a server accepts, which serve() takes as
# websockets' does and sets on every one before its handler runs.
SOCKET_KEYWORDS = ("ping_interval", "ping_timeout", "close_timeout", "max_queue", "write_limit")


def properties_of(caller: str, keywords: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``keywords`` with websockets' names for properties (``names``) turned into the properties.

    The values take websockets' forms too: headers as pairs (a name given
    twice raises ValueError: ``request_headers`` holds one value a name) or
    websockets' ``Headers``, ``max_size=None`` and ``max_queue=None`` for no
    limit (``max_size`` bounds frames as well as messages, as websockets'
    one limit does), a ``(high, low)`` pair for ``max_queue`` and
    ``write_limit`` (wsbind resumes below a quarter of the high mark), None
    for no ``subprotocols``, ``additional_headers`` or ``origin``, None among
    ``origins`` for a client that sends no Origin, and ``proxy=True`` for the
    environment's proxy. ``user_agent_header`` is a client's User-Agent
    among its ``request_headers``, ``server_header`` a server's ``name``.
    Giving a property under two names raises
    TypeError; so do websockets' keywords that wsbind does not take
    (``NOT_TAKEN``: ``ssl=``, whose ``ssl.SSLContext`` rustls cannot use,
    ``process_response=``...), with what to give instead.
    """
    for name, instead in NOT_TAKEN.items():
        if name in keywords:
            raise TypeError(f"{caller}() takes no {name}= of websockets': {instead}")
    properties = dict(keywords)
    for name in ("max_queue", "write_limit"):
        if name in properties:
            properties[name] = queue_limit(properties[name])
    if "origin" in properties and properties["origin"] is None:
        properties["origin"] = ""
    if "server_header" in properties and properties["server_header"] is None:
        properties["server_header"] = ""
    # A client's User-Agent: one of its request_headers here.
    user_agent = properties.pop("user_agent_header", None) if names is CLIENT_KEYWORDS else None
    given = {name: name for name in names.values() if name in properties}
    for alias, name in names.items():
        if alias not in properties:
            continue
        if name in given:
            raise TypeError(f"{caller}() got {alias}= and {given[name]}=, which set one property: give one")
        given[name] = alias
        value = properties.pop(alias)
        if value is None and alias in ("subprotocols", "additional_headers", "extra_headers"):
            continue
        if name == "request_headers":
            value = _one_value_each(alias, value)
        elif alias == "origins" and isinstance(value, Iterable):
            value = ["" if origin is None else origin for origin in value]
        elif alias == "max_size":
            value = sys.maxsize if value is None else value
            properties.setdefault("max_allowed_incoming_frame_size", value)
        properties[name] = value
    if properties.get("proxy") is True:
        properties["proxy"] = ""
    if user_agent is not None:
        # wsbind sends no User-Agent of its own, as websockets' None.
        headers = dict(properties.get("request_headers") or {})
        headers.setdefault("User-Agent", user_agent)
        properties["request_headers"] = headers
    return properties


def queue_limit(value: Any) -> Any:
    """websockets' ``max_queue`` or ``write_limit`` as wsbind's: the high mark of a pair, None for none."""
    if isinstance(value, tuple) and len(value) == 2:
        value = value[0]
    return sys.maxsize if value is None else value


def _one_value_each(alias: str, headers: Any) -> Any:
    """websockets' headers (a mapping, pairs, its ``Headers``) as a dict, refusing a name given twice."""
    raw_items = getattr(headers, "raw_items", None)  # websockets' Headers: a name may repeat
    if raw_items is not None:
        headers = list(raw_items())
    elif isinstance(headers, Mapping) or not isinstance(headers, Iterable):
        return headers  # Checked as request_headers.
    pairs = [tuple(pair) for pair in headers]
    names = [str(pair[0]).lower() for pair in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"{alias} gives {', '.join(repeated)} more than once; request_headers holds one value a name"
        )
    return dict(pairs)


_Opened = TypeVar("_Opened", WebSocket, WebSocketServer)


class _Opening(Generic[_Opened]):
    """What connect() and serve() share: awaiting one opens, ``async with`` also closes."""

    # What the async with block opened, to close at its end.
    _opened: _Opened | None = None

    async def _open(self) -> _Opened:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, _Opened]:
        return self._open().__await__()

    async def __aenter__(self) -> _Opened:
        self._opened = await self._open()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        opened, self._opened = self._opened, None
        if isinstance(opened, WebSocket) and exc_type is not None:
            # As websockets: the peer learns the program failed.
            await opened.close(1011)
        elif opened is not None:
            await opened.close()


class connect(_Opening[WebSocket]):  # lower case, as websockets' connect(), which it stands in for
    """Opens a WebSocket to ``url``, in asyncio code (websockets: ``connect()``).

    ``properties`` are any of :class:`~wsbind.WebSocket`'s, e.g.
    ``requested_subprotocols=["v1"]``, ``request_headers={"Authorization":
    "..."}``, ``max_queue``, and ``on_<signal>=`` handlers, or websockets'
    names for them (``additional_headers``, ``subprotocols``,
    ``open_timeout``, ``max_size``: ``CLIENT_KEYWORDS``). What it gives is
    a ``WebSocket``, OPEN, whose messages are held for ``recv()`` from the
    start. Use it in one of three ways::

        async with wsbind.connect(url) as ws:   # closed with 1000 on the way out
            ...
        ws = await wsbind.connect(url)          # e.g. at the top level of a notebook
        async for ws in wsbind.connect(url):    # a new socket after each loss
            ...

    Leaving the ``async with`` block closes with 1000 (1011 when an
    exception leaves it, as in websockets) and waits for the closing
    handshake, which ``close_timeout`` bounds.

    A failure to connect raises, with the words ``error_string`` would hold
    (see :func:`wsbind.errors.connect_error`): :class:`~wsbind.InvalidStatus`
    for a refused handshake (``status_code`` 403...), ``TimeoutError`` when
    ``handshake_timeout`` passed, ``ConnectionRefusedError`` and the other
    ``OSError`` kinds for the network.

    The ``async for`` form reconnects: after a failed attempt it waits the
    next of ``reconnect_delays()`` (None: :func:`wsbind.backoff`, 0-5 s at
    random, then from 3.1 s growing by 1.618 to 90 s) and tries
    again; a success starts the series anew. Network errors and HTTP 500,
    502, 503 and 504 are retried; other refusals raise. The socket of the
    last turn is closed before the next attempt, so ``continue`` after a
    ``ConnectionClosed`` is how a loop survives a lost connection::

        async for ws in wsbind.connect(url):
            try:
                async for message in ws:
                    ...
            except wsbind.ConnectionClosed:
                continue

    After a ``break`` the last socket stays open until the loop's iterator
    is collected, as in websockets: close it first if it should end at once.
    """

    def __init__(
        self,
        url: str,
        *,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
        **properties: Any,
    ) -> None:
        # Misuse raises here, where connect() is written, not at the await.
        check_url(url)
        for name in ("url", "active"):
            if name in properties:
                raise TypeError(f"connect() opens the url it is given; it takes no {name}=")
        self.url = url
        """The URL to connect to."""
        # The WebSocket's constructor keywords besides url.
        self._properties = properties_of("connect", properties, CLIENT_KEYWORDS)
        # A new series of delays between attempts, for async for.
        self._reconnect_delays = reconnect_delays or backoff

    async def _open(self) -> WebSocket:
        ws = WebSocket(url=self.url, **self._properties)
        # Held from the start: a greeting the server sends at once is not lost.
        ws._hold_messages()
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[Status] = loop.create_future()

        # The socket was made on this loop, so its handlers run here.
        def status_changed(status: Status) -> None:
            if status is not Status.CONNECTING and not outcome.done():
                outcome.set_result(status)

        ws.status_changed.connect(status_changed)
        try:
            ws.active = True
            status = await outcome
        except BaseException:
            # Cancelled, e.g. by asyncio.timeout(): give the attempt up.
            ws.abort()
            raise
        finally:
            ws.status_changed.disconnect(status_changed)
        if status is not Status.OPEN:
            raise ws._connect_error(f"connection to {self.url} closed during the handshake")
        return ws

    async def __aiter__(self) -> AsyncIterator[WebSocket]:
        delays: Iterator[float] | None = None
        while True:
            try:
                ws = await self._open()
            except Exception as exc:
                if not retryable(exc):
                    raise
                if delays is None:
                    delays = self._reconnect_delays()
                delay = next(delays)
                logger.info("connecting to %s failed; trying again in %.1f s: %s", self.url, delay, exc)
                await asyncio.sleep(delay)
                continue
            delays = None
            try:
                yield ws
            finally:
                await ws.close()


def _takes_two_arguments(function: Callable[..., Any]) -> bool:
    """Whether ``process_request`` is websockets' ``(connection, request)`` kind."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional and p.default is p.empty for p in parameters) == 2


class Handshake:
    """The connection a two-argument ``process_request(connection, request)`` gets, as in websockets.

    wsbind makes a client's :class:`~wsbind.WebSocket` once its handshake
    is over, so this stands in for it: ``respond(status, text)`` makes a
    :class:`~wsbind.Response` to return, ``remote_address`` and ``request``
    name the client, and attributes set on it (websockets' recipe sets
    ``connection.username``) are set on the WebSocket the handshake opens,
    for its handler to read.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        """The request, as the second argument."""
        self.remote_address = (request.peer_address, request.peer_port)
        """The client's address as ``(host, port)``."""

    def respond(self, status: int, text: str) -> Response:
        """A plain-text response of ``status`` with ``text`` (websockets: ``respond()``)."""
        return Response(status, text)

    def _carried(self) -> dict[str, Any]:
        """What the program set on it, for the WebSocket."""
        return {k: v for k, v in vars(self).items() if k not in ("request", "remote_address")}

    def _connection_id(self) -> int:
        """The native connection the request came on, which its WebSocket will be.

        Not the client's address: on a Unix domain socket every client has
        the same, none.
        """
        return self.request._native.connection_id


def _with_handshake(
    process_request: Callable[[Handshake, Request], Any], server: WebSocketServer
) -> Callable[[Request], Any]:
    """``process_request(connection, request)`` as wsbind calls it: with the request alone."""

    def process(request: Request) -> Any:
        connection = Handshake(request)
        answer = process_request(connection, request)
        if inspect.isawaitable(answer):
            return _carry_after(connection, answer, server)
        _carry(connection, answer, server)
        return answer

    return process


async def _carry_after(connection: Handshake, answer: Awaitable[Any], server: WebSocketServer) -> Any:
    result = await answer
    _carry(connection, result, server)
    return result


def _carry(connection: Handshake, answer: Any, server: WebSocketServer) -> None:
    """Keeps what ``connection`` holds for the WebSocket its request opens, if it lets it through."""
    carried = connection._carried()
    if answer is None and carried and connection.request.upgrade:
        server._carry(connection._connection_id(), carried)


def retryable(exc: Exception) -> bool:
    """Whether a failed attempt to connect is worth making again, unchanged.

    Network errors (OSError, TimeoutError) and HTTP 500, 502, 503 and 504,
    from the server or a proxy, are; other refusals (a proxy's 407 too) and
    a certificate that did not verify are not.
    """
    if isinstance(exc, (InvalidStatus, InvalidProxy)):
        return exc.status_code in RETRY_STATUSES
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, OSError)


class serve(_Opening[WebSocketServer]):  # lower case, as websockets' serve(), which it stands in for
    """Runs a WebSocket server that calls ``handler(ws)`` for each client (websockets: ``serve()``).

    ``handler`` is a coroutine function; each client gets a task of its own
    running it with the server's side of the connection, an OPEN
    :class:`~wsbind.WebSocket` whose messages are held for ``recv()`` from
    the start. ``properties`` are any of :class:`~wsbind.WebSocketServer`'s
    (``name``, ``supported_subprotocols``, ``allowed_origins``...), or
    websockets' names for them (``subprotocols``, ``origins``,
    ``open_timeout``, ``max_size``: ``SERVER_KEYWORDS``), and as in
    websockets the keepalive and queue options of each client's socket
    (``ping_interval``, ``ping_timeout``, ``close_timeout``, ``max_queue``,
    ``write_limit``). ``host``
    is loopback unless given, as Qt's; ``""`` or None listens on every
    interface, as websockets' and asyncio's. ``port`` 0 lets the system pick
    one, which ``server.port`` and ``server.url`` then hold::

        async def echo(ws):
            async for message in ws:
                await ws.send(message)

        async with wsbind.serve(echo, "127.0.0.1", 8765) as server:
            await server.serve_forever()

    ``server = await wsbind.serve(...)`` works too. When a handler returns,
    its connection is closed with 1000. An exception in a handler is logged
    with its traceback on the ``wsbind`` logger and its connection closed
    with 1011 (a ``ConnectionClosedOK`` is not logged: the client left);
    the server goes on serving the others. Leaving the block, or ``await
    server.close()``, stops listening, closes every connection with 1001
    and waits for the handlers to return.

    Failing to listen raises the OSError of the system's words, e.g.
    ``OSError`` with errno EADDRINUSE when the port is taken.

    The same port answers plain HTTP, so a page and its socket come from
    one address (see :mod:`wsbind.http`). ``process_request(request)``, or
    websockets' ``process_request(connection, request)`` (the connection a
    :class:`Handshake`), sees every request first, upgrades included, and
    returns a :class:`~wsbind.Response` to answer it (refusing an upgrade)
    or None to go on; it may be a coroutine function. ``routes`` maps path patterns
    to handlers, which get the captured parts as keywords; with routes,
    ``handler`` (which may then be None) takes the paths none matches, and
    without it they get 404::

        async def chat(ws, room):
            async for message in ws:
                ...

        async with wsbind.serve(None, port=8000, routes={"/chat/{room}": chat},
                                static_dir="www") as server:
            server.http_route("/healthz", lambda request: "ok")
            await server.serve_forever()
    """

    def __init__(
        self,
        handler: Callable[[WebSocket], Awaitable[object]] | None,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        process_request: Callable[[Request], Any] | Callable[[Handshake, Request], Any] | None = None,
        routes: Mapping[str, Callable[..., Awaitable[object]]] | None = None,
        **properties: Any,
    ) -> None:
        if handler is None and not routes:
            raise TypeError("serve() takes a handler, or routes=, or both")
        if handler is not None and not callable(handler):
            raise TypeError(f"serve() takes a coroutine function as handler, not {type(handler).__name__}")
        if process_request is not None and not callable(process_request):
            raise TypeError(f"process_request must be callable, not {type(process_request).__name__}")
        if "listen" in properties:
            raise TypeError("serve() listens by itself; it takes no listen=")
        self._handler = handler
        # Checked now, where serve() is written.
        self._routes = Routes()
        for pattern, route_handler in (routes or {}).items():
            self._routes.add(pattern, route_handler)
        self._process_request = process_request
        # The WebSocketServer's constructor keywords.
        properties = properties_of("serve", properties, SERVER_KEYWORDS)
        # Checked now, each under its own name.
        self._socket_properties = {
            name: WebSocket._properties[name]._checked(properties.pop(name))
            for name in SOCKET_KEYWORDS
            if name in properties
        }
        self._properties = {"host": "" if host is None else host, "port": port, **properties}

    async def _open(self) -> WebSocketServer:
        server = WebSocketServer(**self._properties)
        # Clients of a route go to its handler, the others to handler.
        server._fallback = self._handler
        process_request = self._process_request
        if process_request is not None and _takes_two_arguments(process_request):
            process_request = _with_handshake(
                cast("Callable[[Handshake, Request], Any]", process_request), server
            )
        server._process_request = cast("Callable[[Request], Any] | None", process_request)
        server._socket_properties = self._socket_properties
        for route in self._routes._routes:
            server.route(route.pattern)(route.handler)
        # Bound without blocking the loop: binding may wait for another
        # server of this process to give the address up (a notebook cell run again).
        server._listener = await _wsbind.bind(
            server.host,
            server.port,
            server.listen_backlog_size,
            server.reuse_port,
            server.unix_socket_path,
        )
        server.listen = True
        await wait_until(server._changes, lambda: bool(server.url) or server._server is None)
        if not server.url:
            raise connect_error(server.error_string or "the server stopped before it listened")
        return server


def unix_connect(path: str | os.PathLike[str], uri: str = "ws://localhost/", **properties: Any) -> connect:
    """Opens a WebSocket over the Unix domain socket at ``path`` (websockets: ``unix_connect()``).

    ``uri`` names the server in the request only: its Host header and path,
    and for wss:// the name its certificate must have. The rest is
    :func:`connect`'s, with the socket's ``unix_socket_path`` set to
    ``path``: use it with ``async with``, ``await`` or ``async for``::

        async with wsbind.unix_connect("/run/app.sock", "ws://localhost/chat") as ws:
            ...
    """
    return connect(uri, unix_socket_path=path, **properties)


def unix_serve(
    handler: Callable[[WebSocket], Awaitable[object]] | None,
    path: str | os.PathLike[str],
    **properties: Any,
) -> serve:
    """Runs :func:`serve` on the Unix domain socket at ``path`` (websockets: ``unix_serve()``).

    The server's ``unix_socket_path`` is ``path``: an old socket file that
    nobody listens on any more is replaced, and the server removes its own
    when it stops. Its sockets have no peer address. A proxy on the same
    machine forwards to it (nginx: ``proxy_pass http://unix:/run/app.sock;``)::

        async with wsbind.unix_serve(echo, "/run/app.sock") as server:
            await server.serve_forever()
    """
    return serve(handler, unix_socket_path=path, **properties)
