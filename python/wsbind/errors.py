"""wsbind's exceptions: misuse raises at once; the asyncio face raises for the network too.

In the QML style, failures of the network never raise: they set a socket's
status to ERROR with a readable ``error_string``. In the asyncio style
(``await wsbind.connect(...)``, ``await ws.recv()``) the same failures raise,
with the same words: ``ConnectionClosed`` once a connection is over, and for
a connection that could not be made, the exception ``connect_error()`` picks
(a refused handshake is an ``InvalidStatus``; the network's failures are
Python's own ``OSError`` kinds, as in websockets). The tree::

    Exception
    ├── Error                       every exception wsbind raises on purpose
    │   ├── NotOpenError            sending on a socket whose status is not OPEN
    │   ├── BufferFullError         sending while too much already waits to be written
    │   ├── InvalidURL              (also a ValueError) not a ws:// or wss:// URL
    │   ├── ConcurrencyError        (also a RuntimeError) two coroutines in recv() at once
    │   ├── ConnectionClosed        recv() or send() on a connection that is over
    │   │   ├── ConnectionClosedOK      closed with 1000, 1001 or 1005
    │   │   └── ConnectionClosedError   any other end: a failure, a protocol error
    │   └── InvalidHandshake        the opening handshake failed (not the network)
    │       ├── InvalidStatus       the server refused it with an HTTP status (403, 503...)
    │       └── InvalidProxy        the proxy refused the tunnel (407, 403, SOCKS5 credentials)
    └── OSError                     connecting failed on the network:
        ├── ConnectionRefusedError, ConnectionResetError, ...   chosen by errno
        ├── TimeoutError            no handshake within handshake_timeout
        └── ssl.SSLError            the TLS handshake failed (SSLCertVerificationError:
                                    the certificate did not verify)

Wrong argument types raise TypeError, and out-of-range values (a close code
that cannot be sent, say) raise ValueError, as everywhere in Python.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable
from typing import NamedTuple

from .http import Headers

__all__ = [
    "BufferFullError",
    "Close",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Error",
    "InvalidHandshake",
    "InvalidProxy",
    "InvalidStatus",
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
    ``await ws.send()`` waits instead, while more than ``write_limit`` bytes wait.
    """


class InvalidURL(Error, ValueError):
    """A URL that cannot be parsed, has no host, or is not ws:// or wss://.

    Qt's words for the last: "Unsupported WebSocket scheme".
    """


class ConcurrencyError(Error, RuntimeError):
    """Two coroutines called ``recv()`` on one socket at once (websockets: ``ConcurrencyError``).

    Which of them should get the next message? Neither guess is right, so
    the second one raises. Let one task receive and hand messages on, or use
    ``async for message in ws`` in one place.
    """


# Close codes after which a connection counts as closed normally: websockets'
# OK_CLOSE_CODES. 1005 is a close frame without a code, which a peer that
# simply closes may send.
_OK_CODES = frozenset({1000, 1001, 1005})


class Close(NamedTuple):
    """A close frame's code and reason (websockets: ``Close``), in ``ConnectionClosed.rcvd`` and ``.sent``.

    A close frame without a code reads as 1005 and "".
    """

    code: int
    """The close code."""
    reason: str
    """The close reason."""


# websockets' rcvd, sent and rcvd_then_sent of a connection's end.
CloseFrames = tuple[Close | None, Close | None, bool | None]
# What ConnectionClosed.of() takes: code, reason, error and the close frames.
ConnectionEnd = tuple[int | None, str, str | None, Close | None, Close | None, bool | None]


