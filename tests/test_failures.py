"""No silent failures: what a newcomer trips on says why, at once.

A server listens (or raises OSError) before its constructor returns, and takes
its address over from an older server of the same process (a notebook cell run
again); an ERROR nobody listens to is logged at WARNING; a wss:// URL to a
plain server, a URL without a scheme and a wrong close code each say what is
wrong."""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect

from conftest import TIMEOUT, Recorder, free_port, wait_until, websockets_server
from wsbind import InvalidURL, Status, WebSocket

NOT_TLS = "TLS handshake failed: the server does not speak TLS (is the URL ws://?)"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wsbind" and r.levelno == logging.WARNING]


def test_listen_binds_before_the_constructor_returns(servers: Any) -> None:
    server = servers()
    assert server.port != 0
    assert server.url == f"ws://127.0.0.1:{server.port}"
    with connect(server.url, open_timeout=10):
        pass


def test_listening_at_once_still_runs_the_change_handlers_on_the_servers_thread(servers: Any) -> None:
    """url is valid when listen = True returns, but url_changed's handlers run where the
    server's other handlers do (wsbind's event thread here), never on the caller's thread."""
    urls = Recorder()
    server = servers(listen=False, on_url_changed=urls)
    server.listen = True
    assert server.url
    assert urls.wait(1) == [server.url]
    assert urls.threads[0] != threading.current_thread().name


def test_an_address_held_by_another_program_raises_with_its_errno(servers: Any) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        server = servers(listen=False, port=other.getsockname()[1])
        with pytest.raises(OSError) as raised:
            server.listen = True
    assert raised.value.errno == errno.EADDRINUSE
    assert "cannot listen on 127.0.0.1:" in str(raised.value)
    assert server.listen is False
    assert "in use" in server.error_string.lower()


