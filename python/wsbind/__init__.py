"""wsbind: Qt Quick's ``WebSocket`` and ``WebSocketServer`` for Python, on a Rust core.

Objects are declared with properties and handlers, tell you when a property
changes, and keep in step through bindings, as in QML::

    from wsbind import WebSocket, WebSocketServer, bind

    server = WebSocketServer(listen=True)
    client = WebSocket(url=bind(lambda: server.url), active=bind(lambda: server.listen),
                       on_text_message_received=print)

Names are QML's in snake_case: ``textMessageReceived`` is
``text_message_received``, ``onStatusChanged:`` is ``on_status_changed=``.

The same objects speak asyncio, with websockets' names::

    async with wsbind.connect("ws://127.0.0.1:8765") as ws:
        await ws.send("hello")
        print(await ws.recv())

See :mod:`wsbind.aio` for ``connect()`` and ``serve()``. Every signal can be
awaited (``await ws.status_changed.wait()``), :mod:`wsbind.sync` is a
blocking face for scripts, and :mod:`wsbind.errors` has the exception tree.
"""

from . import _wsbind
from .aio import connect, serve, unix_connect, unix_serve
from .broadcast import broadcast
from .broker import BrokerState
from .dispatch import quit, run
from .errors import (
    BufferFullError,
    Close,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Error,
    InvalidHandshake,
    InvalidProxy,
    InvalidStatus,
    InvalidURL,
    NotOpenError,
)
from .http import HandshakeResponse, Headers, Request, Response, ResponseHeaders
from .objects import Binding, BoundSignal, Emissions, Object, Property, ReadOnly, Signal, bind
from .retry import backoff
from .server import WebSocketServer
from .status import Status
from .tls import SslConfiguration
from .websocket import WebSocket

__version__: str = _wsbind.__version__

__all__ = [
    "Binding",
    "BoundSignal",
    "BrokerState",
    "BufferFullError",
    "Close",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Emissions",
    "Error",
    "HandshakeResponse",
    "Headers",
    "InvalidHandshake",
    "InvalidProxy",
    "InvalidStatus",
    "InvalidURL",
    "NotOpenError",
    "Object",
    "Property",
    "ReadOnly",
    "Request",
    "Response",
    "ResponseHeaders",
    "Signal",
    "SslConfiguration",
    "Status",
    "WebSocket",
    "WebSocketServer",
    "backoff",
    "bind",
    "broadcast",
    "connect",
    "quit",
    "run",
    "serve",
    "unix_connect",
    "unix_serve",
]
