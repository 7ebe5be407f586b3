"""Writes docs/reference.md, wsbind's API reference, from the declarations and docstrings.

python docs/reference.py          # writes docs/reference.md
python docs/reference.py --check  # exits 1 if docs/reference.md is not what it would write
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wsbind
from wsbind import Object, Status, WebSocket, WebSocketServer, _wsbind, errors, status

PAGE = Path(__file__).with_name("reference.md")

# The Qt name in a docstring: "(QML: ``url``)", "(C++: ``closeCode()``)", "(QML/C++: ``pong``)",
# "(Qt: ``QCoreApplication::exec()``)". It ends at the ")" followed by a space, punctuation or the
# end, not at the "()" of a C++ name inside it.
QT_NAME = re.compile(r"\s*\(((?:QML|C\+\+|Qt)(?:/C\+\+)?: .*?)\)(?=[\s.,;]|$)", re.DOTALL)
QML_NAME = re.compile(r"QML(?:/C\+\+)?: ``(\w+)``")

INTRO = """\
# wsbind API reference

Generated from the classes' declarations and docstrings by `docs/reference.py`;
do not edit by hand, run `python docs/reference.py` instead.

Names are QML's in snake_case, and each QML construct has its Python form:

- A property `errorString` is `error_string`: read it as an attribute, and set a
  read-write one as an attribute or a constructor keyword, `WebSocket(url=..., active=True)`.
- Every property `x` has a change signal `x_changed(value)`, QML's `xChanged`. A property
  that Qt has only in C++, such as `closeCode()`, has no change signal there, hence "—".
- A signal `textMessageReceived` is `text_message_received`. QML's handler
  `onTextMessageReceived: ...` is the constructor keyword `on_text_message_received=fn`,
  or `ws.text_message_received.connect(fn)`.
- A binding `url: server.url` is `url=bind(lambda: server.url)`, see `bind()` below.

The Qt name column gives the QML name, the C++ name (`QWebSocket`, `QWebSocketServer`),
or both; "—" marks what wsbind adds to Qt.
"""


def inline(text: str) -> str:
    """reStructuredText's inline markup as Markdown: ``x`` and :class:`x` become `x`."""
    return re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")


def cell(text: str) -> str:
    """A docstring (or part of one) as one Markdown table cell."""
    return " ".join(inline(text).split()).replace("|", r"\|")


def code_cell(text: str) -> str:
    """Code as one Markdown table cell: a "|" in it (``str | bytes``) must not end the cell."""
    return "`" + text.replace("|", r"\|") + "`"


def qt_name(doc: str | None) -> str:
    match = QT_NAME.search(doc or "")
    return cell(match[1]) if match else "—"


def meaning(doc: str | None, first_paragraph: bool = False) -> str:
    """A docstring without its Qt name, as a table cell; only its first paragraph if asked."""
    text = inspect.cleandoc(doc or "")
    if first_paragraph:
        text = text.split("\n\n")[0]
    return cell(QT_NAME.sub("", text, count=1))


def prose(doc: str) -> str:
    """A docstring as Markdown paragraphs; a "::" literal block becomes a fenced one."""
    out = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        if paragraph.startswith(" "):
            out.append(f"```\n{textwrap.dedent(paragraph)}\n```")
        elif paragraph != "::":
            out.append(inline(re.sub(r"::$", ":", paragraph)))
    return "\n\n".join(out)


