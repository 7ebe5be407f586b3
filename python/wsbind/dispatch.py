"""Where handlers run, and the event loop for scripts (``run`` and ``quit``).

The native core hands events to Python through an ``EventQueue``. Each queue
is drained by one thread, so the handlers of one object never run
concurrently and keep their order:

- an object created while an asyncio loop runs in the creating thread (a
  Jupyter notebook, an ``async def main()``) uses that loop's queue, which
  wakes the loop through a file descriptor (``loop.add_reader``);
- any other object uses the queue of wsbind's event thread, so that a
  script's main thread stays free.

That thread also reads the objects' plain TCP sockets itself, when it looks
for events: a message then reaches its handler without waking another thread.
While a handler keeps it busy, the I/O thread reads for it (pings are
answered, close frames echoed).

What a call from another thread sets off (``close()`` from a script's main
thread makes the status CLOSING) is handed to the object's thread with
:meth:`Dispatcher.call`, so that it too runs there, between two events.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import enum
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from . import _wsbind

__all__ = ["quit", "run"]

logger = logging.getLogger("wsbind")

# How long run() and interpreter exit wait for sockets to finish closing.
SHUTDOWN_TIMEOUT = 2.0


class EventKind(enum.IntEnum):
    """What an event from the native queue says, and so what its payload is.

    The queue hands over ``(id, kind, payload)``; the payload's types are in
    ``_wsbind.pyi``.
    """

    CONNECTED = _wsbind.EVENT_CONNECTED
    """A client's handshake succeeded: ``_wsbind.Connected``."""
    TEXT = _wsbind.EVENT_TEXT
    """A text message: ``str``."""
    BINARY = _wsbind.EVENT_BINARY
    """A binary message: ``bytes``."""
    CLOSING = _wsbind.EVENT_CLOSING
    """The peer started the closing handshake: None."""
    CLOSED = _wsbind.EVENT_CLOSED
    """The connection is over: ``_wsbind.Closed``."""
    TEXT_FRAME = _wsbind.EVENT_TEXT_FRAME
    """A text frame: ``_wsbind.Frame``."""
    BINARY_FRAME = _wsbind.EVENT_BINARY_FRAME
    """A binary frame: ``_wsbind.Frame``."""
    PONG = _wsbind.EVENT_PONG
    """The answer to a ping: ``_wsbind.Pong``."""
    WRITTEN = _wsbind.EVENT_WRITTEN
    """Bytes went out: ``_wsbind.Written``."""
    LISTENING = _wsbind.EVENT_LISTENING
    """A server listens: its port, ``int``."""
    LISTEN_FAILED = _wsbind.EVENT_LISTEN_FAILED
    """A server cannot listen: why, ``str``."""
    CLIENT_CONNECTED = _wsbind.EVENT_CLIENT_CONNECTED
    """A server accepted a client: ``_wsbind.ClientConnected``."""
    ACCEPT_FAILED = _wsbind.EVENT_ACCEPT_FAILED
    """accept() failed, the server goes on: why, ``str``."""
    STOPPED = _wsbind.EVENT_STOPPED
    """A server stopped listening: None."""
    SERVER_ERROR = _wsbind.EVENT_SERVER_ERROR
    """A server refused a client: the close code, ``int``."""
    ORIGIN_CHECK = _wsbind.EVENT_ORIGIN_CHECK
    """A server asks about a client's origin: ``_wsbind.OriginAuthenticator``."""
    SSL_ERRORS = _wsbind.EVENT_SSL_ERRORS
    """TLS verification failed: ``list[str]``."""
    PROXY_AUTH = _wsbind.EVENT_PROXY_AUTH
    """A proxy asks for credentials: ``_wsbind.ProxyAuthenticator``."""
    AUTHENTICATE = _wsbind.EVENT_AUTHENTICATE
    """A server answered 401: ``_wsbind.Authenticator``."""
    HTTP_REQUEST = _wsbind.EVENT_HTTP_REQUEST
    """An HTTP request waits for its answer: ``_wsbind.HttpRequest``."""
    REJECTED = _wsbind.EVENT_REJECTED
    """The server refused the handshake; its response's headers: ``list[tuple[str, str]]``."""
    FENCE = _wsbind.EVENT_FENCE
    """Nothing to handle: letting go of it tells the connection that the events before it were handled."""
    BROKER = _wsbind.EVENT_BROKER
    """A server's broker changed state: ``(state, error)``, a ``BrokerState`` value and ``str``."""


