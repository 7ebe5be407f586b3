"""A griffe extension for the site's Python API page: wsbind's docstrings are written in
reStructuredText (as pydoc and the stubs show them), and mkdocstrings renders Markdown.

It turns the markup they use into Markdown: ``code`` and :role:`name` into `code`, a
paragraph ending in "::" and its indented block into a fenced code block, and a simple
table (rows between lines of "=") into a Markdown table.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":\w+:`~?([^`]+)`")
RULE = re.compile(r"^(=+)(\s+=+)+\s*$")


def inline(text: str) -> str:
    return ROLE.sub(r"`\1`", text).replace("``", "`")


def markdown(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if RULE.match(line):
            i = _table(lines, i, out)
            continue
        if line.rstrip().endswith("::") and i + 1 < len(lines):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(inline(head) + ":")
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            indent = min((len(b) - len(b.lstrip()) for b in block if b.strip()), default=0)
            out += ["", "```python", *(b[indent:] for b in block), "```", ""]
            continue
        out.append(inline(line))
        i += 1
    return "\n".join(out)


def _table(lines: list[str], i: int, out: list[str]) -> int:
    """A simple reST table from the rule at ``i``; returns the index after it."""
    starts = [m.start() for m in re.finditer(r"=+", lines[i])]
    rows: list[list[str]] = []
    i += 1
    rules = 1
    while i < len(lines) and rules < 3:
        if RULE.match(lines[i]):
            rules += 1
        elif lines[i].strip():
            bounds = [*starts[1:], None]
            rows.append([inline(lines[i][a:b].strip()) for a, b in zip(starts, bounds, strict=True)])
        i += 1
    if rows:
        out.append("| " + " | ".join(rows[0]) + " |")
        out.append("|" + "---|" * len(rows[0]))
        out += ["| " + " | ".join(c.replace("|", r"\|") for c in row) + " |" for row in rows[1:]]
    return i


class RstDocstrings(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
