"""HTTP on a server's own port: the :class:`Request` a handler gets and the :class:`Response` it gives.

A :class:`~wsbind.WebSocketServer` answers plain HTTP requests on the port
its WebSockets use, so that a page and the socket it opens come from one
address (Qt has no such thing; websockets' ``process_request`` does the
same). A handler gets a :class:`Request` and gives a :class:`Response`,
or what one is made of::

    server.http_route("/healthz", lambda request: "ok")

    @server.http_route("/hello/{name}")
    def hello(request, name):
        return Response(body=f"<p>Hello {name}</p>", content_type="text/html")

A Response to an upgrade request refuses the WebSocket: that is where
authentication goes (a 401 with ``WWW-Authenticate``, a redirect to a
login page).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, cast

from . import _wsbind
from .checks import check_header_value

__all__ = ["HandshakeResponse", "Headers", "Request", "Response", "ResponseHeaders"]

# RFC 9110 token characters: what a header name is made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Headers the server writes itself, from the body it sends.
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def split_target(target: str) -> tuple[str, str]:
    """A request target's path and query, as sent.

    Not ``urlsplit()``, which reads ``//private/x`` as a host "private" and
    the path ``/x``: a handler that guards ``/private`` would let it through.
    """
    if not target.startswith("/") and "://" in target:
        # The absolute form, which a server must take too (RFC 9112 §3.2.2),
        # and which urlsplit reads right: its authority comes first.
        absolute = urllib.parse.urlsplit(target)
        return absolute.path or "/", absolute.query
    path, _, query = target.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


class Headers(Mapping[str, str]):
    """HTTP headers, a request's or a response's, looked up by name in any case (websockets: ``Headers``).

    ``headers["Host"]`` gives the value, several values of one name joined
    by ", "; ``get_all(name)`` gives them apart; iterating gives each name
    once, in the order received; ``raw`` is every (name, value) pair.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: Iterable[tuple[str, str]] = ()) -> None:
        # A tuple: a socket's request_headers must not change but by assignment.
        self.raw: tuple[tuple[str, str], ...] = tuple(raw)
        """Every (name, value) pair, in the order received."""

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order ([] for none)."""
        lower = name.lower()
        return [v for n, v in self.raw if n.lower() == lower]

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self.raw:
            if name.lower() not in seen:
                seen.add(name.lower())
                yield name

    def __len__(self) -> int:
        return len({n.lower() for n, _ in self.raw})

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


class ResponseHeaders(Headers):
    """A :class:`Response`'s headers: :class:`Headers` that can be added to (websockets: ``Headers``).

    ``headers["WWW-Authenticate"] = 'Basic realm="chat"'`` adds a header,
    as websockets' does (a name may come twice: Set-Cookie); ``del
    headers[name]`` removes every header of that name. Each is checked as
    it comes: a name that is not a token, a value with a line break, or a
    header the server writes itself (Content-Length...) raises ValueError.
    """

    __slots__ = ()

    def __setitem__(self, name: str, value: str) -> None:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid HTTP header name")
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"the server writes {name} itself; a response cannot set it")
        check_header_value(value, f"header {name}")
        self.raw = (*self.raw, (name, value))

    def __delitem__(self, name: str) -> None:
        lower = name.lower()
        kept = tuple(pair for pair in self.raw if pair[0].lower() != lower)
        if len(kept) == len(self.raw):
            raise KeyError(name)
        self.raw = kept


class HandshakeResponse(NamedTuple):
    """The 101 that opened a WebSocket, as ``ws.response`` gives it (websockets: ``Response``).

    On a client's socket the server's answer, as received; on a server's
    socket the answer it sent.
    """

    status_code: int
    """101."""
    reason_phrase: str
    """"Switching Protocols"."""
    headers: Headers
    """The response's headers (Upgrade, Sec-WebSocket-Accept, Server...)."""
    body: bytes = b""
    """Always empty: a 101 has none."""


class Request:
    """An HTTP request that came to a server's port (websockets: ``Request``).

    Handlers of ``http_request``, ``http_route()`` and ``serve(process_request=)``
    get it. ``upgrade`` is True for a WebSocket's opening request, which a
    :class:`Response` refuses and None lets through.
    """

    __slots__ = (
        "_native",
        "body",
        "headers",
        "method",
        "params",
        "path",
        "peer_address",
        "peer_port",
        "query",
        "target",
        "upgrade",
    )

    def __init__(self, native: _wsbind.HttpRequest) -> None:
        self._native = native
        self.method: str = native.method
        """"GET", "POST", ... as sent."""
        self.target: str = native.target
        """The path and query as sent, percent-encoded: ``/chat?room=a%20b``."""
        path, query = split_target(self.target)
        self.path: str = urllib.parse.unquote(path)
        """The path, percent-decoded: ``/chat``."""
        self.query: dict[str, str] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        """The query's parameters, decoded (the last value of a name given twice): ``{"room": "a b"}``."""
        self.headers = Headers(native.headers)
        """The request's headers."""
        self.body: bytes = native.body
        """The body (b"" for none; at most 64 KiB, longer ones get 413)."""
        self.upgrade: bool = native.upgrade
        """Whether the client asks for a WebSocket."""
        self.params: dict[str, str] = {}
        """What the route's ``{name}`` parts matched, once a route matched."""
        addresses = native.addresses
        self.peer_address: str = addresses.peer_address
        """The client's address (Qt: ``peerAddress``)."""
        self.peer_port: int = addresses.peer_port
        """The client's port."""

    def respond(
        self, response: Response | str | bytes | os.PathLike[str] | dict[str, Any] | list[Any]
    ) -> None:
        """Answers the request (a later answer replaces it until the handlers are done).

        Takes a :class:`Response` or what :meth:`Response.of` makes one of.
        An ``http_request`` handler answers this way; route handlers may
        simply return the response instead.
        """
        converted = Response.of(response)
        if converted is None:
            raise TypeError("respond() takes a response, not None")
        converted._send(self._native)

    @property
    def answered(self) -> bool:
        """Whether a response was given."""
        return self._native.answered

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