def handler_context() -> contextvars.Context | None:
    """The context in which an object made now will run its handlers; None for the dispatcher's own.

    Under Jupyter, a copy of the caller's: ipykernel sends what is printed to
    the cell whose request is in a context variable (its parent header), so
    handlers that run between cells, in the context of the cell that made
    their object, print under that cell. A server's sockets take the
    server's. Elsewhere None, and delivering costs nothing more.
    """
    if "ipykernel" not in sys.modules:
        return None
    return contextvars.copy_context()


class Member(Protocol):
    """What a dispatcher delivers events to: a WebSocket or a WebSocketServer."""

    def _event(self, kind: int, payload: Any) -> None: ...
    def _shutdown(self) -> None: ...


class Dispatcher:
    """Delivers one queue's events to the live objects registered on it, on one thread."""

    def __init__(self, queue: _wsbind.EventQueue) -> None:
        self.queue = queue
        # Native id -> the object whose connection or server it is. Strong:
        # a live socket stays alive while its peer can still talk to it.
        self.objects: dict[int, Member] = {}
        # What other threads handed over with call(), oldest first.
        self.calls: deque[Callable[[], None]] = deque()

    def owns_current_thread(self) -> bool:
        """Whether the calling thread is the one this dispatcher delivers on."""
        raise NotImplementedError

    def call(self, fn: Callable[[], None]) -> None:
        """Runs ``fn`` on this dispatcher's thread, so that the handlers it sets off run there.

        From that thread, at once, as Qt's direct connections. From another,
        ``fn`` waits its turn: it runs before any event taken after this
        call, which is what keeps the order when ``fn`` reacts to something
        the caller did to the connection just before (a close that the
        peer answers at once). Handlers therefore never run on two threads
        at once, nor on the caller's.
        """
        if self.owns_current_thread():
            fn()
        else:
            self.calls.append(fn)
            self.wake()

    def wake(self) -> None:
        """Makes the thread look at ``calls`` soon, even if no event comes."""
        raise NotImplementedError

    def run_calls(self) -> None:
        calls = self.calls
        while calls:
            fn = calls.popleft()
            try:
                fn()
            except Exception:
                logger.exception("wsbind failed to run %r", fn)
            except SystemExit:
                self.exited()

    def exited(self) -> None:
        """A handler raised SystemExit (``sys.exit()``) on this dispatcher's thread."""
        # Called in an except clause, so this raises it again: asyncio's loops end on it.
        raise

    def register(self, native_id: int, obj: Member) -> None:
        self.objects[native_id] = obj

    def unregister(self, native_id: int) -> None:
        self.objects.pop(native_id, None)

    def deliver(self, events: list[tuple[int, int, Any]]) -> None:
        objects = self.objects
        calls = self.calls
        if calls:
            self.run_calls()
        for native_id, kind, payload in events:
            # A call handed over while an earlier event's handlers ran goes
            # before the next event, which may be the connection's answer to it.
            if calls:
                self.run_calls()
            obj = objects.get(native_id)
            if obj is None:
                continue
            try:
                context = getattr(obj, "_context", None)
                if context is None:
                    obj._event(kind, payload)
                else:
                    # A copy: a context cannot be entered twice at once.
                    context.copy().run(obj._event, kind, payload)
            except Exception:
                logger.exception("wsbind failed to deliver an event to %r", obj)
            except SystemExit:
                self.exited()


