"""Checks that each folder of src/ uses only the layers below it.

The layers, lowest first (docs/architecture.md says what each holds):

    protocol  <-  net, bridge  <-  conn  <-  py

config.rs and errors.rs at the top of src/ may be used by every layer and use
none. A file may use its own folder and the folders below it, never a folder
beside or above it. Besides the imports, the check keeps each outside world in
its place: no tokio in protocol/, PyO3 only in bridge/ (to make bytes objects)
and py/, and every #[pyclass], #[pyfunction], #[pymethods] and #[pymodule] in py/.

Run from the repository's top: `python tools/check_layers.py`. It prints
every violation and exits with 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path("src")

# What each folder may use, besides itself and the shared files.
ALLOWED = {
    "protocol": set(),
    "net": {"protocol"},
    "bridge": {"protocol"},
    "conn": {"protocol", "net", "bridge"},
    "py": {"protocol", "net", "bridge", "conn"},
}
SHARED = {"config", "errors"}

# `crate::name` anywhere (use lines, paths in code and doc links alike).
CRATE_PATH = re.compile(r"\bcrate::(\w+)")
# The items of `use crate::{a, b::c}`.
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}")
PYO3_ITEM = re.compile(r"#\[(pyclass|pyfunction|pymethods|pymodule)\b")


def code_of(text: str) -> str:
    """The text without comments: a doc comment may name a layer above."""
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def used_modules(code: str) -> set[str]:
    used = set(CRATE_PATH.findall(code))
    for group in CRATE_GROUP.findall(code):
        used |= {item.strip().split("::")[0] for item in group.split(",") if item.strip()}
    return used


def violations(src: Path) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.rs")):
        relative = path.relative_to(src)
        code = code_of(path.read_text())
        if len(relative.parts) == 1:
            # lib.rs declares the layers; the shared files use nothing.
            if relative.stem in SHARED and used_modules(code):
                found.append(f"{path}: a shared file uses {sorted(used_modules(code))}")
            continue
        layer = relative.parts[0]
        if layer not in ALLOWED:
            found.append(f"{path}: {layer}/ is not a known layer; add it to tools/check_layers.py")
            continue
        for module in sorted(used_modules(code) - {layer} - SHARED - ALLOWED[layer]):
            found.append(f"{path}: {layer}/ uses crate::{module}, which is not below it")
        if layer == "protocol" and re.search(r"\btokio\b", code):
            found.append(f"{path}: protocol/ uses tokio; it takes bytes and time, not I/O")
        if layer not in ("bridge", "py") and re.search(r"\bpyo3\b", code):
            found.append(f"{path}: {layer}/ uses PyO3, which lives in py/ (and bridge/ for bytes objects)")
        if layer != "py" and PYO3_ITEM.search(code):
            found.append(f"{path}: a #[pyclass]/#[pyfunction]/#[pymethods]/#[pymodule] outside py/")
    return found


def main() -> int:
    found = violations(SRC)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} layer violation(s): see the docstring of {__file__}")
        return 1
    print("layers: every folder of src/ uses only the layers below it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
