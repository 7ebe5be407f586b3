"""Shared test helpers. The peers are real: the independent `websockets`
library, raw sockets for broken peers, a real Jupyter kernel."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Generous, since CI machines are slow; a passing test never waits this long.
TIMEOUT = 15.0


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Polls `predicate` until it returns something true; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.005)


class Recorder:
    """A handler that records its calls, the thread they ran on, and can be waited on."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> None:
        with self._lock:
            self.calls.append(args)
            self.threads.append(threading.current_thread().name)

    @property
    def values(self) -> list[Any]:
        """The first argument of each call."""
        return [c[0] if c else None for c in self.calls]

    def wait(self, count: int = 1, timeout: float = TIMEOUT) -> list[Any]:
        wait_until(lambda: len(self.calls) >= count, timeout, f"{count} call(s)")
        return self.values


@pytest.fixture
def recorder() -> Callable[[], Recorder]:
    return Recorder


@pytest.fixture(autouse=True)
def _collect() -> Iterator[None]:
    yield
    gc.collect()
