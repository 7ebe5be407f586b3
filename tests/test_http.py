"""Plain HTTP on a WebSocketServer's own port: handlers, routes, the static folder and its
bounds, and the refusal of an upgrade, with http.client, raw sockets and the `websockets`
client as the peers, on the QML-style server and on the asyncio ``serve``."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import websockets
from websockets.asyncio.client import connect as async_connect
from websockets.sync.client import connect

from conftest import TIMEOUT, Recorder, wait_until
from wsbind import Request, Response, WebSocket, WebSocketServer, bind, serve
from wsbind.routes import Route


def fetch(
    server: WebSocketServer,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one request to ``server``."""
    address = urlsplit(server.url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def raw(server: WebSocketServer, request: bytes) -> bytes:
    """Everything the server answers to ``request`` sent as it is, up to its close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A static folder, with a file beside it that must never be served."""
    www = tmp_path / "www"
    (www / "docs").mkdir(parents=True)
    (www / "index.html").write_text("<h1>home</h1>")
    (www / "app.js").write_text("console.log(1)")
    (www / "style.css").write_text("p {}")
    (www / "docs" / "index.html").write_text("<h1>docs</h1>")
    (tmp_path / "secret.txt").write_text("the content outside")
    os.symlink(tmp_path / "secret.txt", www / "link.txt")
    os.symlink(tmp_path, www / "up")
    return www


def test_a_plain_get_still_gets_426_without_a_handler(servers: Any) -> None:
    server = servers()
    status, headers, _ = fetch(server, "/")
    assert status == 426
    assert headers["upgrade"] == "websocket"


def test_a_health_check_is_one_line(servers: Any) -> None:
    server = servers()
    server.http_route("/healthz", lambda request: "ok")
    status, headers, body = fetch(server, "/healthz")
    assert (status, body) == (200, b"ok")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    # Routes declared: what they do not cover is not found.
    assert fetch(server, "/elsewhere")[0] == 404


def test_a_route_gets_the_request_and_its_captured_parts(servers: Any) -> None:
    server = servers()
    seen: list[Request] = []

    @server.http_route("/items/{name}")
    def item(request: Request, name: str) -> Any:
        seen.append(request)
        return {"name": name, "query": request.query, "body": request.body.decode()}

    status, headers, body = fetch(server, "/items/a%20b?x=1&y=%C3%A9", "POST", b"payload", {"X-Test": "yes"})
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"name": "a b", "query": {"x": "1", "y": "é"}, "body": "payload"}
    (request,) = seen
    assert (request.method, request.path, request.upgrade) == ("POST", "/items/a b", False)
    assert request.target == "/items/a%20b?x=1&y=%C3%A9"
    assert request.headers["x-test"] == "yes" and request.headers.get_all("X-TEST") == ["yes"]
    assert request.params == {"name": "a b"} and request.peer_address == "127.0.0.1"


def test_http_request_handlers_answer_with_respond(servers: Any) -> None:
    def answer(request: Request) -> None:
        if request.path == "/page":
            request.respond(Response(201, "<p>made</p>", headers={"X-Made": "1"}, content_type="text/html"))

    server = servers(on_http_request=answer)
    status, headers, body = fetch(server, "/page")
    assert (status, body, headers["x-made"]) == (201, b"<p>made</p>", "1")
    assert headers["content-type"] == "text/html"
    # A handler that gives no answer: not found, since this server serves HTTP.
    assert fetch(server, "/other")[0] == 404


