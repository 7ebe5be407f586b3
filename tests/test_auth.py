"""A client's HTTP authentication (Qt 6.6 ``authenticationRequired``), against the
`websockets` library's server with a ``process_request`` that demands Basic or Digest
(RFC 7616, verified here with hashlib) before it upgrades."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest

from conftest import TIMEOUT, echo, wait_until, websockets_server
from wsbind import Status, WebSocket

USER, PASSWORD, REALM = "ada", "s3cret:pw", "wsbind tests"
HASHES: dict[str, Callable[[bytes], Any]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def h(algorithm: str, text: str) -> str:
    return str(HASHES[algorithm](text.encode()).hexdigest())


def digest_params(header: str) -> dict[str, str]:
    return {k: v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))', header)}


class Guard:
    """A ``process_request`` that lets only USER with PASSWORD through, with ``scheme``
    ("Basic", "Digest MD5" or "Digest SHA-256"); it records each Authorization it saw."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.nonce = secrets.token_hex(16)
        self.opaque = secrets.token_hex(8)
        self.seen: list[str | None] = []

    def challenge(self) -> str:
        if self.scheme == "Basic":
            return f'Basic realm="{REALM}"'
        algorithm = self.scheme.split()[1]
        return (
            f'Digest realm="{REALM}", qop="auth", algorithm={algorithm}, '
            f'nonce="{self.nonce}", opaque="{self.opaque}"'
        )

    def allowed(self, authorization: str | None, path: str) -> bool:
        if authorization is None:
            return False
        if self.scheme == "Basic":
            return authorization == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if not authorization.startswith("Digest "):
            return False
        p = digest_params(authorization)
        algorithm = self.scheme.split()[1]
        if p.get("algorithm") != algorithm or p.get("nonce") != self.nonce or p.get("opaque") != self.opaque:
            return False
        if p.get("uri") != path or p.get("username") != USER or p.get("realm") != REALM:
            return False
        ha1 = h(algorithm, f"{USER}:{REALM}:{PASSWORD}")
        ha2 = h(algorithm, f"GET:{path}")
        expected = h(algorithm, f"{ha1}:{self.nonce}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
        return p["response"] == expected

    def __call__(self, connection: Any, request: Any) -> Any:
        authorization = request.headers.get("Authorization")
        self.seen.append(authorization)
        if self.allowed(authorization, request.path):
            return None
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "who are you?\n")
        response.headers["WWW-Authenticate"] = self.challenge()
        return response


def outcome(ws: WebSocket) -> Status:
    return wait_until(lambda: ws.status if ws.status in (Status.OPEN, Status.ERROR) else None)


@pytest.mark.parametrize("scheme", ["Basic", "Digest MD5", "Digest SHA-256"])
def test_a_handler_answers_the_401_and_the_handshake_is_retried(scheme: str, sockets: Any) -> None:
    guard = Guard(scheme)
    asked: list[str] = []

    def authenticate(authenticator: Any) -> None:
        asked.append(authenticator.realm)
        authenticator.user = USER
        authenticator.password = PASSWORD

    with websockets_server(echo, process_request=guard) as (url, _):
        ws = sockets(url=url + "/room?x=1", on_authentication_required=authenticate, active=True)
        assert outcome(ws) is Status.OPEN, ws.error_string
        replies: list[str] = []
        ws.text_message_received.connect(replies.append)
        ws.send_text_message("in")
        wait_until(lambda: replies == ["in"])
    assert asked == [REALM]
    assert guard.seen[0] is None
    assert guard.seen[1] is not None and guard.seen[1].startswith(scheme.split()[0] + " ")
    assert len(guard.seen) == 2


def test_a_handler_connected_after_active_is_asked(sockets: Any) -> None:
    """``@ws.authentication_required.connect`` after ``WebSocket(..., active=True)``, as the
    README writes it: the handler is there when the 401 comes, so it is asked."""
    guard = Guard("Basic")
    connected = threading.Event()

    def gated(connection: Any, request: Any) -> Any:
        connected.wait(TIMEOUT)  # The 401 goes out once the handler is connected.
        return guard(connection, request)

    with websockets_server(echo, process_request=gated) as (url, _):
        ws = sockets(url=url, active=True)

        @ws.authentication_required.connect
        def login(authenticator: Any) -> None:
            authenticator.user, authenticator.password = USER, PASSWORD

        connected.set()
        assert outcome(ws) is Status.OPEN, ws.error_string
    assert len(guard.seen) == 2


@pytest.mark.parametrize("scheme", ["Basic", "Digest SHA-256"])
def test_a_wrong_password_ends_in_error(scheme: str, sockets: Any) -> None:
    guard = Guard(scheme)

    def authenticate(authenticator: Any) -> None:
        authenticator.user = USER
        authenticator.password = "wrong"

    with websockets_server(echo, process_request=guard) as (url, _):
        ws = sockets(url=url, on_authentication_required=authenticate, active=True)
        assert outcome(ws) is Status.ERROR
    assert ws.error_string == "handshake rejected: HTTP 401 Unauthorized"
    # Retried once, not forever.
    assert len(guard.seen) == 2


def test_without_credentials_the_socket_says_401(sockets: Any) -> None:
    guard = Guard("Basic")
    with websockets_server(echo, process_request=guard) as (url, _):
        ws = sockets(url=url, active=True, on_error_occurred=lambda message: None)
        assert outcome(ws) is Status.ERROR
    assert ws.error_string == "handshake rejected: HTTP 401 Unauthorized"
    assert guard.seen == [None]


def test_a_handler_that_sets_nothing_gives_up(sockets: Any) -> None:
    guard = Guard("Digest MD5")
    asked: list[str] = []
    with websockets_server(echo, process_request=guard) as (url, _):
        ws = sockets(url=url, active=True, on_authentication_required=lambda a: asked.append(a.realm))
        assert outcome(ws) is Status.ERROR
    assert asked == [REALM]
    assert ws.error_string == "handshake rejected: HTTP 401 Unauthorized"
    assert guard.seen == [None]


def test_credentials_in_the_url_are_sent_as_basic_from_the_first_request(sockets: Any) -> None:
    guard = Guard("Basic")
    with websockets_server(echo, process_request=guard) as (url, _):
        # The colon of the password is percent-encoded in the URL.
        ws = sockets(url=url.replace("ws://", f"ws://{USER}:s3cret%3Apw@") + "/", active=True)
        assert outcome(ws) is Status.OPEN, ws.error_string
    assert len(guard.seen) == 1


def test_credentials_in_the_url_answer_a_digest_challenge(sockets: Any) -> None:
    guard = Guard("Digest SHA-256")
    asked: list[Any] = []
    with websockets_server(echo, process_request=guard) as (url, _):
        ws = sockets(
            url=url.replace("ws://", f"ws://{USER}:s3cret%3Apw@") + "/chat",
            on_authentication_required=asked.append,
            active=True,
        )
        assert outcome(ws) is Status.OPEN, ws.error_string
    assert asked == []
    assert [a.split()[0] if a else a for a in guard.seen] == ["Basic", "Digest"]
