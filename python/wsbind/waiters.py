"""How a coroutine waits for something that happens on a socket's own thread.

A socket's events arrive on its dispatcher's thread or loop (see
``dispatch``), while the coroutine that awaits them may run on another
loop, in another thread: a socket made by a script's main thread and
awaited inside ``asyncio.run()``. A waiting coroutine sleeps on a future of
its own loop; the socket's thread wakes it with :func:`wake`, directly when
it is that loop's thread, else through ``call_soon_threadsafe``. A blocking
caller (``wsbind.sync``) waits on a ``threading.Event`` in the same list.

A wake-up only says "look again": the coroutine then reads the state it
waits for (a message in the inbox, the bytes left to write), so a wake-up
that comes twice, or for nothing, does no harm, and a cancelled waiter
leaves the state as it was.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["LazyCoroutine", "Waiters", "wait_until", "wake"]

T = TypeVar("T")


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def wake(future: asyncio.Future[None]) -> None:
    """Completes ``future`` from any thread, on its own loop."""
    loop = future.get_loop()
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        _set(future)
        return
    try:
        loop.call_soon_threadsafe(_set, future)
    except RuntimeError:
        # That loop is closed: nobody waits on it any more.
        pass


class Waiters:
    """The futures of coroutines that wait for one kind of change, each on its own loop."""

    __slots__ = ("_futures", "_lock")

    def __init__(self) -> None:
        # The waiting coroutines' futures and blocked threads' events; woken all at once.
        self._futures: list[asyncio.Future[None] | threading.Event] = []
        # A future is added to the list that the next wake_all() takes, never
        # to one it already took, whichever threads add and wake.
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._futures)

    def add(self) -> asyncio.Future[None]:
        """A new future of the running loop, woken by the next :meth:`wake_all`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._futures.append(future)
        return future

    def add_event(self) -> threading.Event:
        """A new event for a blocked thread to wait on, set by the next :meth:`wake_all`."""
        event = threading.Event()
        with self._lock:
            self._futures.append(event)
        return event

    def discard(self, future: asyncio.Future[None] | threading.Event) -> None:
        with self._lock:
            if future in self._futures:
                self._futures.remove(future)

    def wake_all(self) -> None:
        """Wakes every waiting coroutine, from any thread."""
        with self._lock:
            futures, self._futures = self._futures, []
        for future in futures:
            if isinstance(future, threading.Event):
                future.set()
            else:
                wake(future)


async def wait_until(waiters: Waiters, done: Callable[[], bool]) -> None:
    """Returns once ``done()`` is true, looking again each time ``waiters`` are woken.

    ``done()`` is read again after the future is registered, so that a
    change made on another thread between the first look and the
    registration is not missed.
    """
    while not done():
        future = waiters.add()
        try:
            if done():
                return
            await future
        finally:
            waiters.discard(future)


class LazyCoroutine(Coroutine[Any, Any, T], Generic[T]):
    """What a call returns that may be awaited or ignored: ``close()``, ``ping()``.

    Code in the QML style calls ``ws.close()`` and never awaits it, so it must
    not get a coroutine, which Python would warn was never awaited. Code in
    the asyncio style awaits it, or hands it to ``asyncio.create_task()``
    (websockets' ``close()`` and ``ping()`` are coroutines), which takes only
    coroutines: this is one, whose coroutine (:meth:`_wait`) is made only
    when it runs.
    """

    __slots__ = ("_coroutine",)

    async def _wait(self) -> T:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    def _running(self) -> Coroutine[Any, Any, T]:
        """The coroutine a task runs, made at its first step; one per object."""
        running: Coroutine[Any, Any, T] | None = getattr(self, "_coroutine", None)
        if running is None:
            running = self._wait()
            object.__setattr__(self, "_coroutine", running)
        return running

    def send(self, value: Any) -> Any:
        return self._running().send(value)

    def throw(self, *args: Any) -> Any:
        return self._running().throw(*args)

    def close(self) -> None:
        running: Coroutine[Any, Any, T] | None = getattr(self, "_coroutine", None)
        if running is not None:
            running.close()
