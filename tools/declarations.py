"""Writes, into each of wsbind's Object classes, the declarations type checkers need to see it whole.

A class declares its properties and signals once, at run time (``url =
Property("")``, ``pong = Signal[int, bytes](...)``); the constructor's
keywords, the ``*_changed`` signals and which properties are read-only follow
from them, but only at run time. This tool imports the package and writes
them, in each class, as a block under ``if TYPE_CHECKING:`` that mypy reads
and Python skips: the typed ``__init__`` (each writable property, each
``on_<signal>`` handler), each change signal's ``BoundSignal[...]``, and each
read-only property as ``ClassVar[ReadOnly[...]]``.

    python tools/declarations.py          # rewrites the blocks
    python tools/declarations.py --check  # exits 1, naming what is missing or stale

Run it after adding a property or signal; tests/test_typing.py runs the check.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import wsbind
from wsbind.objects import Object, type_text

BEGIN = (
    "    # Declarations for type checkers, written by tools/declarations.py from the properties\n"
    "    # and signals below: run it after adding one (tests/test_typing.py fails until then).\n"
)
END = "    # End of the declarations written by tools/declarations.py.\n"

# Defaults whose type does not say the property's: None, an empty list...
VAGUE_DEFAULTS = (type(None), list, dict, tuple, set, frozenset)

ROOT = Path(__file__).resolve().parent.parent

# The names the declarations use, which the module must import.
NEEDED = ("TYPE_CHECKING", "Callable", "ClassVar", "Binding", "BoundSignal", "ReadOnly")

HELP = 'write it in brackets, e.g. Property[int | None](None) or Signal[str]("message")'


class Problems(Exception):
    """What the declarations of the classes lack, one line each."""


def classes() -> list[type[Object]]:
    """Every Object subclass that a module of the package defines, in module and source order."""
    found = []
    for info in sorted(pkgutil.iter_modules(wsbind.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"wsbind.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Object)
                and value is not Object
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


def namer(module: types.ModuleType, where: str, problems: list[str]) -> Any:
    """Names a class as the module can refer to it: a name it imported, or its module's attribute."""
    names = vars(module)

    def name(cls: type) -> str:
        if cls.__module__ == "builtins" and getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
        for key, value in names.items():
            if value is cls:
                return key
        for key, value in names.items():
            if isinstance(value, types.ModuleType) and getattr(value, cls.__name__, None) is cls:
                return f"{key}.{cls.__name__}"
        problems.append(f"{where}: {module.__name__} does not import {cls.__module__}.{cls.__qualname__}")
        return cls.__qualname__

    return name


def block(cls: type[Object]) -> str:
    """The declarations of ``cls``; raises Problems for properties or signals whose type is not written."""
    module = sys.modules[cls.__module__]
    problems: list[str] = []
    own = vars(cls)
    read_only = []
    changed = []
    keywords = []
    for pname, prop in cls._properties.items():
        where = f"{cls.__name__}.{pname}"
        if not prop.declared and isinstance(prop.default, VAGUE_DEFAULTS):
            problems.append(f"{where}: its default {prop.default!r} does not tell its type: {HELP}")
            continue
        text = type_text(prop.value_type, namer(module, where, problems))
        if pname in own and not pname.startswith("_"):
            if prop.read_only:
                read_only.append(f"        {pname}: ClassVar[ReadOnly[{text}]]\n")
            changed.append(f"        {pname}_changed: BoundSignal[{text}]\n")
        if not prop.read_only and not pname.startswith("_"):
            keywords.append(f"            {pname}: Binding[{text}] | {text} = ...,\n")
    for sname, signal in cls._signals.items():
        where = f"{cls.__name__}.{sname}"
        if sname.startswith("_"):
            continue
        if signal.types is None:
            problems.append(f"{where}: the types of its arguments {signal.params} are not written: {HELP}")
            continue
        if len(signal.types) != len(signal.params):
            problems.append(f"{where}: {len(signal.types)} types for the arguments {signal.params}")
            continue
        handler = signal.handler_type(namer(module, where, problems))
        keywords.append(f"            on_{sname}: {handler} | None = ...,\n")
    for needed in NEEDED:
        if needed not in vars(module):
            problems.append(f"{cls.__name__}: {module.__name__} does not import {needed}, which they use")
    if problems:
        raise Problems("\n".join(problems))
    return "".join(
        [
            BEGIN,
            "    if TYPE_CHECKING:\n",
            *read_only,
            *changed,
            "\n",
            "        def __init__(\n",
            "            self,\n",
            "            *,\n",
            *keywords,
            "        ) -> None: ...\n",
            "\n",
            END,
        ]
    )


def rewrite(source: str, cls: type[Object], text: str) -> str:
    """``source`` with the block of ``cls`` replaced by ``text`` (put after its docstring if it has none),
    and its own ``__init__`` marked as the implementation behind the declared one."""
    lines = source.splitlines(keepends=True)
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    end = node.end_lineno or len(lines)
    span = range(node.lineno - 1, end)
    begin = next((i for i in span if lines[i] == BEGIN.splitlines(keepends=True)[0]), None)
    if begin is not None:
        stop = next(i for i in span if lines[i] == END) + 1
        lines[begin:stop] = [text]
    else:
        first = node.body[0]
        docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        at = first.end_lineno if docstring and first.end_lineno is not None else node.lineno
        lines[at:at] = ["\n", text]
    source = "".join(lines)
    # mypy takes the first __init__, the declared one, for calls, and checks this one's body.
    return re.sub(
        rf"(\nclass {cls.__name__}\(.*?\n    def __init__\(self, \*\*kwargs: Any\) -> None:)(?!  # type)",
        r"\1  # type: ignore[no-redef]",
        source,
        count=1,
        flags=re.DOTALL,
    )


def render() -> dict[Path, str]:
    """Every module file with an Object class, as this tool would write it."""
    pages: dict[Path, str] = {}
    problems = []
    for cls in classes():
        path = Path(sys.modules[cls.__module__].__file__ or "")
        try:
            text = block(cls)
        except Problems as e:
            problems.append(str(e))
            continue
        pages[path] = rewrite(pages.get(path) or path.read_text(encoding="utf-8"), cls, text)
    if problems:
        raise Problems("\n".join(problems))
    return {path: formatted(path, text) for path, text in pages.items()}


def formatted(path: Path, text: str) -> str:
    """``text`` as ``ruff format`` leaves it, so that ``make lint`` and ``--check`` agree."""
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff) if ruff.exists() else "ruff", "format", "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return result.stdout


def stale_names(old: str, new: str) -> list[str]:
    """The declared names whose lines differ between two versions of a file."""
    declared = re.compile(r"^\s+(\w+): ", re.MULTILINE)

    def lines(text: str) -> dict[str, str]:
        return {m[1]: text[m.start() : text.index("\n", m.start())] for m in declared.finditer(text)}

    before, after = lines(old), lines(new)
    return sorted(n for n in after if before.get(n) != after[n])


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        pages = render()
    except Problems as e:
        print(f"The types of these declarations are not written:\n{e}", file=sys.stderr)
        return 1
    status = 0
    for path, text in pages.items():
        old = path.read_text(encoding="utf-8")
        if old == text:
            continue
        if argv:
            names = ", ".join(stale_names(old, text)) or "the __init__ marker"
            print(
                f"{path}: not typed, or typed differently: {names}; run python tools/declarations.py",
                file=sys.stderr,
            )
            status = 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
