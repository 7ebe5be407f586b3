"""The status of a WebSocket (QML: ``WebSocket.status``)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Status"]


class Status(IntEnum):
    """QML ``WebSocket.Status``; the values are Qt's."""

    CONNECTING = 0
    """The opening handshake is under way (QML: ``WebSocket.Connecting``)."""
    OPEN = 1
    """The handshake succeeded; messages can be sent (QML: ``WebSocket.Open``)."""
    CLOSING = 2
    """The closing handshake is under way (QML: ``WebSocket.Closing``)."""
    CLOSED = 3
    """No connection (QML: ``WebSocket.Closed``)."""
    ERROR = 4
    """The connection failed; ``error_string`` says why (QML: ``WebSocket.Error``)."""