def test_a_failing_handler_gets_500_and_is_logged(servers: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = servers()

    @server.http_route("/boom")
    def boom(request: Request) -> str:
        raise RuntimeError("kaboom")

    server.http_route("/fine", lambda request: b"\x00\x01")
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        assert fetch(server, "/boom")[0] == 500
    assert "kaboom" in caplog.text
    status, headers, body = fetch(server, "/fine")
    assert (status, body, headers["content-type"]) == (200, b"\x00\x01", "application/octet-stream")


def test_a_response_may_be_a_file(servers: Any, site: Path) -> None:
    server = servers()
    server.http_route("/script", lambda request: site / "app.js")
    status, headers, body = fetch(server, "/script")
    assert (status, body) == (200, b"console.log(1)")
    assert headers["content-type"] == "text/javascript; charset=utf-8"


def test_the_static_folder_serves_pages_with_their_types(servers: Any, site: Path) -> None:
    server = servers(static_dir=site)
    assert server.static_dir == str(site)
    for path, content_type, body in [
        ("/", "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/index.html", "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/style.css", "text/css; charset=utf-8", b"p {}"),
        ("/docs/", "text/html; charset=utf-8", b"<h1>docs</h1>"),
    ]:
        status, headers, received = fetch(server, path)
        assert (status, headers["content-type"], received) == (200, content_type, body), path
    status, headers, _ = fetch(server, "/docs")
    assert (status, headers["location"]) == (301, "/docs/")
    assert fetch(server, "/missing.png")[0] == 404
    # WebSockets still open on the same port.
    with connect(server.url + "/"):
        pass


def test_nothing_outside_the_static_folder_is_served(servers: Any, site: Path) -> None:
    server = servers(static_dir=site)
    for target in [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/link.txt",
        "/up/secret.txt",
        "/up/www/../secret.txt",
    ]:
        response = raw(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert b"the content outside" not in response, target
        assert response.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404")), (target, response)


def test_a_guard_on_the_path_sees_what_the_static_folder_serves(servers: Any, site: Path) -> None:
    """``//private/x`` is not the host "private" and the path ``/x`` (what ``urlsplit`` makes of
    it), and the static folder does not read ``//private`` or ``/./private`` as ``/private``: a
    handler that guards ``/private`` cannot be passed by."""
    (site / "private").mkdir()
    (site / "private" / "secret.txt").write_text("PRIVATE")
    server = servers(static_dir=site)
    seen: list[tuple[str, str]] = []

    def guard(request: Request) -> None:
        seen.append((request.target, request.path))
        if request.path.startswith("/private"):
            request.respond(Response(403, body="forbidden\n"))

    server.http_request.connect(guard)
    absolute = "http://x/private/secret.txt"  # the absolute form (RFC 9112 §3.2.2)
    for target in ["/private/secret.txt", "//private/secret.txt", "/./private/secret.txt", absolute]:
        response = raw(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert b"PRIVATE" not in response, target
        assert response.startswith((b"HTTP/1.1 400", b"HTTP/1.1 403")), (target, response)
    assert ("//private/secret.txt", "//private/secret.txt") in seen
    assert (absolute, "/private/secret.txt") in seen


def test_files_and_bodies_are_bounded(servers: Any, site: Path) -> None:
    server = servers(static_dir=site, max_file_size=13)
    assert fetch(server, "/index.html")[0] == 200  # 13 bytes
    status, _, body = fetch(server, "/app.js")  # 14 bytes
    assert status == 500 and b"max_file_size" in body
    server.http_route("/upload", lambda request: str(len(request.body)))
    status, _, body = fetch(server, "/upload", "POST", b"x" * (64 << 10))
    assert (status, body) == (200, b"65536")
    response = raw(server, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 413")


def test_a_response_refuses_an_upgrade(servers: Any) -> None:
    def guard(request: Request) -> None:
        if request.upgrade and request.headers.get("Authorization") != "Bearer sesame":
            request.respond(
                Response(401, "who are you?", headers={"WWW-Authenticate": 'Bearer realm="chat"'})
            )

    server = servers(on_http_request=guard)
    server.client_connected.connect(lambda ws: ws.send_text_message("welcome"))
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(server.url).close()
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == 'Bearer realm="chat"'
    with connect(server.url, additional_headers={"Authorization": "Bearer sesame"}) as ws:
        assert ws.recv(timeout=TIMEOUT) == "welcome"
    assert server.client_count <= 1


def test_a_redirect_sends_the_client_elsewhere(servers: Any) -> None:
    target = servers(on_client_connected=lambda ws: ws.send_text_message("moved here"))
    server = servers()
    server.http_request.connect(lambda request: request.respond(Response.redirect(target.url + "/new")))

    async def follow() -> str:
        async with async_connect(server.url + "/old") as ws:
            return str(await asyncio.wait_for(ws.recv(), TIMEOUT))

    assert asyncio.run(follow()) == "moved here"


def test_routes_send_clients_of_each_path_to_their_handler(servers: Any) -> None:
    server = servers()
    rooms = Recorder()

    @server.route("/chat/{room}")
    def chat(ws: WebSocket, room: str) -> None:
        rooms(room)
        ws.send_text_message(f"room {room}")

    @server.route("/prices")
    def prices(ws: WebSocket) -> None:
        ws.send_text_message("prices")

    with connect(server.url + "/chat/lobby") as a, connect(server.url + "/prices") as b:
        assert a.recv(timeout=TIMEOUT) == "room lobby"
        assert b.recv(timeout=TIMEOUT) == "prices"
    assert rooms.values == ["lobby"]
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(server.url + "/nowhere").close()
    assert refused.value.response.status_code == 404
    # A browser opening a socket's URL as a page learns it is a WebSocket.
    assert fetch(server, "/prices")[0] == 426
    assert fetch(server, "/nowhere")[0] == 404


def test_a_client_that_expects_100_continue_gets_it(servers: Any) -> None:
    """RFC 9110 §10.1.1: a client that waits before sending its body is told to go on."""
    server = servers()
    server.http_route("/upload", lambda request: request.body[::-1])
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"olleh")


def test_a_page_and_its_socket_may_share_a_url(servers: Any, site: Path) -> None:
    """With a static folder, a plain GET of a socket's path gets the folder's page (the
    order: handlers, routes, the folder, 404), and the socket still answers upgrades."""
    server = servers(static_dir=site)
    greeted = Recorder()
    server.route("/")(lambda ws: greeted(ws.resource_name))
    assert fetch(server, "/")[::2] == (200, b"<h1>home</h1>")
    with connect(server.url + "/"):
        assert greeted.wait() == ["/"]
    assert fetch(server, "/nothing")[0] == 404


def test_an_async_route_on_a_server_without_a_loop_raises_at_once(servers: Any) -> None:
    """No loop would run it: the client would be left connected with no one to answer."""
    server = servers()

    async def chat(ws: WebSocket) -> None:
        pass

    with pytest.raises(TypeError, match="made outside a loop"):
        server.route("/chat")(chat)


def test_client_count_follows_the_clients(servers: Any) -> None:
    server = servers()
    counts = Recorder()
    follower = WebSocket()
    follower.origin = bind(lambda: f"http://count-{server.client_count}")
    server.client_count_changed.connect(counts)
    with connect(server.url), connect(server.url):
        wait_until(lambda: server.client_count == 2, what="two clients")
        assert follower.origin == "http://count-2"
    wait_until(lambda: server.client_count == 0, what="no clients")
    assert counts.values == [1, 2, 1, 0]


def test_responses_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="200 to 599"):
        Response(101)
    with pytest.raises(ValueError, match="cannot be sent"):
        Response(headers={"X": "a\r\nSet-Cookie: x"})
    with pytest.raises(ValueError, match="writes Content-Length itself"):
        Response(headers={"Content-Length": "3"})
    with pytest.raises(TypeError):
        Response("ok")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="returns a Response"):
        Response.of(42)
    with pytest.raises(ValueError, match="204 response has no body"):
        Response(204, body="oops")


def test_a_responses_headers_are_added_to_as_websockets_are() -> None:
    """headers[name] = value adds (a name may come twice), del removes every one of a name, and
    each header is checked as it comes, as when the response is made."""
    response = Response(401, headers=[("Set-Cookie", "a=1")])
    response.headers["WWW-Authenticate"] = 'Basic realm="chat"'
    response.headers["set-cookie"] = "b=2"
    assert response.headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["www-authenticate"] == 'Basic realm="chat"'
    del response.headers["SET-COOKIE"]
    assert response.headers.raw == (("WWW-Authenticate", 'Basic realm="chat"'),)
    with pytest.raises(KeyError):
        del response.headers["Set-Cookie"]
    with pytest.raises(ValueError, match="cannot be sent"):
        response.headers["X"] = "a\r\nSet-Cookie: x"
    with pytest.raises(ValueError, match="writes Content-Length itself"):
        response.headers["Content-Length"] = "3"
    with pytest.raises(ValueError, match="not a valid HTTP header name"):
        response.headers["bad name"] = "x"
    # A response's headers make another's, a name given twice kept twice.
    copied = Response(headers=Response(headers=[("Vary", "a"), ("Vary", "b")]).headers)
    assert copied.headers.get_all("Vary") == ["a", "b"]


def test_status_lines_and_heads_follow_http(servers: Any, site: Path) -> None:
    """RFC 9112 §4: the space after the code stays without a reason phrase; RFC 9110: a 204
    has no Content-Length nor content, and a 405 says what is allowed."""
    server = servers(static_dir=site)
    server.http_route("/empty", lambda request: Response(204))
    server.http_route("/odd", lambda request: Response(299, body="x"))
    assert raw(server, b"GET /odd HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 299 \r\n")
    empty = raw(server, b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
    assert empty.startswith(b"HTTP/1.1 204 No Content\r\n") and empty.endswith(b"\r\n\r\n")
    assert b"content-length" not in empty.lower()
    status, headers, _ = fetch(server, "/", method="POST", body=b"x")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    # RFC 9112 §3.2: one Host in an HTTP/1.1 request (none in HTTP/1.0 is fine).
    assert raw(server, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")


def test_route_patterns() -> None:
    assert Route("/chat/{room}", print).match("/chat/a%2Fb?x") == {"room": "a/b"}
    assert Route("/chat/{room}", print).match("/chat/a/b") is None
    assert Route("/chat/{room}", print).match("/chat/") is None
    assert Route("/files/{rest:path}", print).match("/files/a/b.txt") == {"rest": "a/b.txt"}
    assert Route("/", print).match("/") == {}
    assert Route("/admin/{name}", print).match("//admin/x") is None
    with pytest.raises(ValueError):
        Route("chat", print)
    with pytest.raises(ValueError):
        Route("/{rest:path}/x", print)


# -- the asyncio face


def run(main: Callable[[], Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), TIMEOUT)

    return asyncio.run(bounded())


def test_serve_takes_process_request_and_routes() -> None:
    async def chat(ws: WebSocket, room: str) -> None:
        async for message in ws:
            await ws.send(f"{room}: {message}")

    async def process_request(request: Request) -> Response | None:
        # A coroutine function: serve() awaits what it returns before the handshake goes on.
        if request.upgrade and request.query.get("token") != "sesame":
            return Response(403, "no token")
        return None

    async def main() -> None:
        async with serve(None, routes={"/chat/{room}": chat}, process_request=process_request) as server:
            server.http_route("/healthz", lambda request: "ok")
            async with async_connect(server.url + "/chat/lobby?token=sesame") as ws:
                await ws.send("hi")
                assert await ws.recv() == "lobby: hi"
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with async_connect(server.url + "/chat/lobby"):
                    pass
            assert refused.value.response.status_code == 403
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with async_connect(server.url + "/other?token=sesame"):
                    pass
            assert refused.value.response.status_code == 404
            assert (await asyncio.to_thread(fetch, server, "/healthz"))[::2] == (200, b"ok")
            assert (await asyncio.to_thread(fetch, server, "/nope"))[0] == 404

    run(main)


def test_serve_handler_takes_the_paths_no_route_matches() -> None:
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def prices(ws: WebSocket) -> None:
        await ws.send("prices")

    async def main() -> None:
        async with serve(echo, routes={"/prices": prices}) as server:
            async with async_connect(server.url + "/prices") as ws:
                assert await ws.recv() == "prices"
            async with async_connect(server.url + "/anything") as ws:
                await ws.send("echo")
                assert await ws.recv() == "echo"

    run(main)
