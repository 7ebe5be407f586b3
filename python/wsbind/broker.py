"""The broker: Redis, which carries group broadcasts between server processes.

A :class:`~wsbind.WebSocketServer` with ``broker="redis://host:6379/0"``
sends a broadcast to a group (``broadcast_text_message(m, group="room")``)
to its own members of the group and publishes it on Redis; every other
server attached to the same Redis with the same ``broker_namespace`` sends
it to its members. The Redis client runs in the native core: no Python
runs per message. Qt has no broker.

Delivery is at most once. A broadcast published while Redis is unreachable,
or while the queue of publications is full, reaches only the members of the
process that sent it (``broker_dropped`` counts it), and Redis keeps nothing
for a process that is away.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

__all__ = ["BrokerState"]


class BrokerState(IntEnum):
    """Where a server's connection to its broker stands (``WebSocketServer.broker_state``)."""

    DISCONNECTED = 0
    """No broker (``broker`` is ""), or the server does not listen."""
    CONNECTING = 1
    """Connecting to Redis, or connecting again after a failure."""
    CONNECTED = 2
    """Publishing, and subscribed to the channel of every group that has a member here."""
    ERROR = 3
    """Redis cannot be reached or went away; ``error_string`` says why. The
    server tries again after a wait that doubles from 0.1 s up to 5 s, and
    meanwhile broadcasts to its own members go on."""


# What the Redis client understands: TCP, TLS, and a Unix socket.
_SCHEMES = ("redis", "rediss", "redis+unix", "unix")


def check_broker(value: Any) -> str:
    """Accepts "" (no broker) or a Redis URL such as "redis://127.0.0.1:6379/0"."""
    if not isinstance(value, str):
        raise TypeError(f"broker must be a str, not {type(value).__name__}")
    if value and urlsplit(value).scheme not in _SCHEMES:
        raise ValueError(f'broker must be a redis:// or rediss:// URL, or "", not {value!r}')
    return value


def check_namespace(value: Any) -> str:
    """Accepts the prefix of the broker's channel names: a non-empty str."""
    if not isinstance(value, str):
        raise TypeError(f"broker_namespace must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError("broker_namespace must not be empty")
    return value


def check_group(value: Any) -> str:
    """Accepts a group's name: a non-empty str."""
    if not isinstance(value, str):
        raise TypeError(f"a group's name must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError("a group's name must not be empty")
    return value
