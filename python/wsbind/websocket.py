"""``WebSocket``: a WebSocket connection as QML's ``WebSocket`` type has it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from . import _wsbind
from .dispatch import Dispatcher, current
from .errors import Error, NotOpenError
from .objects import Object, Property, Signal
from .status import Status

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["WebSocket"]

# RFC 7230 token characters: what a subprotocol name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_LIVE = (Status.CONNECTING, Status.OPEN, Status.CLOSING)


def check_url(value: Any) -> str:
    """Accepts "" (no URL) or a ws:// or wss:// URL; raises InvalidURL otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"url must be a str, not {type(value).__name__}")
    if value:
        _wsbind.check_url(value)
    return value


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, not {type(value).__name__}")
    return value


def check_subprotocols(value: Any) -> list[str]:
    """Accepts a list of subprotocol names (HTTP tokens), in order of preference."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"subprotocols must be a list of str, not {type(value).__name__}")
    names = list(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"subprotocol names must be str, not {type(name).__name__}")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid subprotocol name (an HTTP token)")
    return names


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
        "True when the peer closes: set it to False and back to True to reconnect.",
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

    text_message_received = Signal(
        "message", doc="A text message arrived, as ``str`` (QML: ``textMessageReceived``)."
    )
    binary_message_received = Signal(
        "message", doc="A binary message arrived, as ``bytes`` (QML: ``binaryMessageReceived``)."
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
        # Handed out by a server: cannot connect anywhere by itself.
        self._accepted = False
        # False until the constructor's keywords are all applied.
        self._completed = False
        self._dispatcher: Dispatcher = current()
        super().__init__(**kwargs)

    @classmethod
    def _accept(
        cls,
        dispatcher: Dispatcher,
        conn: _wsbind.Connection,
        url: str,
        requested: list[str],
        negotiated: str,
    ) -> WebSocket:
        """The server's side of a connection that just finished its handshake."""
        ws = cls.__new__(cls)
        ws._conn = conn
        ws._reopen = False
        ws._accepted = True
        ws._completed = False
        ws._dispatcher = dispatcher
        Object.__init__(ws)
        ws._values.update(
            url=url,
            active=True,
            status=Status.OPEN,
            requested_subprotocols=requested,
            negotiated_subprotocol=negotiated,
        )
        dispatcher.register(conn.id, ws)
        return ws

    def __repr__(self) -> str:
        return f"<WebSocket {self.url or '(no url)'} {self.status.name}>"

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

    def _open_connection(self, method: str) -> _wsbind.Connection:
        conn = self._conn
        if conn is None or self.status is not Status.OPEN:
            raise NotOpenError(f"{method}() needs an OPEN socket; this one is {self.status.name}")
        return conn

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake (C++: ``QWebSocket::close``).

        ``code`` must be one that may be sent (1000-1003, 1007-1011, 3000-4999)
        and ``reason`` at most 123 bytes of UTF-8, or ValueError is raised.
        ``active`` is left as it is; closing a socket that is not open does nothing.
        """
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"close code must be an int, not {type(code).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"close reason must be a str, not {type(reason).__name__}")
        self._reopen = False
        if self._conn is None:
            return
        self._conn.close(code, reason)
        if self.status is not Status.CLOSING:
            self._set_status(Status.CLOSING)

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
        elif self._conn is not None:
            self.close(1000)

    def _url_changed(self) -> None:
        if not self._completed or not self.active:
            return
        if self._conn is None:
            self._open()
        else:
            self.close(1000)
            self._reopen = True

    def _open(self) -> None:
        if self._conn is not None:
            # Still closing: open once that is over.
            self._reopen = self.status is Status.CLOSING
            return
        if self._accepted:
            raise Error("a socket a server accepted cannot be reopened")
        if not self.url:
            return
        self._conn = _wsbind.connect(self._dispatcher.queue, self.url, self.requested_subprotocols)
        self._dispatcher.register(self._conn.id, self)
        self._set_status(Status.CONNECTING)

    def _set_status(self, status: Status, error: str = "") -> None:
        # As Qt: the error string is in place before status_changed runs.
        self._write_all({"error_string": error, "status": status})

    def _event(self, kind: int, payload: Any) -> None:
        if kind == _wsbind.EVENT_TEXT:
            self.text_message_received.emit(payload)
        elif kind == _wsbind.EVENT_BINARY:
            self.binary_message_received.emit(payload)
        elif kind == _wsbind.EVENT_CONNECTED:
            self._write("negotiated_subprotocol", payload)
            self._set_status(Status.OPEN)
        elif kind == _wsbind.EVENT_CLOSING:
            self._set_status(Status.CLOSING)
        elif kind == _wsbind.EVENT_CLOSED:
            self._closed(*payload)

    def _closed(self, code: int, reason: str, error: str | None) -> None:
        if self._conn is not None:
            self._dispatcher.unregister(self._conn.id)
        self._conn = None
        self._write("close_code", code)
        self._write("close_reason", reason)
        self._write("negotiated_subprotocol", "")
        if error is None:
            self._set_status(Status.CLOSED)
        else:
            self._set_status(Status.ERROR, error)
        if self._reopen and self.active:
            self._reopen = False
            self._open()

    def _shutdown(self) -> None:
        if self._conn is not None:
            self._conn.close(1001, "")
