"""wsbind's private native module: sockets and the protocol on tokio.

The public API is the ``wsbind`` package; these are the pieces it is built on.
"""

from typing import Any, final

from typing_extensions import Buffer

__all__ = [
    "Connection",
    "EVENT_ACCEPT_FAILED",
    "EVENT_BINARY",
    "EVENT_CLIENT_CONNECTED",
    "EVENT_CLOSED",
    "EVENT_CLOSING",
    "EVENT_CONNECTED",
    "EVENT_LISTENING",
    "EVENT_LISTEN_FAILED",
    "EVENT_STOPPED",
    "EVENT_TEXT",
    "EventQueue",
    "MAX_INCOMING_FRAME_SIZE",
    "MAX_INCOMING_MESSAGE_SIZE",
    "MAX_OUTGOING_BUFFER",
    "MAX_PENDING_EVENT_BYTES",
    "Server",
    "check_url",
    "connect",
    "__version__",
]

__version__: str

EVENT_CONNECTED: int
EVENT_TEXT: int
EVENT_BINARY: int
EVENT_CLOSING: int
EVENT_CLOSED: int
EVENT_LISTENING: int
EVENT_LISTEN_FAILED: int
EVENT_CLIENT_CONNECTED: int
EVENT_ACCEPT_FAILED: int
EVENT_STOPPED: int

MAX_INCOMING_MESSAGE_SIZE: int
"""Largest incoming message, 64 MiB; over it the connection closes with 1009."""
MAX_INCOMING_FRAME_SIZE: int
"""Largest incoming frame payload, 16 MiB."""
MAX_OUTGOING_BUFFER: int
"""Bytes that may wait to be written on one socket before sending raises BufferFullError, 64 MiB."""
MAX_PENDING_EVENT_BYTES: int
"""Bytes of received messages that may wait for Python before sockets stop reading, 16 MiB."""

def check_url(url: str) -> None:
    """Raises ``InvalidURL`` unless ``url`` is a ws:// or wss:// URL with a host."""

def connect(queue: EventQueue, url: str, subprotocols: list[str]) -> Connection:
    """Opens a connection to ``url`` in the background; its events go to ``queue``."""

@final
class EventQueue:
    """A queue of ``(id, kind, payload)`` events for the objects one Python thread serves."""

    def __new__(cls, *, wakeup_fd: bool = False) -> EventQueue: ...
    def fileno(self) -> int | None:
        """The file descriptor that becomes readable when events arrive, or None."""
    def take(self) -> list[tuple[int, int, Any]]:
        """Every event that has arrived; never blocks."""
    def wait(self, timeout: float) -> list[tuple[int, int, Any]]:
        """Blocks, without the GIL, until events arrive, ``timeout`` s pass or the queue closes."""
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
    def send_text(self, message: str) -> int:
        """Queues a text message; returns its size in bytes of UTF-8."""
    def send_binary(self, data: Buffer) -> int:
        """Queues a binary message from any bytes-like object; returns its size."""
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake with ``code`` and ``reason``."""
    def abort(self) -> None:
        """Drops the TCP connection without a closing handshake."""

@final
class Server:
    """A listening server; dropping the handle stops it."""

    def __new__(
        cls,
        queue: EventQueue,
        host: str,
        port: int,
        *,
        name: str = ...,
        subprotocols: list[str] = ...,
        accepting: bool = True,
    ) -> Server: ...
    @property
    def id(self) -> int:
        """The id under which this server's events arrive."""
    def set_name(self, name: str) -> None:
        """Sets the ``Server`` header of later handshakes."""
    def set_subprotocols(self, subprotocols: list[str]) -> None:
        """Sets the subprotocols that later handshakes may pick from."""
    def set_accepting(self, accepting: bool) -> None:
        """Pauses (False) or resumes (True) accepting connections."""
    def stop(self) -> None:
        """Stops listening and closes every client with 1001."""