class ConnectionClosed(Error):
    """``recv()`` or ``send()`` on a connection that is over (websockets: ``ConnectionClosed``).

    ``code`` and ``reason`` are the socket's ``close_code`` and
    ``close_reason``: the peer's close frame, or 1006 when the connection
    ended without one. ``error`` is the socket's ``error_string`` when the
    connection failed, else None; the message is that text, or says how
    the connection closed. Catch :class:`ConnectionClosedOK` and
    :class:`ConnectionClosedError` to tell a normal end from a failure.

    As in websockets, ``rcvd`` and ``sent`` are the close frames that came
    and went (a :class:`Close`, or None for none), and ``rcvd_then_sent``
    says which came first when both did.
    """

    def __init__(
        self,
        code: int | None,
        reason: str = "",
        error: str | None = None,
        rcvd: Close | None = None,
        sent: Close | None = None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.code = code
        """The close code: the peer's, 1006 when the connection ended without a close frame
        (a failed attempt to connect included), or None for a socket that never tried to connect."""
        self.reason = reason
        """The close reason that came with ``code``."""
        self.error = error
        """Why the connection failed (the socket's ``error_string``); None for a close."""
        self.rcvd = rcvd
        """The peer's close frame, or None if none came (websockets: ``rcvd``)."""
        self.sent = sent
        """Our close frame, or our echo of the peer's, or None if none went out (websockets: ``sent``)."""
        self.rcvd_then_sent = rcvd_then_sent
        """Whether the peer's frame came first (it closed), when both went; else None (websockets: same)."""
        if error:
            message = error
        else:
            message = f"connection closed with {code}" + (f": {reason}" if reason else "")
        super().__init__(message)

    @staticmethod
    def of(
        code: int | None,
        reason: str = "",
        error: str | None = None,
        rcvd: Close | None = None,
        sent: Close | None = None,
        rcvd_then_sent: bool | None = None,
    ) -> ConnectionClosed:
        """The exception for a connection that ended so: OK for 1000, 1001 or 1005 without an error."""
        kind = ConnectionClosedOK if error is None and code in _OK_CODES else ConnectionClosedError
        return kind(code, reason, error, rcvd, sent, rcvd_then_sent)


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: 1000, 1001 (going away) or 1005 (no code), as in websockets.

    ``async for message in ws`` ends quietly on it.
    """


class ConnectionClosedError(ConnectionClosed):
    """The connection ended any other way: a failure (``error`` says which), a protocol error, 1011...

    ``async for message in ws`` raises it.
    """


class InvalidHandshake(Error):
    """The opening handshake failed, and not because of the network (websockets: ``InvalidHandshake``).

    The message is the socket's ``error_string``, e.g. "handshake failed:
    wrong Sec-WebSocket-Accept".
    """


class InvalidStatus(InvalidHandshake):
    """The server refused the opening handshake with an HTTP status (websockets: ``InvalidStatus``).

    ``status_code`` is the status (401, 403, 404, 503...), ``reason_phrase``
    its words and ``headers`` the response's headers (a redirect's
    ``Location``, a 401's ``WWW-Authenticate``, a 503's ``Retry-After``);
    the message is the socket's ``error_string``, "handshake rejected: HTTP
    403 Forbidden". Statuses 500, 502, 503 and 504 are worth retrying;
    ``async for ws in wsbind.connect(url)`` does.
    """

    def __init__(
        self,
        message: str,
        status_code: int,
        reason_phrase: str = "",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status the server answered with."""
        self.reason_phrase = reason_phrase
        """The words after the status, e.g. "Forbidden"."""
        self.headers = Headers(headers)
        """The response's headers, looked up by name whatever its case."""

    @property
    def response(self) -> InvalidStatus:
        """The refusal itself, as websockets' code reads it: ``exc.response.status_code``, ``.headers``.

        It has ``status_code``, ``reason_phrase`` and ``headers``; wsbind
        keeps no body of a refusal.
        """
        return self


class InvalidProxy(InvalidHandshake):
    """The proxy refused the tunnel to the server (websockets: ``InvalidProxyStatus``).

    ``status_code`` is an HTTP proxy's status (407 for credentials it wants,
    403...), None for a SOCKS5 proxy that refused the user name or password;
    the message is the socket's ``error_string``, "proxy refused the tunnel:
    HTTP 407 Proxy Authentication Required". Only a 502, 503 or 504 (the
    proxy cannot reach the server now) is worth retrying;
    ``async for ws in wsbind.connect(url)`` does.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status the proxy answered with; None for SOCKS5."""


# How the native core words a refused handshake: protocol/handshake.rs, check_response.
_REJECTED = re.compile(r"handshake rejected: HTTP (\d{3})(?: (.*))?$")
# How it words a proxy's refusal: net/proxy.rs.
_PROXY_REFUSED = re.compile(r"proxy refused the (?:tunnel: HTTP (\d{3})|user name or password)")
# How Rust's io::Error ends its text: "Connection refused (os error 111)".
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def connect_error(error_string: str, headers: Iterable[tuple[str, str]] | None = None) -> Exception:
    """The exception ``await wsbind.connect()`` raises for a socket that failed with ``error_string``.

    The native core tells failures in words only, so this reads the words,
    which it writes in few, fixed forms (``src/conn/client.rs``,
    ``src/protocol/handshake.rs``, ``src/net/tls.rs``): "handshake rejected:
    HTTP 403 Forbidden" is an :class:`InvalidStatus`; "handshake timeout" a
    TimeoutError; an operating system error ("(os error 111)") the OSError
    subclass of its errno (ConnectionRefusedError...), with ``errno`` set,
    and a connection lost without one ConnectionError; TLS failures
    ``ssl.SSLError`` (``ssl.SSLCertVerificationError`` when the certificate
    did not verify); other handshake failures :class:`InvalidHandshake`;
    what is left, a name that does not resolve say, OSError. The message is
    always ``error_string`` itself, and it serves a server that cannot
    listen as well. ``headers`` are those of the response that refused the
    handshake, for an :class:`InvalidStatus`.
    """
    rejected = _REJECTED.match(error_string)
    if rejected:
        return InvalidStatus(error_string, int(rejected[1]), rejected[2] or "", headers or ())
    proxy = _PROXY_REFUSED.search(error_string)
    if proxy:
        return InvalidProxy(error_string, int(proxy[1]) if proxy[1] else None)
    if error_string.startswith("handshake timeout"):
        return TimeoutError(error_string)
    if error_string.startswith(("certificate verify failed", "TLS handshake failed")):
        verify = error_string[0] == "c"
        tls = ssl.SSLCertVerificationError(error_string) if verify else ssl.SSLError(error_string)
        # str() of an SSLError is its strerror, or else the repr of its args.
        tls.strerror = error_string
        return tls
    os_error = _OS_ERROR.search(error_string)
    if os_error:
        number = int(os_error[1])
        # OSError(errno, text) picks the subclass; made again from the text
        # alone, so that str() is error_string rather than "[Errno 111] ...".
        kind = type(OSError(number, error_string))
        exc = kind(error_string)
        exc.errno = number
        return exc
    if "connection lost" in error_string:
        # The peer hung up mid-handshake without an errno: EOF.
        return ConnectionError(error_string)
    if error_string.startswith("handshake failed"):
        return InvalidHandshake(error_string)
    return OSError(error_string)