def size(value: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor and value % factor == 0:
            return f"{value // factor} {unit}"
    return f"{value} bytes"


def readable(name: str, value: Any) -> str:
    """A default or limit as a reader wants it: `Status.CLOSED`, 16 MiB, 20 s, `""`, `None`."""
    name = name.lower()
    if isinstance(value, Status):
        return f"`Status.{value.name}`"
    if isinstance(value, int) and name.endswith(("_size", "_buffer", "_bytes")):
        return size(value)
    if isinstance(value, float) and name.endswith(("_timeout", "_interval")):
        return f"{value:g} s"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


class _Source(str):
    """An annotation kept as its source text (the modules use postponed annotations), shown unquoted."""

    def __repr__(self) -> str:
        return str(self)


def signature(fn: Callable[..., Any]) -> str:
    """``name(params) -> result`` as inspect.signature has it, without ``self``."""
    sig = inspect.signature(fn)

    def source(annotation: Any) -> Any:
        return annotation if annotation is sig.empty else _Source(annotation)

    params = [p.replace(annotation=source(p.annotation)) for p in sig.parameters.values()]
    if params and params[0].name == "self":
        params = params[1:]
    return f"{fn.__name__}{sig.replace(parameters=params, return_annotation=source(sig.return_annotation))}"


def attribute_docs(source: str) -> dict[str, str]:
    """The docstrings written under attributes (``X: int`` then a string) in Python source, by name."""
    docs = {}
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for stmt, after in itertools.pairwise(body):
            target = stmt.target if isinstance(stmt, ast.AnnAssign) else getattr(stmt, "targets", [None])[0]
            if isinstance(target, ast.Name) and isinstance(after, ast.Expr):
                if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                    docs[target.id] = after.value.value
    return docs


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def public(cls: type, kind: type | tuple[type, ...]) -> dict[str, Any]:
    """The public attributes of ``cls`` and its bases that are instances of ``kind``, in declaration order."""
    found = {}
    for klass in reversed(cls.__mro__):
        found.update({n: a for n, a in vars(klass).items() if isinstance(a, kind) and not n.startswith("_")})
    return found


def signal_qt_name(cls: type[Object], name: str, doc: str | None) -> str:
    """A signal's Qt name; a change signal's is QML's ``xChanged`` when its property is QML's ``x``."""
    prop = cls._properties.get(name.removesuffix("_changed")) if name.endswith("_changed") else None
    if prop is None:
        return qt_name(doc)
    match = QML_NAME.search(prop.__doc__ or "")
    return f"QML: `{match[1]}Changed`" if match else "—"


def class_section(cls: type[Object]) -> str:
    properties = [
        [
            f"`{n}`",
            readable(n, p.default),
            "read-only" if p.read_only else "read-write",
            qt_name(p.__doc__),
            meaning(p.__doc__),
        ]
        for n, p in cls._properties.items()
        if not n.startswith("_")
    ]
    properties += [
        [
            f"`{n}`",
            code_cell(p.fget.__annotations__.get("return", "")),
            "read-only",
            qt_name(p.__doc__),
            meaning(p.__doc__, first_paragraph=True),
        ]
        for n, p in public(cls, property).items()
    ]
    signals = [
        [code_cell(s.describe()), signal_qt_name(cls, n, s.__doc__), meaning(s.__doc__)]
        for n, s in cls._signals.items()
        if not n.startswith("_")
    ]
    methods = [
        [code_cell(signature(f)), qt_name(f.__doc__), meaning(f.__doc__, first_paragraph=True)]
        for f in public(cls, types.FunctionType).values()
    ]
    return "\n\n".join(
        [
            f"## {cls.__name__}",
            f"Qt name: {qt_name(cls.__doc__)}.",
            prose(QT_NAME.sub("", cls.__doc__ or "", count=1)),
            "### Properties",
            table(["Python name", "Default (or type)", "Access", "Qt name", "Meaning"], properties),
            "### Signals",
            table(["Signal", "Qt name", "Meaning"], signals),
            "### Methods",
            table(["Method", "Qt name", "Meaning"], methods),
        ]
    )


def render() -> str:
    functions = [
        [code_cell(f"wsbind.{signature(f)}"), qt_name(f.__doc__), meaning(f.__doc__, first_paragraph=True)]
        for f in (wsbind.bind, wsbind.run, wsbind.quit, wsbind.connect, wsbind.serve, wsbind.backoff)
    ]
    member_docs = attribute_docs(inspect.getsource(status))
    statuses = [
        [
            f"`Status.{s.name}`",
            str(s.value),
            qt_name(member_docs.get(s.name)),
            meaning(member_docs.get(s.name)),
        ]
        for s in Status
    ]
    stub_docs = attribute_docs(Path(_wsbind.__file__).with_name("_wsbind.pyi").read_text(encoding="utf-8"))
    limits = [
        [f"`{n}`", readable(n, getattr(_wsbind, n)), meaning(stub_docs.get(n))]
        for n in _wsbind.__all__
        if n.isupper() and not n.startswith("EVENT_")
    ]
    sections = [
        INTRO.rstrip(),
        class_section(WebSocket),
        class_section(WebSocketServer),
        "## Module functions",
        table(["Function", "Qt name", "Meaning"], functions),
        "## Status",
        prose(Status.__doc__ or ""),
        table(["Member", "Value", "Qt name", "Meaning"], statuses),
        "## Exceptions",
        prose(errors.__doc__ or ""),
        "## Limits",
        "The native core's fixed limits and defaults (constants of `wsbind._wsbind`):",
        table(["Constant", "Value", "Meaning"], limits),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python docs/reference.py", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