class LoopDispatcher(Dispatcher):
    """Delivers events on an asyncio loop, woken through the queue's file descriptor."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(_wsbind.EventQueue(wakeup_fd=True))
        self.loop = loop
        # Events are being delivered: a recv() started meanwhile (an eager
        # task made by a handler) must not deliver later ones before them.
        self.delivering = False
        fd = self.queue.fileno()
        assert fd is not None
        loop.add_reader(fd, self._ready)

    def owns_current_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def wake(self) -> None:
        # The descriptor becomes readable, and _ready runs the calls.
        self.queue.wake()

    def _ready(self) -> None:
        self.deliver_from(self.queue.take)

    def deliver_from(self, take: Callable[[], list[tuple[int, int, Any]]]) -> None:
        """Delivers what ``take()`` returns, unless events are being delivered already."""
        if self.delivering:
            return
        self.delivering = True
        try:
            self.deliver(take())
        finally:
            self.delivering = False


class ThreadDispatcher(Dispatcher):
    """Delivers events on wsbind's own event thread."""

    def __init__(self) -> None:
        super().__init__(_wsbind.EventQueue())
        self.thread = threading.Thread(target=self._run, name="wsbind-events", daemon=True)
        self.thread.start()

    def owns_current_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def exited(self) -> None:
        # Raised here it would end this thread alone, and with it every
        # object's events: the program meant to stop, which on wsbind's
        # event thread is run()'s end. A wsbind.sync face's thread has no
        # run() to end: its recv() callers go on.
        if self is not _event_thread:
            logger.error("a handler called sys.exit() on %s; ignored", self.thread.name, exc_info=True)
            return
        logger.error(
            "a handler called sys.exit() on wsbind's event thread; wsbind.run() returns", exc_info=True
        )
        quit()

    def wake(self) -> None:
        self.queue.wake()

    def _run(self) -> None:
        queue = self.queue
        while not queue.closed:
            self.deliver(queue.wait(3600.0))

    def stop(self) -> None:
        self.queue.close()
        if self.thread is not threading.current_thread():
            self.thread.join(SHUTDOWN_TIMEOUT)


_lock = threading.Lock()
_event_thread: ThreadDispatcher | None = None
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopDispatcher] = weakref.WeakKeyDictionary()


def current() -> Dispatcher:
    """The dispatcher for an object created now, in this thread."""
    global _event_thread
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    with _lock:
        if loop is not None:
            dispatcher = _loops.get(loop)
            if dispatcher is None:
                _forget_closed_loops()
                dispatcher = _loops[loop] = LoopDispatcher(loop)
            return dispatcher
        if _event_thread is None:
            _event_thread = ThreadDispatcher()
        return _event_thread


def _forget_closed_loops() -> None:
    """Lets go of the dispatchers of loops that are closed (each ``asyncio.run()``'s, once it returned).

    A dispatcher holds its loop, so the weak keys of ``_loops`` alone would
    never let go: each would keep its queue and the queue's file
    descriptors for good, and a program that calls ``asyncio.run()`` again
    and again would run out of them. Sockets made on such a loop keep their
    dispatcher as long as they live.
    """
    for loop in [loop for loop in _loops if loop.is_closed()]:
        del _loops[loop]


def _dispatchers() -> list[Dispatcher]:
    with _lock:
        found: list[Dispatcher] = list(_loops.values())
        if _event_thread is not None:
            found.append(_event_thread)
    return found


def close_all(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Closes every open socket with 1001 and stops every server; waits up to ``timeout`` s."""
    for dispatcher in _dispatchers():
        for obj in list(dispatcher.objects.values()):
            obj._shutdown()
    deadline = time.monotonic() + timeout
    while any(d.objects for d in _dispatchers()) and time.monotonic() < deadline:
        time.sleep(0.01)


_quit = threading.Event()


def run() -> None:
    """Runs until Ctrl-C or :func:`quit` (Qt: ``QCoreApplication::exec()``).

    Handlers run on wsbind's event thread meanwhile. On the way out every open
    socket is closed with 1001 (going away) and every server stops. Inside an
    asyncio program, await something instead: handlers already run on the loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("wsbind.run() would block the running asyncio loop; await instead")
    try:
        # A quit() that came before run() counts: handlers may run (and quit)
        # as soon as an object exists, before the main thread gets here.
        while not _quit.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        _quit.clear()
        close_all()


def quit() -> None:
    """Makes :func:`run` return (Qt: ``QCoreApplication::quit()``); safe from any thread or handler.

    Called before :func:`run`, it makes the next :func:`run` return at once.
    """
    _quit.set()


@atexit.register
def _at_exit() -> None:
    # The event thread must be out of Python before the interpreter finalizes;
    # sockets still open are dropped with the process.
    if _event_thread is not None:
        _event_thread.stop()
