"""Proxies: HTTP CONNECT through a real tinyproxy, SOCKS5 through a real dante
server, both started on loopback, and the environment variables as curl reads them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import wsbind
from conftest import (
    TIMEOUT,
    Recorder,
    echo,
    free_port,
    tls_server,
    trusting,
    wait_until,
    websockets_server,
)
from wsbind import Status, WebSocket


@dataclasses.dataclass
class Proxy:
    """A proxy server a test started: its address as host:port, and the file it logs to."""

    address: str
    log: Path

    def logged(self, pattern: str) -> None:
        """Waits until the proxy has logged a line that matches `pattern`."""
        wait_until(
            lambda: re.search(pattern, self.log.read_text(errors="replace"), re.MULTILINE),
            what=f"the proxy to log {pattern!r}",
        )


def tunnelled(proxy: Proxy, host: str, port: int) -> None:
    """tinyproxy logged a CONNECT to host:port and opening the tunnel, which it does only once
    the credentials passed: the client went through it. (The targets are reachable directly
    too, so an echo alone would not show it.)"""
    proxy.logged(rf"Request \(file descriptor \d+\): CONNECT {re.escape(host)}:{port} HTTP/1\.1$")
    proxy.logged(rf'Established connection to host "{re.escape(host)}"')


def relayed(proxy: Proxy, port: int) -> None:
    """dante logged a connection it made for a client to the target's port."""
    proxy.logged(rf"pass\(\d+\): tcp/connect \[: \S+ \S+ -> \S+ \S+\.{port}$")


@contextlib.contextmanager
def running(command: list[str], port: int, log: Path) -> Iterator[None]:
    """Runs a server in the foreground until the test ends; waits until it listens."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(lambda: listening() or proc.poll() is not None, what=f"{command[0]} to listen")
        assert proc.poll() is None, log.read_text()
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Starts a tinyproxy, which logs each connection and request (to its stdout, with -d)."""
    with contextlib.ExitStack() as stack:

        def start(allow: str = "127.0.0.1", auth: tuple[str, str] | None = None) -> Proxy:
            port = free_port()
            conf = tmp_path / f"tinyproxy-{port}.conf"
            lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", f"Allow {allow}", "MaxClients 50"]
            lines.append("LogLevel Connect")  # each connection and request, as the tests check
            if auth:
                lines.append(f"BasicAuth {auth[0]} {auth[1]}")
            # No ConnectPort line: CONNECT may reach any port, as the tests' servers need.
            conf.write_text("\n".join(lines) + "\n")
            log = tmp_path / f"tp-{port}.log"
            stack.enter_context(running(["tinyproxy", "-d", "-c", str(conf)], port, log))
            return Proxy(f"127.0.0.1:{port}", log)

        yield start


@pytest.fixture
def dante(tmp_path: Path) -> Iterator[Proxy]:
    """A dante SOCKS5 server without authentication, which logs each connection it makes."""
    port = free_port()
    conf = tmp_path / "danted.conf"
    conf.write_text(
        f"""logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect }}
"""
    )
    log = tmp_path / "danted.log"
    with running(["danted", "-f", str(conf)], port, log):
        yield Proxy(f"127.0.0.1:{port}", log)


@pytest.fixture
def echo_port() -> Iterator[int]:
    with websockets_server(echo) as (url, _):
        yield int(url.rsplit(":", 1)[1])


def echoes(ws: WebSocket) -> None:
    wait_until(lambda: ws.status in (Status.OPEN, Status.ERROR), what="the handshake")
    assert ws.status is Status.OPEN, ws.error_string
    got = Recorder()
    ws.text_message_received.connect(got)
    ws.send_text_message("through ✓")
    assert got.wait() == ["through ✓"]


def error_of(ws: WebSocket) -> str:
    wait_until(lambda: ws.status is Status.ERROR, what="status ERROR")
    return ws.error_string


# -- HTTP CONNECT


