"""wss:// both ways with throwaway certificates (trustme), and interop with websockets over TLS."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme
import websockets.asyncio.server
from websockets.asyncio.client import connect

import wsbind
from conftest import Recorder, echo, leaf, pem, tls_server, trusting, wait_until, websockets_server
from wsbind import SslConfiguration, Status, WebSocket, WebSocketServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def echo_over(ws: WebSocket) -> None:
    got = Recorder()
    ws.text_message_received.connect(got)
    ws.send_text_message("secret ✓")
    assert got.wait() == ["secret ✓"]


def wait_open(ws: WebSocket) -> None:
    wait_until(lambda: ws.status in (Status.OPEN, Status.ERROR), what="the handshake")
    assert ws.status is Status.OPEN, ws.error_string


def wait_error(ws: WebSocket) -> str:
    wait_until(lambda: ws.status is Status.ERROR, what="status ERROR")
    return ws.error_string


def test_wsbind_client_and_server_over_tls(servers: Any, sockets: Any, ca: trustme.CA) -> None:
    server = tls_server(servers, ca)
    assert server.url.startswith("wss://")
    ws = sockets(url=f"wss://localhost:{server.port}/x", active=True, ssl_configuration=trusting(ca))
    wait_open(ws)
    echo_over(ws)
    wait_until(lambda: server.clients)
    assert server.clients[0].url == f"wss://localhost:{server.port}/x"


def test_websockets_client_to_our_tls_server(servers: Any, ca: trustme.CA) -> None:
    server = tls_server(servers, ca)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    # websockets' asyncio client, not its sync one: the sync client reads the TLS 1.3 session
    # tickets our server sends on a thread of its own while the caller writes, and OpenSSL's
    # SSL object is not safe for that ("[SSL] internal error" now and then under load).
    async def exchange() -> str | bytes:
        async with connect(f"wss://localhost:{server.port}", ssl=context) as client:
            await client.send("hello")
            return await asyncio.wait_for(client.recv(), 15)

    assert asyncio.run(exchange()) == "hello"


def test_our_client_to_a_websockets_tls_server(sockets: Any, ca: trustme.CA) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    with websockets_server(echo, ssl=context) as (url, _):
        ws = sockets(
            url=url.replace("ws://127.0.0.1", "wss://localhost"), active=True, ssl_configuration=trusting(ca)
        )
        wait_open(ws)
        echo_over(ws)


def test_an_untrusted_issuer_is_refused_in_words(servers: Any, sockets: Any, ca: trustme.CA) -> None:
    server = tls_server(servers, ca)
    errors = Recorder()
    ws = sockets(url=f"wss://localhost:{server.port}", active=True, on_ssl_errors=errors)
    assert "unknown issuer" in wait_error(ws)
    assert "unknown issuer" in errors.wait()[0][0]


def test_a_plain_client_of_a_tls_server_is_told_apart(servers: Any, sockets: Any, ca: trustme.CA) -> None:
    """The server says its client does not speak TLS, not what a client says of its server."""
    server = tls_server(servers, ca)
    errors = Recorder()
    server.ssl_errors.connect(errors)
    plain = sockets(url=f"ws://localhost:{server.port}", active=True)
    wait_error(plain)
    (said,) = errors.wait()[0]
    assert said.endswith("TLS handshake failed: the client does not speak TLS (a ws:// URL?)"), said


def test_an_expired_certificate_is_refused_in_words(servers: Any, sockets: Any, ca: trustme.CA) -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    certificate, key = leaf(ca, "localhost", not_before=past - datetime.timedelta(days=30), not_after=past)
    server = servers(secure_mode=True, certificate=certificate, private_key=key)
    ws = sockets(url=f"wss://localhost:{server.port}", active=True, ssl_configuration=trusting(ca))
    assert "expired" in wait_error(ws)


def test_a_certificate_for_another_host_is_refused_in_words(
    servers: Any, sockets: Any, ca: trustme.CA
) -> None:
    certificate, key = leaf(ca, "example.org")
    server = servers(secure_mode=True, certificate=certificate, private_key=key)
    ws = sockets(url=f"wss://localhost:{server.port}", active=True, ssl_configuration=trusting(ca))
    assert "host name mismatch" in wait_error(ws)


def test_a_ca_given_by_path(servers: Any, sockets: Any, ca: trustme.CA, tmp_path: Path) -> None:
    server = tls_server(servers, ca)
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    ws = sockets(
        url=f"wss://localhost:{server.port}", active=True, ssl_configuration=SslConfiguration(str(path))
    )
    wait_open(ws)


def test_a_ca_given_by_ssl_cert_file(servers: Any, ca: trustme.CA, tmp_path: Path) -> None:
    """SSL_CERT_FILE replaces the system's store, as OpenSSL and curl read it."""
    server = tls_server(servers, ca)
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    script = f"""
        import time, wsbind
        ws = wsbind.WebSocket(url="wss://localhost:{server.port}", active=True)
        while ws.status in (wsbind.Status.CLOSED, wsbind.Status.CONNECTING):
            time.sleep(0.01)
        print(ws.status.name, ws.error_string)
    """
    env = {**os.environ, "SSL_CERT_FILE": str(path)}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=30
    )
    assert run.stdout.strip() == "OPEN", run.stdout + run.stderr


