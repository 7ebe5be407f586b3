"""The wheel users install: one abi3 wheel that installs into a clean venv and runs a bot from there.

It uses the release wheel ``make wheel`` left in dist/ when there is one; otherwise it builds a
debug one, which reuses ``make build-dev``'s compiled crates, so that the test stays quick.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.server import Server, ServerConnection, serve

ROOT = Path(__file__).resolve().parent.parent

BOT = """\
import sys

import wsbind
from wsbind import Status, WebSocket


def on_status(status):
    if status is Status.OPEN:
        bot.send_text_message("hello from the wheel")
    elif status is Status.ERROR:
        print("error:", bot.error_string)
        wsbind.quit()


def on_message(message):
    print("got", message)
    wsbind.quit()


bot = WebSocket(url=sys.argv[1], active=True, on_status_changed=on_status,
                on_text_message_received=on_message)
wsbind.run()
print("from", wsbind.__file__)
"""


def _wheel(tmp: Path) -> Path:
    built = sorted((ROOT / "dist").glob("wsbind-*.whl"), key=lambda p: p.stat().st_mtime)
    if built:
        return built[-1]
    maturin = Path(sys.executable).with_name("maturin")
    subprocess.run(
        [str(maturin), "build", "-q", "-o", str(tmp)],
        cwd=ROOT,
        check=True,
        timeout=1800,
        env={**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)},
    )
    return next(tmp.glob("wsbind-*.whl"))


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A real peer: the websockets library's server, echoing each message."""

    def echo(connection: ServerConnection) -> None:
        for message in connection:
            connection.send(message)

    server: Server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.timeout(1800)
def test_wheel_installs_and_runs_a_bot(tmp_path: Path, echo_server: str) -> None:
    wheel = _wheel(tmp_path / "dist")
    # One wheel for every CPython from 3.11: the stable ABI.
    assert "-cp311-abi3-" in wheel.name, wheel.name

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    bot = tmp_path / "bot.py"
    bot.write_text(BOT, encoding="utf-8")
    # -I: the bot sees only the venv, not the source tree or the developer's environment.
    result = subprocess.run(
        [str(python), "-I", str(bot), echo_server],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "got hello from the wheel", result.stdout + result.stderr
    assert lines[1].startswith(f"from {venv}"), lines[1]