def test_ws_through_an_http_proxy_with_credentials(sockets: Any, tinyproxy: Any, echo_port: int) -> None:
    proxy = tinyproxy(auth=("alice", "s3cret"))
    echoes(
        sockets(url=f"ws://127.0.0.1:{echo_port}", proxy=f"http://alice:s3cret@{proxy.address}", active=True)
    )
    tunnelled(proxy, "127.0.0.1", echo_port)


def test_wss_through_an_http_proxy(sockets: Any, servers: Any, tinyproxy: Any) -> None:
    ca = trustme.CA()
    server = tls_server(servers, ca, names=("localhost",))
    proxy = tinyproxy()
    ws = sockets(
        url=f"wss://localhost:{server.port}",
        proxy=f"http://{proxy.address}",
        ssl_configuration=trusting(ca),
        active=True,
    )
    echoes(ws)
    tunnelled(proxy, "localhost", server.port)


def test_wrong_credentials_end_in_the_proxys_status_line(
    sockets: Any, tinyproxy: Any, echo_port: int
) -> None:
    proxy = tinyproxy(auth=("alice", "s3cret"))
    ws = sockets(url=f"ws://127.0.0.1:{echo_port}", proxy=f"http://alice:wrong@{proxy.address}", active=True)
    # tinyproxy answers wrong credentials with 401 rather than 407.
    assert re.match(r"proxy refused the tunnel: HTTP 40[17] \w", error_of(ws))


def test_a_handler_supplies_credentials(sockets: Any, tinyproxy: Any, echo_port: int) -> None:
    proxy = tinyproxy(auth=("alice", "s3cret"))
    asked: list[str] = []

    def authenticate(authenticator: Any) -> None:
        asked.append(authenticator.proxy)
        authenticator.set_credentials("alice", "s3cret")

    ws = sockets(
        url=f"ws://127.0.0.1:{echo_port}",
        proxy=f"http://{proxy.address}",
        on_proxy_authentication_required=authenticate,
        active=True,
    )
    echoes(ws)
    assert asked == [proxy.address]
    tunnelled(proxy, "127.0.0.1", echo_port)


def test_a_proxy_that_refuses_us(sockets: Any, tinyproxy: Any, echo_port: int) -> None:
    proxy = tinyproxy(allow="10.255.255.1")
    ws = sockets(url=f"ws://127.0.0.1:{echo_port}", proxy=f"http://{proxy.address}", active=True)
    assert error_of(ws).startswith("proxy refused the tunnel: HTTP 403")


def test_a_proxys_refusal_raises_and_is_not_retried(tinyproxy: Any, echo_port: int) -> None:
    """The asyncio face raises InvalidProxy with the proxy's status; the reconnecting iterator
    gives up at once, as for a server's 403, rather than asking the proxy again and again."""
    proxy = f"http://{tinyproxy(allow='10.255.255.1').address}"
    url = f"ws://127.0.0.1:{echo_port}"

    async def main() -> None:
        with pytest.raises(wsbind.InvalidProxy) as refused:
            await wsbind.connect(url, proxy=proxy)
        assert refused.value.status_code == 403
        assert str(refused.value).startswith("proxy refused the tunnel: HTTP 403")
        with pytest.raises(wsbind.InvalidProxy):
            async for _ in wsbind.connect(url, proxy=proxy):
                pytest.fail("connected through a proxy that refuses")

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_a_proxy_that_cannot_reach_the_server(sockets: Any, tinyproxy: Any) -> None:
    """The proxy's own status line, whatever it is (tinyproxy says 500 Unable to connect)."""
    ws = sockets(url=f"ws://127.0.0.1:{free_port()}", proxy=f"http://{tinyproxy().address}", active=True)
    assert re.match(r"proxy refused the tunnel: HTTP 5\d\d \w", error_of(ws))


def test_an_unreachable_proxy(sockets: Any, echo_port: int) -> None:
    ws = sockets(url=f"ws://127.0.0.1:{echo_port}", proxy=f"http://127.0.0.1:{free_port()}", active=True)
    assert error_of(ws).startswith("cannot connect to proxy")


