"""Types and help: mypy --strict checks a user's script against every property and signal, and
help() shows the constructor's keywords and each signal's arguments."""

from __future__ import annotations

import importlib.util
import inspect
import pydoc
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import wsbind
from wsbind import Object, Property, Signal, WebSocket, WebSocketServer

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "declarations.py"


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("declarations", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


declarations = _load_tool()

GOOD = """\
from collections.abc import Mapping

import wsbind
from wsbind import Status, WebSocket, WebSocketServer, bind


def on_status(status: Status) -> None:
    print(status.name)


def on_pong(elapsed_ms: float, payload: bytes) -> None:
    print(elapsed_ms, payload)


server = WebSocketServer(listen=True, port=0, allowed_origins=None, on_closed=lambda: None)
relay = WebSocket(url=bind(lambda: server.url), active=bind(lambda: server.listen))
ws = WebSocket(
    url="ws://127.0.0.1:1",
    ping_interval=None,
    compression=None,
    request_headers={"Authorization": "Bearer x"},
    on_status_changed=on_status,
    on_pong=on_pong,
    on_text_message_received=relay.send_text_message,
    on_binary_message_received=None,
)
ws.text_message_received.connect(relay.send_text_message)
ws.url = "ws://127.0.0.1:2"
ws.active = bind(lambda: server.listen)


@server.client_connected.connect
def greet(client: WebSocket) -> None:
    client.send_text_message("hello")


@ws.error_occurred.connect
def failed(message: str) -> int:
    return len(message)


code: int | None = ws.close_code
status: Status = ws.status
headers: Mapping[str, str] = ws.request_headers
clients: list[WebSocket] = server.clients
port: int = server.port
ws.close_code_changed.connect(lambda code: print(code is None or code + 1))
server.clients_changed.connect(lambda sockets: print(len(sockets)))
"""

# Each line that mypy --strict must reject, with words of the error it must give.
BAD = {
    "WebSocket(url=123)": 'Argument "url" to "WebSocket" has incompatible type "int"',
    "WebSocketServer(on_client_conected=print)": 'Unexpected keyword argument "on_client_conected"',
    "WebSocket(on_text_message_received=lambda: None)": 'Argument "on_text_message_received"',
    "WebSocket(on_pong=lambda elapsed: None)": 'Argument "on_pong"',
    "WebSocket(status=Status.OPEN)": 'Unexpected keyword argument "status"',
    "WebSocket().status = Status.OPEN": 'Cannot assign to class variable "status" via instance',
    "WebSocketServer().url = 'ws://x'": 'Cannot assign to class variable "url" via instance',
    "WebSocket().url = 3": "Incompatible types in assignment",
    "WebSocket().ping_interval = 'often'": "Incompatible types in assignment",
    "WebSocket().close_code + 1": 'Unsupported operand types for + ("None" and "int")',
    "WebSocket().pong.connect(lambda elapsed: None)": 'Argument 1 to "connect" of "BoundSignal"',
    "WebSocket().status_changed.connect(lambda s: s.upper())": '"Status" has no attribute "upper"',
    "WebSocketServer().client_connected.connect(lambda ws, extra: None)": 'Argument 1 to "connect"',
    "WebSocketServer(port=bind(lambda: 'x'))": 'expected "Callable[[], int]"',
    "WebSocket().connected.emit(1)": 'Too many arguments for "emit" of "BoundSignal"',
}


def _mypy(paths: list[Path]) -> list[tuple[str, int, str]]:
    """Runs ``mypy --strict`` as a user would on their scripts; gives (file, line, message) per error."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=paths[0].parent,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    errors = []
    for line in result.stdout.splitlines():
        match = re.match(r"(.+?):(\d+): error: (.*)", line)
        if match:
            errors.append((Path(match[1]).name, int(match[2]), match[3]))
    return errors


def test_mypy_checks_user_scripts(tmp_path: Path) -> None:
    """The good script passes mypy --strict; each line of the bad one fails with its own error."""
    good = tmp_path / "good.py"
    good.write_text(GOOD, encoding="utf-8")
    bad = tmp_path / "bad.py"
    header = "from wsbind import Status, WebSocket, WebSocketServer, bind\n\n"
    bad.write_text(header + "".join(f"{line}\n" for line in BAD), encoding="utf-8")
    first = header.count("\n") + 1
    errors = _mypy([good, bad])

    assert [e for e in errors if e[0] == "good.py"] == []
    got: dict[int, list[str]] = {}
    for _, line, message in (e for e in errors if e[0] == "bad.py"):
        got.setdefault(line, []).append(message)
    for number, (code, expected) in enumerate(BAD.items(), start=first):
        messages = got.pop(number, [])
        assert any(expected in m for m in messages), f"{code!r}: expected {expected!r}, mypy said {messages}"
    assert got == {}, f"errors on lines that have none: {got}"


def test_declarations_are_current() -> None:
    """Every property and signal is typed: tools/declarations.py --check names any that is not."""
    result = subprocess.run(
        [sys.executable, str(TOOL), "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_check_names_what_is_not_typed() -> None:
    """A class whose declarations lack a property and a signal: the check names both."""
    path = Path(sys.modules[WebSocket.__module__].__file__ or "")
    current = path.read_text(encoding="utf-8")
    assert declarations.render()[path] == current
    stale = "".join(
        line
        for line in current.splitlines(keepends=True)
        if not re.match(r"\s+(url_changed|on_pong|origin): ", line)
    )
    assert declarations.stale_names(stale, current) == ["on_pong", "origin", "url_changed"]


def test_untyped_declarations_are_refused() -> None:
    """A property whose default does not tell its type, or a signal without types, is named."""

    class Probe(Object):
        count = Property(0)
        values = Property([])
        maybe = Property[int | None](None)
        done = Signal("result")
        short = Signal[int]("a", "b")

    with pytest.raises(declarations.Problems) as caught:
        declarations.block(Probe)
    problems = str(caught.value)
    assert "Probe.values: its default [] does not tell its type" in problems
    assert "Probe.done: the types of its arguments ('result',) are not written" in problems
    assert "Probe.short: 1 types for the arguments ('a', 'b')" in problems
    assert "Probe.count" not in problems
    assert "Probe.maybe" not in problems


def test_types_are_written_as_in_source() -> None:
    """The declarations write each type as an annotation would, however it is nested."""

    class Typed(Object):
        names = Property[tuple[str, ...]](())
        table = Property[dict[str, list[int]] | None](None)
        relay = Property[Callable[[str, bytes], None] | None](None)
        done = Signal[WebSocket, "Typed"]("socket", "other")
        read = Property(0.5, read_only=True)

    # Written for server.py, which imports what the declarations use.
    Typed.__module__ = WebSocketServer.__module__
    text = declarations.block(Typed)
    assert "names: Binding[tuple[str, ...]] | tuple[str, ...] = ...," in text
    assert "table: Binding[dict[str, list[int]] | None] | dict[str, list[int]] | None = ...," in text
    assert "relay: Binding[Callable[[str, bytes], None] | None] | Callable[[str, bytes], None] | None" in text
    assert "on_done: Callable[[WebSocket, Typed], object] | None = ...," in text
    assert "read: ClassVar[ReadOnly[float]]" in text
    assert "read_changed: BoundSignal[float]" in text
    assert "read: Binding" not in text


@pytest.mark.parametrize("cls", [WebSocket, WebSocketServer], ids=lambda c: c.__name__)
def test_signature_shows_every_keyword(cls: type[Object]) -> None:
    """inspect.signature(): each writable property with its default and type, each handler with its
    argument types and None; read-only properties are not keywords."""
    params = inspect.signature(cls).parameters
    writable = [n for n, p in cls._properties.items() if not p.read_only]
    assert list(params) == writable + [f"on_{n}" for n in cls._signals]
    for name in writable:
        assert params[name].default == cls._properties[name].default
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    for name in cls._signals:
        assert params[f"on_{name}"].default is None


def test_signature_types() -> None:
    params = inspect.signature(WebSocket).parameters
    assert str(params["url"]) == "url: str = ''"
    assert str(params["ping_interval"]) == "ping_interval: float | None = 20.0"
    assert str(params["on_pong"]) == "on_pong: Callable[[float, bytes], object] | None = None"
    assert str(params["on_connected"]) == "on_connected: Callable[[], object] | None = None"
    assert "status" not in params
    server = inspect.signature(WebSocketServer).parameters
    assert str(server["on_client_connected"]) == (
        "on_client_connected: Callable[[WebSocket], object] | None = None"
    )


def test_help_shows_signature_and_signal_arguments() -> None:
    """help(wsbind.WebSocket) starts with the real signature and lists each signal with its arguments."""
    text = pydoc.render_doc(wsbind.WebSocket, renderer=pydoc.plaintext)
    assert "WebSocket(*, url: str = '', active: bool = False," in text
    assert "pong = <signal WebSocket.pong(elapsed_ms: float, payload: bytes)>" in text
    assert "<signal WebSocket.status_changed(value: Status)>" in repr(WebSocket.status_changed)
    assert (
        repr(WebSocketServer.client_connected)
        == "<signal WebSocketServer.client_connected(web_socket: WebSocket)>"
    )
    # An object's signal too, with its handlers.
    ws = WebSocket(on_pong=print)
    assert repr(ws.pong) == "<signal WebSocket.pong(elapsed_ms: float, payload: bytes) with 1 handler(s)>"


def test_handler_none_connects_nothing() -> None:
    """on_<signal>=None is the signature's default: it connects no handler."""
    ws = WebSocket(on_text_message_received=None)
    assert not ws.text_message_received.connected


def test_decorated_handler_stays_callable() -> None:
    """connect() returns the handler, so it works as a decorator and the function stays usable."""
    server = WebSocketServer()
    seen: list[str] = []

    @server.accept_error.connect
    def failed(message: str) -> None:
        seen.append(message)

    server.accept_error.emit("out of file descriptors")
    failed("direct")
    assert seen == ["out of file descriptors", "direct"]


def test_tool_writes_what_it_checks() -> None:
    """Run on a module without its block, the tool puts it after the class docstring, formatted."""
    path = Path(sys.modules[WebSocketServer.__module__].__file__ or "")
    current = path.read_text(encoding="utf-8")
    begin = current.index(declarations.BEGIN)
    end = current.index(declarations.END) + len(declarations.END)
    bare = current[: begin - 1] + current[end:]
    text = declarations.rewrite(bare, WebSocketServer, declarations.block(WebSocketServer))
    assert declarations.formatted(path, text) == current
