"""One rule for what an HTTP header value may hold, wherever a property ends up in a header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from wsbind import WebSocket, WebSocketServer
from wsbind.checks import check_header_value


def header_value(value: Any) -> None:
    WebSocket(request_headers={"X-Test": value})


def origin(value: Any) -> None:
    WebSocket(origin=value)


def server_name(value: Any) -> None:
    WebSocketServer(name=value)


def allowed_origin(value: Any) -> None:
    WebSocketServer(allowed_origins=[value])


PLACES = [header_value, origin, server_name, allowed_origin]

ACCEPTED = ["", "plain", "with space", "tab\there", " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", "\t"]

REFUSED = {
    "non-ascii": "héllo",
    "emoji": "😀",
    "nbsp": "a\xa0b",
    "cr-lf": "a\r\nInjected: yes",
    "lf": "a\nb",
    "nul": "a\0b",
    "soh": "\x01",
    "vt": "tab\x0bvt",
    "del": "a\x7fb",
    "c1": "a\x85b",
}


@pytest.mark.parametrize("value", ACCEPTED)
@pytest.mark.parametrize("place", PLACES, ids=lambda f: f.__name__)
def test_tab_space_and_visible_ascii_are_accepted_everywhere(
    place: Callable[[Any], None], value: str
) -> None:
    place(value)
    assert check_header_value(value) == value


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("place", PLACES, ids=lambda f: f.__name__)
def test_anything_else_is_refused_everywhere(place: Callable[[Any], None], value: str) -> None:
    """Refused with ValueError, at assignment, by a WebSocket's header values and origin and by a
    server's name and allowed origins alike; the message names the character."""
    with pytest.raises(ValueError, match="cannot be sent in an HTTP header") as raised:
        place(value)
    bad = next(c for c in value if not (" " <= c <= "~" or c == "\t"))
    assert repr(bad) in str(raised.value)


@pytest.mark.parametrize("place", PLACES, ids=lambda f: f.__name__)
def test_a_value_that_is_not_a_str_is_a_type_error(place: Callable[[Any], None]) -> None:
    with pytest.raises(TypeError):
        place(b"bytes")


def test_the_message_says_what_was_refused() -> None:
    with pytest.raises(ValueError) as name:
        WebSocketServer(name="café")
    assert str(name.value).startswith("name 'café' cannot be sent in an HTTP header")
    with pytest.raises(ValueError) as origin:
        WebSocket(origin="https://é.example")
    assert str(origin.value).startswith("origin 'https://é.example' cannot be sent")
    with pytest.raises(ValueError) as header:
        WebSocket(request_headers={"X-Test": "é"})
    assert str(header.value).startswith("request_headers: the value of header X-Test 'é' cannot be sent")


def test_the_native_side_applies_the_same_rule() -> None:
    """The native module checks the headers it sends by the same rule as the properties:
    every character up to U+3000, and some beyond, is accepted by both or by neither."""
    from wsbind import _wsbind

    for code in [*range(0x3000), 0xD7FF, 0xE000, 0xFEFF, 0xFFFD, 0x1F600]:
        char = chr(code)
        try:
            check_header_value(char)
            python_accepts = True
        except ValueError:
            python_accepts = False
        try:
            _wsbind.check_header_value(char)
            native_accepts = True
        except ValueError:
            native_accepts = False
        assert python_accepts == native_accepts, hex(code)