# -- SOCKS5


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_ws_through_socks5(sockets: Any, dante: Proxy, echo_port: int, scheme: str) -> None:
    echoes(sockets(url=f"ws://localhost:{echo_port}", proxy=f"{scheme}://{dante.address}", active=True))
    relayed(dante, echo_port)


@contextlib.contextmanager
def refusing_socks5() -> Iterator[tuple[str, list[bytes]]]:
    """A SOCKS5 server that records each CONNECT request and refuses it."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(16)
            conn.sendall(b"\x05\x00")
            requests.append(conn.recv(300))
            conn.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(("scheme", "address_type"), [("socks5", 1), ("socks5h", 3)])
def test_socks5h_lets_the_proxy_resolve_names(sockets: Any, scheme: str, address_type: int) -> None:
    """socks5 sends the address we resolved; socks5h sends the name."""
    with refusing_socks5() as (proxy, requests):
        ws = sockets(url="ws://localhost:4567", proxy=f"{scheme}://{proxy}", active=True)
        assert "connection refused" in error_of(ws)
    (request,) = requests
    assert request[3] == address_type
    assert struct.unpack("!H", request[-2:])[0] == 4567
    if scheme == "socks5h":
        assert request[5:-2] == b"localhost"


def test_socks5_credentials_follow_rfc_1929(sockets: Any) -> None:
    """User name and password from the proxy URL, sent as RFC 1929 asks."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            seen.append(conn.recv(16))  # greeting: version 5, methods
            conn.sendall(b"\x05\x02")  # username/password, please
            seen.append(conn.recv(600))
            conn.sendall(b"\x01\x01")  # refused

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    proxy = f"socks5://b%C3%B6b:pa%3Ass@127.0.0.1:{listener.getsockname()[1]}"
    ws = sockets(url="ws://127.0.0.1:9/", proxy=proxy, active=True)
    assert "refused the user name or password" in error_of(ws)
    thread.join(5)
    listener.close()
    assert seen[0] == b"\x05\x02\x00\x02"
    user = "böb".encode()
    assert seen[1] == b"\x01" + bytes([len(user)]) + user + b"\x05pa:ss"


# -- the environment, as curl reads it


def test_http_proxy_from_the_environment(
    sockets: Any, tinyproxy: Any, echo_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    ws = sockets(url=f"ws://127.0.0.1:{echo_port}", active=True)
    assert error_of(ws).startswith("cannot connect to proxy")
    proxy = tinyproxy()
    monkeypatch.setenv("http_proxy", proxy.address)
    echoes(sockets(url=f"ws://127.0.0.1:{echo_port}", active=True))
    tunnelled(proxy, "127.0.0.1", echo_port)


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "*", "localhost,127.0.0.1:80"])
def test_no_proxy_bypasses_the_proxy(
    sockets: Any, echo_port: int, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    echoes(sockets(url=f"ws://127.0.0.1:{echo_port}", active=True))


def test_https_proxy_is_for_wss_and_all_proxy_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsbind import _wsbind

    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://secure:1")
    monkeypatch.setenv("ALL_PROXY", "socks5h://any:2")
    assert _wsbind.environment_proxy("wss://example.com") == "http://secure:1"
    assert _wsbind.environment_proxy("ws://example.com") == "socks5h://any:2"
    # HTTP_PROXY in upper case is what a CGI program's environment makes of a client's
    # Proxy header ("httpoxy"): curl reads http_proxy in lower case only, and so do we.
    monkeypatch.setenv("HTTP_PROXY", "http://from-a-request:3")
    assert _wsbind.environment_proxy("ws://example.com") == "socks5h://any:2"
    monkeypatch.setenv("http_proxy", "http://plain:4")
    assert _wsbind.environment_proxy("ws://example.com") == "http://plain:4"


def test_proxy_none_ignores_the_environment(
    sockets: Any, echo_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    echoes(sockets(url=f"ws://127.0.0.1:{echo_port}", proxy=None, active=True))


@pytest.mark.parametrize("bad", ["ftp://h:1", "http://", 12])
def test_bad_proxy_urls_raise(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        WebSocket(proxy=bad)