def test_a_second_server_takes_the_address_over_from_the_first(
    servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """What re-running a notebook cell does: the old server stops, its clients get 1001."""
    old = servers()
    old_closed: list[bool] = []
    old.closed.connect(lambda: old_closed.append(True))
    url = old.url
    with connect(url, open_timeout=10) as client:
        wait_until(lambda: len(old.clients) == 1)
        with caplog.at_level(logging.WARNING, logger="wsbind"):
            new = servers(port=old.port, on_client_connected=lambda ws: ws.send_text_message("new"))
        assert new.url == url
        assert any("taken over" in m and str(new.port) in m for m in warnings(caplog)), caplog.text
        with pytest.raises(websockets.ConnectionClosed):
            client.recv(timeout=10)
        assert client.close_code == 1001
    wait_until(lambda: not old.listen and old_closed)
    assert old.url == ""
    with connect(new.url, open_timeout=10) as fresh:
        assert fresh.recv(timeout=10) == "new"


def test_a_server_that_listens_anew_on_its_own_port_takes_nothing_over(
    servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Changing host listens anew: the old socket, still closing, is waited for, not taken over."""
    server = servers(port=free_port())
    port = server.port
    with caplog.at_level(logging.WARNING, logger="wsbind"):
        server.host = "0.0.0.0"
    assert (server.port, server.listen) == (port, True)
    assert not warnings(caplog)
    with connect(server.url, open_timeout=10):
        pass


def test_an_error_nobody_listens_to_is_logged(sockets: Any, caplog: pytest.LogCaptureFixture) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="wsbind"):
        ws = sockets(url=url, active=True)
        wait_until(lambda: ws.status is Status.ERROR)
        wait_until(lambda: warnings(caplog))
    assert warnings(caplog) == [f"{url}: {ws.error_string}"]
    assert "cannot connect" in ws.error_string


def test_a_vanished_client_of_a_server_is_logged_at_info_not_warning(
    servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed browser tab is the peer's business: a server would log a WARNING per client."""
    accepted: list[WebSocket] = []
    server = servers(on_client_connected=accepted.append)
    with caplog.at_level(logging.INFO, logger="wsbind"):
        # No keepalive: this client is never closed, and its ping 20 s later, during another
        # test, would make websockets warn that it was not used as a context manager.
        client = connect(server.url, open_timeout=10, ping_interval=None)
        ws = wait_until(lambda: accepted, what="the server to accept")[0]
        client.socket.close()  # No close frame: the server's socket ends in ERROR.
        wait_until(lambda: ws.status is Status.ERROR, what="the server's socket to fail")
        wait_until(lambda: [r for r in caplog.records if r.name == "wsbind"], what="the log")
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "wsbind"] == [
        (logging.INFO, f"{ws.url}: {ws.error_string}")
    ]


def test_an_error_a_handler_hears_is_not_logged(sockets: Any, caplog: pytest.LogCaptureFixture) -> None:
    errors: list[str] = []
    with caplog.at_level(logging.WARNING, logger="wsbind"):
        ws = sockets(url=f"ws://127.0.0.1:{free_port()}", active=True, on_error_occurred=errors.append)
        wait_until(lambda: errors)
    assert ws.status is Status.ERROR
    assert not warnings(caplog)


def test_the_default_logging_shows_the_error_of_a_bot_without_handlers() -> None:
    """The README's bot with its handler removed: Python's lastResort prints the WARNING."""
    script = textwrap.dedent(
        f"""
        import sys
        from wsbind import WebSocket
        ws = WebSocket(url="ws://127.0.0.1:{free_port()}/bot", active=True)
        sys.stdin.read()  # Runs until the test has read the warning.
        """
    )
    bot = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []

    def read() -> None:
        assert bot.stderr is not None
        lines.extend(bot.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: (
                any("/bot: cannot connect to 127.0.0.1:" in line for line in lines) or bot.poll() is not None
            ),
            what="the warning on stderr",
        )
    finally:
        assert bot.stdin is not None
        bot.stdin.close()
        bot.wait(TIMEOUT)
        reader.join(TIMEOUT)
    assert bot.returncode == 0, "".join(lines)
    assert any("/bot: cannot connect to 127.0.0.1:" in line for line in lines), "".join(lines)


def test_an_active_socket_without_url_says_so(sockets: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wsbind"):
        sockets(url="", active=True)
    assert any("there is no URL to open" in m for m in warnings(caplog)), caplog.text


def test_a_refused_client_nobody_hears_of_is_logged(servers: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = servers(allowed_origins=["https://good.example"])
    with caplog.at_level(logging.WARNING, logger="wsbind"):
        with pytest.raises(websockets.InvalidStatus):
            connect(server.url, origin="https://bad.example", open_timeout=10)  # type: ignore[arg-type]
        wait_until(lambda: warnings(caplog))
    assert "server_error 1008" in warnings(caplog)[0]


@pytest.mark.parametrize("peer", ["wsbind", "websockets"])
def test_wss_to_a_plain_server_fails_at_once(peer: str, servers: Any, sockets: Any) -> None:
    """Well before the handshake timeout (one minute here), and saying what to change."""
    errors: list[str] = []

    def check(url: str) -> None:
        sockets(
            url=url.replace("ws://", "wss://"),
            handshake_timeout=60,
            active=True,
            on_error_occurred=errors.append,
        )
        wait_until(lambda: errors, timeout=30)
        assert errors == [NOT_TLS]

    if peer == "wsbind":
        check(servers().url)
    else:
        with websockets_server(lambda ws: None) as (url, _):
            check(url)


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "localhost:8080"])
def test_a_url_without_scheme_gets_a_hint(url: str) -> None:
    with pytest.raises(InvalidURL, match=f"use ws://{url} or wss://{url}"):
        WebSocket(url=url)


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (999, "", "close code 999 cannot be sent"),
        (70000, "", "close code 70000"),
        (1000, "x" * 124, "over the limit"),
    ],
)
def test_close_checks_its_arguments_whatever_the_status(code: int, reason: str, message: str) -> None:
    ws = WebSocket()
    assert ws.status is Status.CLOSED
    with pytest.raises(ValueError, match=message):
        ws.close(code, reason)


def test_running_a_notebook_cell_again_takes_the_port_over_in_a_real_kernel() -> None:
    """The cell that makes a server on a fixed port, run twice in one ipykernel."""
    import nbformat
    from nbclient import NotebookClient
    from test_notebook import kernel_manager

    port = free_port()
    make = (
        f"server = WebSocketServer(port={port}, listen=True, "
        "on_client_connected=lambda ws: ws.send_text_message(f'hello from {id(server)}'))\n"
        "made.append(server)"
    )
    cells = [
        "import websockets\nfrom wsbind import WebSocketServer\nmade = []",
        make,
        f"old_client = await websockets.connect('ws://127.0.0.1:{port}')\nprint(await old_client.recv())",
        make,
        "await old_client.wait_closed()\n"
        "print('old client closed with', old_client.close_code)\n"
        "print('old server listens:', made[0].listen)\n"
        f"async with websockets.connect('ws://127.0.0.1:{port}') as c:\n"
        "    print('new:', await c.recv() == f'hello from {id(made[1])}')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(nb, km=kernel_manager(), timeout=60, kernel_name="python3").execute()
    stdout = "".join(o.get("text", "") for c in nb.cells for o in c.outputs if o.get("name") == "stdout")
    stderr = "".join(o.get("text", "") for o in nb.cells[3].outputs if o.get("name") == "stderr")
    assert f"127.0.0.1:{port} was taken over from another WebSocketServer" in stderr, nb.cells[3].outputs
    assert "old client closed with 1001" in stdout, stdout
    assert "old server listens: False" in stdout, stdout
    assert "new: True" in stdout, stdout
