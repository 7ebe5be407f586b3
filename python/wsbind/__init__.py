"""wsbind: Qt Quick's ``WebSocket`` and ``WebSocketServer`` for Python, on a Rust core.

Objects are declared with properties and handlers, tell you when a property
changes, and keep in step through bindings, as in QML::

    from wsbind import WebSocket, WebSocketServer, bind

    server = WebSocketServer(listen=True)
    client = WebSocket(url=bind(lambda: server.url), active=bind(lambda: server.listen),
                       on_text_message_received=print)

Names are QML's in snake_case: ``textMessageReceived`` is
``text_message_received``, ``onStatusChanged:`` is ``on_status_changed=``.
Every signal can be awaited (``await ws.status_changed.wait()``), and
:mod:`wsbind.sync` is a blocking face for scripts. See :mod:`wsbind.errors`
for the exception tree.
"""

from . import _wsbind
from .broadcast import broadcast
from .dispatch import quit, run
from .errors import (
    BufferFullError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Error,
    HandshakeError,
    InvalidURL,
    NotOpenError,
)
from .objects import Binding, BoundSignal, Emissions, Object, Property, Signal, bind
from .server import WebSocketServer
from .status import Status
from .tls import SslConfiguration
from .websocket import WebSocket

__version__: str = _wsbind.__version__

__all__ = [
    "Binding",
    "BoundSignal",
    "BufferFullError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Emissions",
    "Error",
    "HandshakeError",
    "InvalidURL",
    "NotOpenError",
    "Object",
    "Property",
    "Signal",
    "SslConfiguration",
    "Status",
    "WebSocket",
    "WebSocketServer",
    "bind",
    "broadcast",
    "quit",
    "run",
]
