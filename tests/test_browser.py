"""A real headless Chromium loads a page from a wsbind server's own port, and the page's
WebSocket talks back to the same server: one page echoing, two pages chatting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser

from conftest import wait_until
from wsbind import WebSocket, WebSocketServer

ECHO_PAGE = """<!doctype html>
<p id="reply">waiting</p>
<script>
  const ws = new WebSocket(`ws://${location.host}/echo`);
  ws.onopen = () => ws.send("hello from the page");
  ws.onmessage = (event) => { document.getElementById("reply").textContent = event.data; };
</script>
"""

CHAT_PAGE = """<!doctype html>
<ul id="log"></ul>
<script>
  const ws = new WebSocket(`ws://${location.host}/chat/lobby`);
  window.opened = new Promise((resolve) => { ws.onopen = resolve; });
  window.say = (text) => ws.send(text);
  ws.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    document.getElementById("log").append(item);
  };
  window.lines = () => [...document.querySelectorAll("#log li")].map((li) => li.textContent);
</script>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


def http_url(server: WebSocketServer, path: str) -> str:
    return server.url.replace("ws://", "http://", 1) + path


def test_a_page_served_by_wsbind_talks_back_to_the_same_server(
    servers: Any, browser: Browser, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text(ECHO_PAGE)
    server = servers(static_dir=tmp_path)

    @server.route("/echo")
    def echo(ws: WebSocket) -> None:
        ws.text_message_received.connect(lambda message: ws.send_text_message(f"echo: {message}"))

    page = browser.open(http_url(server, "/"))
    # Null-safe: the page may not have loaded yet.
    reply = page.wait_for(
        "(document.getElementById('reply')?.textContent ?? '').startsWith('echo') && "
        "document.getElementById('reply').textContent",
        what="the page to show the server's reply",
    )
    assert reply == "echo: hello from the page"
    assert server.client_count == 1


def test_two_pages_chat_through_the_server(servers: Any, browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "chat.html").write_text(CHAT_PAGE)
    server = servers(static_dir=tmp_path)
    rooms: list[str] = []

    @server.route("/chat/{room}")
    def chat(ws: WebSocket, room: str) -> None:
        rooms.append(room)
        ws.text_message_received.connect(server.broadcast_text_message)

    alice = browser.open(http_url(server, "/chat.html"))
    bob = browser.open(http_url(server, "/chat.html"))
    for page in (alice, bob):
        page.wait_for(
            "window.opened !== undefined && window.opened.then(() => true)", what="the socket to open"
        )
    # Both sockets are open, as the server sees them too.
    wait_until(lambda: server.client_count == 2, what="the server to count both pages")
    alice.evaluate("window.say('hi from alice')")
    for page in (alice, bob):
        page.wait_for("window.lines().length === 1", what="alice's line on both pages")
    bob.evaluate("window.say('hi from bob')")
    for page in (alice, bob):
        lines = page.wait_for(
            "window.lines().length === 2 && window.lines()", what="bob's line on both pages"
        )
        assert lines == ["hi from alice", "hi from bob"]
    assert rooms == ["lobby", "lobby"]


# A message deflate shrinks well, built alike on both sides: JSON-like text
# with integers only, so that JavaScript and Python write the same digits.
BIG_PAGE = """<!doctype html>
<script>
  const ws = new WebSocket(`ws://${location.host}/big`);
  const record = (i) => `{"symbol": "S${i % 50}", "price": ${i * 3}}`;
  window.big = Array.from({length: 20000}, (_, i) => record(i)).join(", ");
  window.opened = new Promise((resolve) => { ws.onopen = () => resolve(ws.extensions); });
  window.echoed = new Promise((resolve) => {
    ws.onmessage = (event) => resolve(event.data === window.big ? "same" : `${event.data.length} characters`);
  });
  window.opened.then(() => ws.send(window.big));
</script>
"""


def test_a_page_negotiates_compression_and_a_large_message_goes_both_ways(
    servers: Any, browser: Browser, tmp_path: Path
) -> None:
    (tmp_path / "big.html").write_text(BIG_PAGE)
    server = servers(static_dir=tmp_path)
    big = ", ".join(f'{{"symbol": "S{i % 50}", "price": {i * 3}}}' for i in range(20000))
    sockets: list[WebSocket] = []
    received: list[str] = []

    @server.route("/big")
    def echo(ws: WebSocket) -> None:
        sockets.append(ws)

        def on_message(message: str) -> None:
            received.append(message)
            ws.send_text_message(message)

        ws.text_message_received.connect(on_message)

    page = browser.open(http_url(server, "/big.html"))
    # Chromium offers "permessage-deflate; client_max_window_bits"; what it
    # agreed to, as the page's socket tells it.
    offered = page.wait_for("window.opened !== undefined && window.opened", what="the socket to open")
    assert offered.startswith("permessage-deflate"), offered
    echoed = page.wait_for("window.echoed !== undefined && window.echoed", what="the echo")
    assert echoed == "same", f"the echo came back with {echoed}, not the {len(big)} sent"
    assert received == [big]
    (ws,) = sockets
    assert ws.negotiated_extensions.startswith("permessage-deflate"), ws.negotiated_extensions
    assert ws.compression == "deflate"