def opened_request(
    target: str, headers: tuple[tuple[str, str], ...], peer_address: str, peer_port: int
) -> Request:
    """The :class:`Request` of an opening handshake that is over, for ``WebSocket.request``.

    Made from what the socket keeps anyway, when it is read: a GET of
    ``target`` with ``headers`` (the tuple itself, not a copy), no body,
    already answered with 101.
    """
    return Request(cast("_wsbind.HttpRequest", _Opened(target, headers, peer_address, peer_port)))


class _Peer(NamedTuple):
    """An opened request's ``addresses``: the client's side only."""

    peer_address: str
    peer_port: int


class _Opened:
    """Stands in for the native request under :func:`opened_request`'s Request: what it reads, and
    an answer that cannot be changed."""

    __slots__ = ("addresses", "headers", "target")

    method = "GET"
    body = b""
    upgrade = True
    answered = True

    def __init__(self, target: str, headers: tuple[tuple[str, str], ...], peer_address: str, peer_port: int):
        self.target = target
        self.headers = headers
        self.addresses = _Peer(peer_address, peer_port)

    def respond(self, *args: object, **kwargs: object) -> None:
        # Not at the top: errors.py imports this module.
        from .errors import Error

        raise Error("this request opened a WebSocket: it was answered with 101, and cannot be answered again")

    def finish(self) -> None:
        pass


class Response:
    """An HTTP response: a status, headers and a body (websockets: ``Response``).

    ``body`` is a ``str`` (sent in UTF-8, ``text/plain`` unless
    ``content_type`` says otherwise), ``bytes`` (``application/octet-stream``)
    or a :class:`pathlib.Path` of a file, read off the server's thread and
    typed by its extension (a file over the server's ``max_file_size`` gets
    500)::

        Response(body="<h1>hi</h1>", content_type="text/html")
        Response(401, headers={"WWW-Authenticate": 'Basic realm="chat"'})
        Response.redirect("/login")
    """

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: str | bytes | bytearray | memoryview | os.PathLike[str] = b"",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None:
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"status must be an int, not {type(status).__name__}")
        if not 200 <= status <= 599:
            raise ValueError(f"an HTTP response's status is 200 to 599, not {status}")
        if not isinstance(body, (str, bytes, bytearray, memoryview, os.PathLike)):
            raise TypeError(f"body must be a str, bytes or a path, not {type(body).__name__}")
        if status in (204, 304) and (isinstance(body, os.PathLike) or len(body)):
            raise ValueError(f"a {status} response has no body (RFC 9110)")
        if isinstance(headers, Headers):
            pairs: Iterable[tuple[str, str]] = headers.raw
        elif isinstance(headers, Mapping):
            pairs = headers.items()
        else:
            pairs = headers or ()
        checked = ResponseHeaders()
        for name, value in pairs:
            checked[name] = value
        if content_type is not None:
            check_header_value(content_type, "content_type")
        self.status = status
        """The status code: 200, 404..."""
        self.body = bytes(body) if isinstance(body, (bytearray, memoryview)) else body
        """A str, bytes, or the path of a file."""
        self.headers = checked
        """The headers: ``headers["X-Why"] = "members only"`` adds one, as websockets' do."""
        self.content_type = content_type
        """The Content-Type; None picks one from the body."""

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        """A redirect to ``location`` (302 Found; 301, 303, 307, 308 as given)."""
        return cls(status, headers={"Location": location})

    @classmethod
    def of(cls, value: Any) -> Response | None:
        """The response a handler's return value stands for.

        A Response as it is; a str, bytes or path as the body of a 200; a
        dict or list as JSON; None stays None (the server goes on: a route
        further, the static folder, the WebSocket handshake or 404).
        """
        if value is None or isinstance(value, Response):
            return value
        if isinstance(value, (dict, list)):
            return cls(body=json.dumps(value), content_type="application/json")
        if isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike)):
            return cls(body=cast("str | bytes | os.PathLike[str]", value))
        raise TypeError(
            f"an HTTP handler returns a Response, str, bytes, a path, a dict, a list or None, "
            f"not {type(value).__name__}"
        )

    def _send(self, native: _wsbind.HttpRequest) -> None:
        """Hands the response to the waiting request."""
        headers = list(self.headers.raw)
        has_type = any(name.lower() == "content-type" for name, _ in headers)
        if self.content_type is not None and not has_type:
            headers.append(("Content-Type", self.content_type))
            has_type = True
        body = self.body
        if isinstance(body, os.PathLike):
            # The native side types a file by its extension when no type is given.
            native.respond(self.status, headers, file=str(Path(body)))
            return
        if isinstance(body, str):
            if not has_type:
                headers.append(("Content-Type", "text/plain; charset=utf-8"))
            body = body.encode()
        native.respond(self.status, headers, body)

    def __repr__(self) -> str:
        return f"<Response {self.status}>"
