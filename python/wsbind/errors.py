"""wsbind's exceptions: raised at once when the caller misuses an object.

Failures of the network never raise: they set a socket's status to ERROR with
a readable ``error_string``. The tree::

    Exception
    └── Error                   every exception wsbind raises on purpose
        ├── NotOpenError        sending on a socket whose status is not OPEN
        ├── BufferFullError     sending while too much already waits to be written
        └── InvalidURL          (also a ValueError) not a ws:// or wss:// URL

Wrong argument types raise TypeError, and out-of-range values (a close code
that cannot be sent, say) raise ValueError, as everywhere in Python.
"""

from __future__ import annotations

__all__ = ["BufferFullError", "Error", "InvalidURL", "NotOpenError"]


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
