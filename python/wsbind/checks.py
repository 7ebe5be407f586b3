"""The checks that properties of ``WebSocket`` and ``WebSocketServer`` apply to assigned values.

Each takes what the user assigned and returns the value to store, or raises
TypeError for a value of the wrong type and ValueError (``InvalidURL`` for a
URL) for one that is out of range, so that misuse is refused at once, where
it happens, rather than when a connection is made later. Both classes use
these same functions, so a rule such as what an HTTP header may hold is
written once.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from . import _wsbind
from .tls import SslConfiguration

__all__ = [
    "check_bool",
    "check_compression",
    "check_count",
    "check_header_value",
    "check_headers",
    "check_origin",
    "check_optional_seconds",
    "check_proxy",
    "check_seconds",
    "check_unix_socket_path",
    "check_size",
    "check_ssl",
    "check_subprotocols",
    "check_time_limit",
    "check_url",
]

# RFC 7230 token characters: what a header or subprotocol name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_header_value(value: Any, what: str = "a header value") -> str:
    """Accepts a str that can be sent as an HTTP header value: TAB, space and visible ASCII.

    That is U+0009 and U+0020 to U+007E. RFC 7230 also tolerates bytes
    0x80-0xFF ("obs-text"), but a str would need an encoding the peer has
    to guess, and control characters would let a value end the header
    early (``\\r\\n``) or be refused by the peer. The native side checks
    the headers it sends by this same rule: keep the two in step.
    ``what`` names the value in the error message, e.g. ``"origin"``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    for c in value:
        if not (" " <= c <= "~" or c == "\t"):
            raise ValueError(
                f"{what} {value!r} cannot be sent in an HTTP header: {c!r} is not "
                "a tab, a space or visible ASCII"
            )
    return value


def check_origin(value: Any) -> str:
    """Accepts an origin such as "https://example.com", "" for none: a header value."""
    return check_header_value(value, "origin")


def check_url(value: Any) -> str:
    """Accepts "" (no URL) or a ws:// or wss:// URL; raises InvalidURL otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"url must be a str, not {type(value).__name__}")
    if value:
        _wsbind.check_url(value)
    return value


def check_bool(value: Any) -> bool:
    """Accepts True or False only: 0, 1 or "yes" are more likely mistakes than intent."""
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, not {type(value).__name__}")
    return value


def _at_least_one(value: Any, unit: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"expected at least 1 {unit}, not {value}")
    # The native core holds sizes and counts in 64 bits.
    if value > sys.maxsize:
        raise ValueError(f"expected at most {sys.maxsize} {unit}s, not {value}")
    return value


def check_size(value: Any) -> int:
    """Accepts a size in bytes: an int of at least 1."""
    return _at_least_one(value, "byte")


def check_count(value: Any) -> int:
    """Accepts a number of messages: an int of at least 1."""
    return _at_least_one(value, "message")


def check_time_limit(value: Any) -> float | None:
    """Accepts a time limit in seconds; None, or a negative number as Qt takes, for none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return None
    return check_optional_seconds(value)


def check_seconds(value: Any) -> float:
    """Accepts a duration in seconds: a number > 0 (and under 1e9, which the runtime's timers take)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"expected a number of seconds, not {type(value).__name__}")
    if not 0 < value < 1e9:
        raise ValueError(f"expected a number of seconds > 0, not {value}")
    return float(value)


def check_optional_seconds(value: Any) -> float | None:
    """Accepts a duration in seconds, or None to turn the feature off."""
    return None if value is None else check_seconds(value)


# Headers the opening handshake writes itself, each from its own property.
_HANDSHAKE_HEADERS = {
    "host": "url",
    "upgrade": None,
    "connection": None,
    "content-length": None,
    "transfer-encoding": None,
    "origin": "origin",
    "sec-websocket-key": None,
    "sec-websocket-version": None,
    "sec-websocket-extensions": None,
    "sec-websocket-protocol": "requested_subprotocols",
}


def check_headers(value: Any) -> dict[str, str]:
    """Accepts a mapping of HTTP header names to values; returns a dict of its own.

    A copy, so that changing the mapping afterwards cannot slip an unchecked
    value past this check. A mapping, not only a dict, so that another
    socket's ``request_headers`` (a read-only view) can be assigned.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"request_headers must be a dict of str to str, not {type(value).__name__}")
    headers = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid HTTP header name")
        if name.lower() in _HANDSHAKE_HEADERS:
            instead = _HANDSHAKE_HEADERS[name.lower()]
            hint = f"; set {instead} instead" if instead else ""
            raise ValueError(f"the opening handshake writes {name} itself{hint}")
        headers[name] = check_header_value(item, f"the value of header {name}")
    return headers


def check_compression(value: Any) -> str | None:
    """Accepts "deflate" (permessage-deflate, RFC 7692) or None (no compression)."""
    if value is not None and value != "deflate":
        raise ValueError(f'compression must be "deflate" or None, not {value!r}')
    return value  # type: ignore[no-any-return]


def check_proxy(value: Any) -> str | None:
    """Accepts "" (the environment decides), None (direct), or a proxy URL."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"proxy must be a str or None, not {type(value).__name__}")
    if value:
        _wsbind.check_proxy(value)
    return value


def check_ssl(value: Any) -> SslConfiguration | None:
    """Accepts an SslConfiguration, or None for the defaults."""
    if value is not None and not isinstance(value, SslConfiguration):
        raise TypeError(
            f"ssl_configuration must be a wsbind.SslConfiguration or None, not {type(value).__name__}"
        )
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


# sockaddr_un's sun_path: 108 bytes on Linux, the last one a NUL.
_UNIX_PATH_MAX = 107


def check_unix_socket_path(value: Any) -> str | None:
    """Accepts None (TCP) or the path of a Unix domain socket, a str or a path object."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"unix_socket_path must be a str, a path or None, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError("unix_socket_path must be a str path, not bytes")
    if not path:
        raise ValueError('unix_socket_path is None for TCP, not ""')
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise ValueError(
            f"a Unix socket's path is at most {_UNIX_PATH_MAX} bytes, and {path!r} is "
            f"{len(os.fsencode(path))}: choose a shorter one, or a relative one"
        )
    return path
