"""The package surface: what ``wsbind`` exports, that it is documented, and the core's exception."""

from __future__ import annotations

import importlib

import pytest

import wsbind
from wsbind import Object, Property, Signal, WebSocket, WebSocketServer

SUBMODULES = (
    "wsbind.objects",
    "wsbind.errors",
    "wsbind.status",
    "wsbind.websocket",
    "wsbind.server",
    "wsbind.dispatch",
    "wsbind.tls",
    "wsbind.broadcast",
    "wsbind.broker",
    "wsbind.aio",
    "wsbind.retry",
    "wsbind.http",
)


def _members(cls: type[Object]) -> list[tuple[str, Property | Signal]]:
    """Every public Property and Signal of ``cls``, including the auto-made ``*_changed`` signals."""
    found = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = getattr(cls, name)
        if isinstance(attr, (Property, Signal)):
            found.append((name, attr))
    return found


MEMBERS = [(cls, name, attr) for cls in (WebSocket, WebSocketServer) for name, attr in _members(cls)]


def test_all_is_the_union_of_the_submodules_all() -> None:
    """``wsbind.__all__`` is exactly the union of the public submodules' ``__all__``, without repeats."""
    union: set[str] = set()
    for module_name in SUBMODULES:
        union |= set(importlib.import_module(module_name).__all__)
    assert len(wsbind.__all__) == len(set(wsbind.__all__))
    assert set(wsbind.__all__) == union


def test_top_level_names_are_the_submodules_objects() -> None:
    """Each name a submodule exports is the same object at the top level."""
    for module_name in SUBMODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert getattr(wsbind, name) is getattr(module, name), f"{module_name}.{name}"


@pytest.mark.parametrize("name", wsbind.__all__)
def test_every_exported_name_exists_and_has_a_docstring(name: str) -> None:
    """Every name in ``wsbind.__all__`` exists and has its own non-empty docstring."""
    obj = getattr(wsbind, name)
    assert isinstance(obj.__doc__, str)
    assert obj.__doc__.strip()


@pytest.mark.parametrize(("cls", "name", "attr"), MEMBERS, ids=[f"{c.__name__}.{n}" for c, n, _ in MEMBERS])
def test_every_property_and_signal_is_documented(cls: type, name: str, attr: Property | Signal) -> None:
    """Every public property and signal of WebSocket and WebSocketServer has a non-empty ``__doc__``."""
    assert isinstance(attr.__doc__, str)
    assert attr.__doc__.strip(), f"{cls.__name__}.{name} has no doc"


def test_change_signal_doc_names_its_property() -> None:
    """The auto-made ``x_changed`` signal's doc says which property it reports on."""
    assert "url" in WebSocket.url_changed.__doc__
    assert "port" in WebSocketServer.port_changed.__doc__


def test_native_invalid_url_is_the_python_class() -> None:
    """The native core raises the package's own InvalidURL class."""
    with pytest.raises(wsbind.InvalidURL):
        wsbind._wsbind.check_url("http://example.com")
