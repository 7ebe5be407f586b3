"""Sending one message to many sockets, framed once in the native core."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import _wsbind
from .websocket import WebSocket, open_connections

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["broadcast"]

logger = logging.getLogger("wsbind")


def broadcast(sockets: Iterable[WebSocket], message: str | Buffer, raise_exceptions: bool = False) -> int:
    """Sends ``message`` (a str as text, bytes-like as binary) to every open socket in ``sockets``.

    Returns how many sockets took it. The message crosses into the native
    core once: a server's sockets share one set of frames, and no Python
    loop runs per socket. Safe from any thread. Qt has none; the names are
    websockets' ``broadcast()``'s, and so is what it skips:

    - a socket that is not open, quietly;
    - a socket that cannot take the message, its outgoing queue being full
      (a peer that stopped reading): a warning is logged for each, or, with
      ``raise_exceptions=True``, once the others have the message an
      ExceptionGroup is raised with a ``BufferFullError`` for each (its
      note names the socket).
    """
    chosen, connections = open_connections(sockets)
    reached, skipped = _wsbind.broadcast(connections, message)
    if not skipped:
        return reached
    errors = []
    for place, error in skipped:
        socket = chosen[place]
        if raise_exceptions:
            error.add_note(f"skipped by broadcast: {socket!r}")
            errors.append(error)
        else:
            logger.warning("broadcast skipped %r: %s", socket, error)
    if errors:
        raise ExceptionGroup(f"broadcast skipped {len(errors)} of the sockets", errors)
    return reached