def test_ignore_ssl_errors_connects_and_says_so(
    servers: Any, sockets: Any, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    server = tls_server(servers, ca)
    ws = sockets(url=f"wss://localhost:{server.port}")
    with caplog.at_level(logging.WARNING, logger="wsbind"):
        ws.ignore_ssl_errors()
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)
    ws.active = True
    wait_open(ws)
    echo_over(ws)


def mutual(servers: Any, ca: trustme.CA, client_ca: trustme.CA) -> WebSocketServer:
    return tls_server(
        servers,
        ca,
        ssl_configuration=SslConfiguration(ca_certificates=[pem(client_ca.cert_pem)], peer_verify=True),
    )


def test_mutual_tls_accepts_a_client_certificate(servers: Any, sockets: Any, ca: trustme.CA) -> None:
    client_ca = trustme.CA()
    server = mutual(servers, ca, client_ca)
    certificate, key = leaf(client_ca, "client@example.org")
    tls = SslConfiguration(ca_certificates=[pem(ca.cert_pem)], local_certificate=certificate, private_key=key)
    ws = sockets(url=f"wss://localhost:{server.port}", active=True, ssl_configuration=tls)
    wait_open(ws)
    echo_over(ws)


def test_mutual_tls_refuses_a_client_without_certificate_and_serves_others(
    servers: Any, sockets: Any, ca: trustme.CA
) -> None:
    client_ca = trustme.CA()
    errors = Recorder()
    server = mutual(servers, ca, client_ca)
    server.peer_verify_error.connect(errors)
    told = Recorder()
    refused = sockets(
        url=f"wss://localhost:{server.port}", active=True, ssl_configuration=trusting(ca), on_ssl_errors=told
    )
    # Under TLS 1.3 the refusal is an alert after the client's side of the TLS handshake.
    assert wait_error(refused) == "TLS handshake failed: the peer refused it (CertificateRequired)"
    assert told.wait() == [[refused.error_string]]
    assert "certificate" in errors.wait()[0]
    certificate, key = leaf(client_ca, "client@example.org")
    tls = SslConfiguration(ca_certificates=[pem(ca.cert_pem)], local_certificate=certificate, private_key=key)
    good = sockets(url=f"wss://localhost:{server.port}", active=True, ssl_configuration=tls)
    wait_open(good)
    echo_over(good)


def test_replacing_the_certificate_while_listening(servers: Any, sockets: Any, ca: trustme.CA) -> None:
    server = tls_server(servers, ca)
    before = sockets(url=f"wss://localhost:{server.port}", active=True, ssl_configuration=trusting(ca))
    wait_open(before)
    other = trustme.CA()
    certificate, key = leaf(other, "localhost")
    server.certificate, server.private_key = certificate, key
    after = sockets(url=f"wss://localhost:{server.port}", active=True, ssl_configuration=trusting(other))
    wait_open(after)
    echo_over(after)
    echo_over(before)  # open connections keep theirs
    stale = sockets(url=f"wss://localhost:{server.port}", active=True, ssl_configuration=trusting(ca))
    assert "unknown issuer" in wait_error(stale)


def test_secure_mode_without_a_certificate_raises() -> None:
    with pytest.raises(ValueError, match="certificate"):
        WebSocketServer(secure_mode=True, listen=True)


SMALL = [f"message {i} ✓" * (1 + i % 7) for i in range(500)]
LARGE = [bytes(range(256)) * 4096 * 3, os.urandom(200_000), b"x" * 70_000]


async def send_then_read(ws: Any) -> None:
    """Sends every message, then reads the echoes: a socket whose queue holds few pauses on the way."""
    for message in SMALL + LARGE:
        await ws.send(message)
    got = [await asyncio.wait_for(ws.recv(), 30) for _ in SMALL + LARGE]
    assert got == SMALL + LARGE


def echoing(closed: asyncio.Future[int | None]) -> Any:
    """An echo handler for websockets' server or wsbind.serve that gives its close code to ``closed``."""

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)
        closed.set_result(ws.close_code)

    return handler


def test_our_client_sends_and_reads_much_over_tls(ca: trustme.CA) -> None:
    """wss:// under load, against websockets' server: pipelined small messages, messages of
    megabytes, a socket paused by its full queue and resumed, and the closing handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)

    async def run() -> None:
        closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        serving = websockets.asyncio.server.serve(echoing(closed), "127.0.0.1", 0, ssl=context, max_size=None)
        async with serving as server:
            port = server.sockets[0].getsockname()[1]
            # The closing handshake must end when the server ends the connection (asyncio's
            # ssl sends close_notify and waits for ours), not at close_timeout: a missed end
            # then fails the test's own timeout.
            async with asyncio.timeout(30):
                async with wsbind.connect(
                    f"wss://localhost:{port}", ssl_configuration=trusting(ca), max_queue=4, close_timeout=3600
                ) as ws:
                    await send_then_read(ws)
            assert await asyncio.wait_for(closed, 15) == 1000

    asyncio.run(run())


def test_our_server_reads_and_sends_much_over_tls(ca: trustme.CA) -> None:
    """The same from websockets' client to our server."""
    certificate, key = leaf(ca, "localhost", "127.0.0.1")
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def run() -> None:
        closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        async with wsbind.serve(
            echoing(closed), "127.0.0.1", 0, secure_mode=True, certificate=certificate, private_key=key
        ) as server:
            async with connect(f"wss://localhost:{server.port}", ssl=context, max_size=None) as client:
                await send_then_read(client)
            assert await asyncio.wait_for(closed, 15) == 1000

    asyncio.run(run())
