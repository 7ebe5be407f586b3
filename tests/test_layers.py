"""The layer check of `make lint` (tools/check_layers.py): it passes on src/
and catches each kind of violation it is there for."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools" / "check_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_src_keeps_its_layers() -> None:
    assert checker().violations(ROOT / "src") == []


@pytest.mark.parametrize(
    ("path", "code", "complaint"),
    [
        ("protocol/a.rs", "use crate::conn::Connection;", "protocol/ uses crate::conn"),
        ("net/a.rs", "use crate::{bridge::Queue, protocol::Role};", "net/ uses crate::bridge"),
        ("conn/a.rs", "fn f() { crate::py::x(); }", "conn/ uses crate::py"),
        ("protocol/a.rs", "use tokio::time::Instant;", "protocol/ uses tokio"),
        ("conn/a.rs", "use pyo3::prelude::*;", "conn/ uses PyO3"),
        ("bridge/a.rs", "#[pyclass]\nstruct A;", "outside py/"),
        ("config.rs", "use crate::protocol::Role;", "a shared file uses"),
    ],
)
def test_each_kind_of_violation_is_caught(tmp_path: Path, path: str, code: str, complaint: str) -> None:
    for layer in ("protocol", "net", "bridge", "conn", "py"):
        (tmp_path / layer).mkdir()
    (tmp_path / path).write_text(code + "\n")
    found = checker().violations(tmp_path)
    assert len(found) == 1 and complaint in found[0], found


def test_comments_may_name_any_layer(tmp_path: Path) -> None:
    (tmp_path / "protocol").mkdir()
    (tmp_path / "protocol" / "a.rs").write_text("//! See [`conn`](crate::conn) and tokio.\nfn f() {}\n")
    assert checker().violations(tmp_path) == []
