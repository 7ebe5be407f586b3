"""docs/reference.md: up to date, complete, and every entry tied to its Qt name or marked as wsbind's own."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from wsbind import Object, Property, Signal, WebSocket, WebSocketServer

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "reference.py"

# The public members with no Qt counterpart, and why. A member whose docstring gives no Qt name
# must be listed here; if Qt does have one, write it into the docstring as (QML: ``name``) or
# (C++: ``name``) instead. Change signals follow their property and are not listed.
WSBIND_ONLY = {
    ("WebSocket", "ping_interval"): "keepalive: Qt has none",
    ("WebSocket", "ping_timeout"): "keepalive: Qt has none",
    ("WebSocket", "close_timeout"): "Qt's wait for the closing handshake cannot be set",
    ("WebSocket", "auto_reconnect"): "Qt never reconnects by itself",
    ("WebSocket", "bytes_to_write_changed"): "Qt has bytesWritten but no signal for bytesToWrite()",
    ("WebSocket", "compression"): "Qt WebSockets has no permessage-deflate",
    ("WebSocket", "negotiated_extensions"): "Qt WebSockets has no permessage-deflate",
    ("WebSocketServer", "compression"): "Qt WebSockets has no permessage-deflate",
    ("WebSocket", "send"): "the asyncio face: websockets' send()",
    ("WebSocket", "recv"): "the asyncio face: websockets' recv()",
    ("WebSocket", "wait_closed"): "the asyncio face: websockets' wait_closed()",
    ("WebSocket", "remote_address"): "websockets' name for (peer_address, peer_port)",
    ("WebSocket", "subprotocol"): "websockets' name for negotiated_subprotocol, None for none",
    ("WebSocket", "request"): "websockets' opening request: Qt has no object for it",
    ("WebSocket", "latency"): "websockets' latency: Qt has no keepalive",
    ("WebSocket", "state"): "websockets' four states: Qt's are status",
    ("WebSocket", "unix_socket_path"): "QWebSocket opens TCP connections only",
    ("WebSocketServer", "unix_socket_path"): "QWebSocketServer listens on TCP only",
    ("WebSocket", "id"): "websockets' id for logs: Qt has none",
    ("WebSocket", "response"): "websockets' opening response: Qt has no object for it",
    ("WebSocketServer", "connections"): "websockets' name for the clients, as a set",
    ("WebSocketServer", "is_serving"): "the asyncio face: websockets' is_serving()",
    ("WebSocket", "max_queue"): "the asyncio face: websockets' max_queue",
    ("WebSocket", "write_limit"): "the asyncio face: websockets' write_limit",
    ("WebSocketServer", "serve_forever"): "the asyncio face: websockets' serve_forever()",
    ("WebSocketServer", "wait_closed"): "the asyncio face: websockets' wait_closed()",
    ("WebSocketServer", "allowed_origins"): "Qt has only originAuthenticationRequired",
    ("WebSocketServer", "clients"): "Qt has no list of the server's sockets",
    ("WebSocketServer", "client_count"): "Qt has no list of the server's sockets",
    ("WebSocketServer", "http_request"): "Qt's server answers no plain HTTP",
    ("WebSocketServer", "http_route"): "Qt's server answers no plain HTTP",
    ("WebSocketServer", "static_dir"): "Qt's server answers no plain HTTP",
    ("WebSocketServer", "max_file_size"): "Qt's server answers no plain HTTP",
    ("WebSocketServer", "route"): "Qt's server has no routing by path",
    ("WebSocketServer", "broadcast_text_message"): "Qt has no broadcast",
    ("WebSocketServer", "broadcast_binary_message"): "Qt has no broadcast",
    ("WebSocketServer", "join"): "Qt has no groups",
    ("WebSocketServer", "leave"): "Qt has no groups",
    ("WebSocketServer", "members"): "Qt has no groups",
    ("WebSocketServer", "groups"): "Qt has no groups",
    ("WebSocketServer", "members_changed"): "Qt has no groups",
    ("WebSocketServer", "broker"): "Qt has no broker between processes",
    ("WebSocketServer", "broker_namespace"): "Qt has no broker between processes",
    ("WebSocketServer", "broker_state"): "Qt has no broker between processes",
    ("WebSocketServer", "reuse_port"): "QTcpServer cannot set SO_REUSEPORT",
    ("WebSocketServer", "broker_dropped"): "Qt has no broker between processes",
}

# Where the Qt name is in each table's rows.
QT_COLUMN = {"Properties": 3, "Signals": 1, "Methods": 1}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load()


def _public_members(cls: type[Object]) -> dict[str, set[str]]:
    """The public names of ``cls`` by table, found without the generator's help."""
    found: dict[str, set[str]] = {kind: set() for kind in QT_COLUMN}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (Property, property)):
            found["Properties"].add(name)
        elif isinstance(attr, Signal):
            found["Signals"].add(name)
        elif inspect.isfunction(attr):
            found["Methods"].add(name)
    return found


def _rows(page: str, cls: type[Object], kind: str) -> dict[str, str]:
    """The rows of one table of the page: the Python name of each, with its Qt name cell."""
    section = page.split(f"\n## {cls.__name__}\n", 1)[1].split("\n## ", 1)[0]
    table = section.split(f"\n### {kind}\n", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| `(\w+)", line)
        if match:
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            rows[match[1]] = cells[QT_COLUMN[kind]].strip()
    return rows


@pytest.fixture(scope="module")
def page() -> str:
    return reference.PAGE.read_text(encoding="utf-8")


def test_page_is_up_to_date(page: str) -> None:
    """docs/reference.md is exactly what docs/reference.py writes."""
    assert page == reference.render(), "docs/reference.md is stale: run python docs/reference.py"


def test_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--check`` passes on the committed page and fails, saying what to run, on a stale one."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    stale = tmp_path / "reference.md"
    stale.write_text("stale\n", encoding="utf-8")
    monkeypatch.setattr(reference, "PAGE", stale)
    assert reference.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "stale\n"


@pytest.mark.parametrize("cls", [WebSocket, WebSocketServer], ids=lambda c: c.__name__)
def test_every_public_member_is_on_the_page(page: str, cls: type[Object]) -> None:
    """Every public property, signal and method of the class has a row in its table, and nothing else does."""
    for kind, names in _public_members(cls).items():
        assert names, f"no {kind} found on {cls.__name__}"
        listed = set(_rows(page, cls, kind))
        assert sorted(names - listed) == [], f"{cls.__name__} {kind} missing from the page"
        assert sorted(listed - names) == [], f"{cls.__name__} {kind} on the page that the class lacks"


def test_every_entry_has_a_qt_name_or_is_wsbind_only(page: str) -> None:
    """An entry without a Qt name ("—") must be in WSBIND_ONLY, and WSBIND_ONLY holds nothing else."""
    lacking = set()
    for cls in (WebSocket, WebSocketServer):
        for kind in QT_COLUMN:
            for name, qt_name in _rows(page, cls, kind).items():
                if kind == "Signals" and name.removesuffix("_changed") in cls._properties:
                    continue  # A change signal has a Qt name exactly when its property has a QML one.
                if qt_name == "—":
                    lacking.add((cls.__name__, name))
    unlisted = sorted(lacking - WSBIND_ONLY.keys())
    assert unlisted == [], (
        f"no Qt name in the docstring of {unlisted}: add (QML: ``name``) or (C++: ``name``), "
        "or list in WSBIND_ONLY"
    )
    stale = sorted(WSBIND_ONLY.keys() - lacking)
    assert stale == [], f"in WSBIND_ONLY but missing or with a Qt name on the page: {stale}"
