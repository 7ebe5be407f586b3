"""Sending one message to many sockets, framed once in the native core."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import _wsbind
from .websocket import WebSocket, open_connections

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["broadcast"]


def broadcast(sockets: Iterable[WebSocket], message: str | Buffer) -> int:
    """Sends ``message`` (a str as text, bytes-like as binary) to every open socket in ``sockets``.

    Returns how many sockets took it. The message crosses into the native
    core once: a server's sockets share one set of frames, and no Python
    loop runs per socket. Sockets that are not open, or whose outgoing queue
    is full, are skipped rather than raising, as websockets' ``broadcast()``
    does (Qt has none). Safe from any thread.
    """
    return _wsbind.broadcast(open_connections(sockets), message)
