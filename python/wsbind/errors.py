"""wsbind's exceptions: raised at once when the caller misuses an object, and by the
asyncio and blocking APIs when a connection fails or is over.

In the QML style, failures of the network never raise: they set a socket's
status to ERROR with a readable ``error_string``. The asyncio and blocking
APIs (``wsbind.sync``) raise instead, with the same words: the usual
``OSError`` and ``TimeoutError`` kinds for the network, and these. The tree::

    Exception
    └── Error                       every exception wsbind raises on purpose
        ├── NotOpenError            sending on a socket whose status is not OPEN
        ├── BufferFullError         sending while too much already waits to be written
        ├── InvalidURL              (also a ValueError) not a ws:// or wss:// URL
        ├── HandshakeError          the server refused the opening handshake, or botched it
        └── ConnectionClosed        recv() or send() on a connection that is over
            ├── ConnectionClosedOK      it closed with 1000, 1001 or no code (1005)
            └── ConnectionClosedError   any other code, or it failed

Wrong argument types raise TypeError, and out-of-range values (a close code
that cannot be sent, say) raise ValueError, as everywhere in Python.
"""

from __future__ import annotations

import re
import ssl

__all__ = [
    "BufferFullError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Error",
    "HandshakeError",
    "InvalidURL",
    "NotOpenError",
]


class Error(Exception):
    """The root of wsbind's exceptions."""


class NotOpenError(Error):
    """A message was sent on a socket whose status is not OPEN (Qt returns 0 and sets an error instead)."""


class BufferFullError(Error):
    """A message was sent while more than ``MAX_OUTGOING_BUFFER`` bytes (64 MiB) wait to be written.

    Sending never blocks, so this is how a peer that stops reading is noticed.
    """


class InvalidURL(Error, ValueError):
    """A URL that cannot be parsed, has no host, or is not ws:// or wss://.

    Qt's words for the last: "Unsupported WebSocket scheme".
    """


class HandshakeError(Error):
    """The server did not accept the opening handshake; the text is the socket's ``error_string``.

    ``status_code`` is the HTTP status it answered with instead of 101 (403,
    404, 503…), or None when its answer was not a valid WebSocket handshake
    at all (a wrong ``Sec-WebSocket-Accept``, a subprotocol nobody offered).
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status of the refusal, or None."""


class ConnectionClosed(Error):
    """The connection is over: what ``recv()`` and ``send()`` raise then.

    ``code`` and ``reason`` are the socket's ``close_code`` and
    ``close_reason`` (C++: ``closeCode()``, ``closeReason()``): the peer's
    close frame, 1006 when the connection ended without one, or the code we
    failed it with. The text is the socket's ``error_string`` when it failed.
    Catch :class:`ConnectionClosedOK` for the normal end of a conversation.
    """

    def __init__(self, code: int | None, reason: str = "", message: str | None = None) -> None:
        if message is None:
            message = f"connection closed with {code}" + (f" ({reason})" if reason else "")
        super().__init__(message)
        self.code = code
        """The close code, or None if it never got one."""
        self.reason = reason
        """The close reason ("" for none)."""


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: with 1000 (normal closure), 1001 (going away), or a
    close frame without a code (1005), as websockets counts them."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with another code than 1000, 1001 or 1005, or it failed.

    A failure (1006 for a lost connection, 1002 for a protocol error...) has
    the socket's ``error_string`` as its text.
    """


def connection_closed(code: int | None, reason: str, error: str | None) -> ConnectionClosed:
    """The exception for a connection that ended with ``code``, ``reason`` and, if it failed, ``error``.

    The package's internal API, for the asyncio and blocking faces alike.
    """
    if error is None and code in (1000, 1001, 1005):
        return ConnectionClosedOK(code, reason)
    return ConnectionClosedError(code, reason, error or None)


# The system error number at the end of an I/O error's text: "Connection refused (os error 111)".
_OS_ERROR = re.compile(r"\(os error (\d+)\)$")
_HTTP_STATUS = re.compile(r"^handshake rejected: HTTP (\d+)")


def open_failed(message: str) -> Exception:
    """The exception for a connection attempt that failed with ``error_string`` ``message``.

    Its text is ``message`` exactly. A refused or invalid handshake is a
    :class:`HandshakeError`; the rest is the network's: ``TimeoutError`` for
    the handshake timeout, ``ssl.SSLCertVerificationError`` and
    ``ssl.SSLError`` for TLS, and for the rest the ``OSError`` subclass of the
    system error (``ConnectionRefusedError`` for "Connection refused"), as
    ``socket.create_connection`` would raise. The package's internal API.
    """
    status = _HTTP_STATUS.match(message)
    if status is not None:
        return HandshakeError(message, int(status[1]))
    if message.startswith("handshake failed:") and "connection lost" not in message:
        return HandshakeError(message)
    if message.startswith("handshake timeout"):
        return TimeoutError(message)
    if message.startswith("certificate verify failed"):
        return ssl.SSLCertVerificationError(message)
    if message.startswith("TLS handshake failed"):
        return ssl.SSLError(message)
    number = _OS_ERROR.search(message)
    if number is None:
        return OSError(message)
    errno = int(number[1])
    # OSError(errno, text) picks the subclass for errno; made again with the text alone,
    # its str() is exactly the message.
    error = type(OSError(errno, message))(message)
    error.errno = errno
    return error
