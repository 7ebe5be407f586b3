"""Routing by path: which handler a WebSocket client or an HTTP request of a server reaches.

A pattern is a path whose segments are literal or ``{name}`` parts, each
matching one segment (``{name:path}`` matches the rest, slashes included)::

    @server.route("/chat/{room}")
    def chat(ws, room): ...

    @server.http_route("/files/{name:path}")
    def files(request, name): ...

Segments are compared percent-decoded, after the path is split on its
slashes, so an encoded ``%2F`` stays inside one part. Patterns are tried
in the order they were added; the first that matches wins.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from .http import split_target

__all__ = ["Route", "Routes"]

_PART = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


class Route:
    """A path pattern and the handler of what it matches."""

    __slots__ = ("_segments", "handler", "pattern")

    def __init__(self, pattern: str, handler: Callable[..., Any]) -> None:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ValueError(f"a route's pattern is a path starting with /, not {pattern!r}")
        if not callable(handler):
            raise TypeError(f"a route's handler must be callable, not {type(handler).__name__}")
        self.pattern = pattern
        """The pattern, e.g. ``/chat/{room}``."""
        self.handler = handler
        """Called with what matched and the captured parts as keywords."""
        # Each segment: a literal str, or (name, rest) for a captured part.
        self._segments: list[str | tuple[str, bool]] = []
        segments = pattern[1:].split("/")
        for i, segment in enumerate(segments):
            part = _PART.fullmatch(segment)
            if part is None:
                if "{" in segment or "}" in segment:
                    raise ValueError(f"{pattern!r}: write a captured part as a whole segment, {{name}}")
                self._segments.append(segment)
            else:
                rest = part.group(2) is not None
                if rest and i != len(segments) - 1:
                    raise ValueError(f"{pattern!r}: {{{part.group(1)}:path}} must be the last segment")
                self._segments.append((part.group(1), rest))

    def match(self, target: str) -> dict[str, str] | None:
        """The captured parts if ``target`` (a request's path and query, as sent) matches, else None."""
        path = split_target(target)[0] or "/"
        raw = path[1:].split("/")
        captured: dict[str, str] = {}
        for i, segment in enumerate(self._segments):
            if isinstance(segment, tuple) and segment[1]:
                rest = urllib.parse.unquote("/".join(raw[i:]))
                if not rest:
                    return None
                captured[segment[0]] = rest
                return captured
            if i >= len(raw):
                return None
            value = urllib.parse.unquote(raw[i])
            if isinstance(segment, tuple):
                if not value:
                    return None
                captured[segment[0]] = value
            elif value != segment:
                return None
        return captured if len(raw) == len(self._segments) else None

    def __repr__(self) -> str:
        return f"<Route {self.pattern}>"


class Routes:
    """Routes in the order they were added."""

    __slots__ = ("_routes",)

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, pattern: str, handler: Callable[..., Any]) -> Route:
        """Adds a route; a pattern added again replaces the earlier one, where it was."""
        route = Route(pattern, handler)
        for i, existing in enumerate(self._routes):
            if existing.pattern == pattern:
                self._routes[i] = route
                return route
        self._routes.append(route)
        return route

    def remove(self, pattern: str) -> None:
        """Removes the route of ``pattern``; KeyError if there is none."""
        for i, existing in enumerate(self._routes):
            if existing.pattern == pattern:
                del self._routes[i]
                return
        raise KeyError(pattern)

    def match(self, target: str) -> tuple[Route, dict[str, str]] | None:
        """The first route that matches ``target``, with its captured parts."""
        for route in self._routes:
            captured = route.match(target)
            if captured is not None:
                return route, captured
        return None

    def __bool__(self) -> bool:
        return bool(self._routes)

    def __len__(self) -> int:
        return len(self._routes)
