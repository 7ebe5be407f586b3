"""wsbind's object model: properties with change signals, signals, and bindings.

Every wsbind class is an :class:`Object` and declares its properties and
signals with :class:`Property` and :class:`Signal`, the way a QML type does:

==========================  ============================================================
QML                         wsbind
==========================  ============================================================
``property url``            ``url = Property("")``; read and write ``obj.url``
``urlChanged``              ``obj.url_changed``: made for every property
``onUrlChanged: ...``       ``Cls(on_url_changed=fn)`` or ``obj.url_changed.connect(fn)``
``signal pong(...)``        ``pong = Signal[float, bytes]("elapsed_ms", "payload")``
``url: server.url``         ``obj.url = bind(lambda: server.url)``
==========================  ============================================================

A binding re-evaluates its function whenever a property that the function read
during its last evaluation changes, as a QML binding does.

Every signal can also be awaited, which is how the QML style meets asyncio
(Qt's nearest is ``QSignalSpy::wait``)::

    status = await ws.status_changed.wait(timeout=10)   # the next emission
    async for message in ws.text_message_received:      # every emission, in order
        ...

and, in a thread with no event loop, ``ws.status_changed.wait_blocking(10)``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import copy
import difflib
import inspect
import logging
import sys
import threading
import time
import types
import typing
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Protocol, TypeVar, TypeVarTuple, overload

__all__ = ["Binding", "BoundSignal", "Emissions", "Object", "Property", "ReadOnly", "Signal", "bind"]

logger = logging.getLogger("wsbind")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
R = TypeVar("R")
# A signal's argument types: ``Signal[str]``, ``Signal[int, bytes]``, ``Signal[()]``.
Ts = TypeVarTuple("Ts")


class _Tracking(threading.local):
    # The properties read by the binding being evaluated in this thread, or None.
    reads: set[tuple[Object, str]] | None = None


_tracking = _Tracking()

# What a property whose default is a list or dict reads from the values of an
# object that never set it: the object then stores a copy of its own.
_UNSET: Any = object()

# Evaluations of one binding in a row while its inputs keep changing under it.
_MAX_EVALUATIONS = 10

# Emissions an ``async for`` over a signal holds for a consumer that has not
# taken them yet. Enough for the events of a burst, which arrive in one batch
# faster than a coroutine on another thread's loop can take them; small
# enough that a loop which stops taking them holds little. When it is full
# the oldest is dropped, with a warning: a signal cannot make its emitter wait.
MAX_EMISSIONS = 256

# The longest one wait of a blocking call lasts before it waits again. A
# thread only runs Python's signal handlers between waits on some platforms,
# and this is how soon Ctrl-C interrupts a blocking wait there.
WAIT_SLICE = 0.2

# Guards the handler tuples of every signal: handlers are connected from any
# thread (an awaiting loop's, a script's) while the object's thread emits.
# Reentrant: the garbage collector may finalize an abandoned Emissions, which
# disconnects itself, in the middle of a connect().
_handlers_lock = threading.RLock()


class BoundSignal(Generic[*Ts]):
    """A signal of one object: connect handlers to it, and they run when it is emitted.

    Handlers run in the order they were connected. An exception in one is
    logged with its traceback on the ``wsbind`` logger and the others still run.

    A signal can also be awaited: ``await signal.wait()`` gives its next
    emission and ``async for args in signal`` each emission, on any asyncio
    loop, whichever thread emits it; ``signal.wait_blocking()`` waits in a
    thread without a loop. What they give of an emission is what a handler
    would be called with, packed as a function's return value: None for a
    signal without arguments, the value for one argument (``status_changed``
    gives the new status), a tuple for several (``pong`` gives
    ``(elapsed_ms, payload)``).
    """

    __slots__ = ("_handlers", "_name", "_owner", "_watcher")

    def __init__(
        self,
        name: str,
        watcher: Callable[[bool], None] | None = None,
        owner: Object | None = None,
    ) -> None:
        # "Class.signal", for log messages.
        self._name = name
        # The connected callables, in the order they were connected; a tuple,
        # replaced on each change, so that emitting never copies it.
        self._handlers: tuple[Callable[..., Any], ...] = ()
        # Told True when the first handler connects and False when the last goes.
        self._watcher = watcher
        # The object that emits it, to tell a blocking wait that would wait
        # for ever on the object's own thread; weak, as the object owns this.
        self._owner = None if owner is None else weakref.ref(owner)

    def connect(self, handler: Callable[[*Ts], R]) -> Callable[[*Ts], R]:
        """Calls ``handler`` on every emission (Qt: ``connect``); returns it, so it works as a decorator.

        ``handler`` takes the signal's arguments; what it returns is ignored,
        so ``ws.text_message_received.connect(other.send_text_message)`` relays.
        """
        if not callable(handler):
            raise TypeError(f"{self._name}.connect() takes a callable, not {type(handler).__name__}")
        self._add(handler)
        return handler

    def _add(self, handler: Callable[..., Any]) -> None:
        """Connects ``handler``, whatever it takes: the package's own handlers take ``*args``."""
        with _handlers_lock:
            self._handlers = (*self._handlers, handler)
            first = len(self._handlers) == 1
        if first and self._watcher is not None:
            self._watcher(True)

    def disconnect(self, handler: Callable[..., Any]) -> None:
        """Stops calling ``handler`` (Qt: ``disconnect``); raises ValueError if it is not connected."""
        if not self._remove(handler):
            raise ValueError(f"{handler!r} is not connected to {self._name}")

    def _remove(self, handler: Callable[..., Any]) -> bool:
        """Disconnects ``handler`` if it is connected; returns whether it was."""
        with _handlers_lock:
            handlers = list(self._handlers)
            try:
                handlers.remove(handler)
            except ValueError:
                return False
            self._handlers = tuple(handlers)
            last = not handlers
        if last and self._watcher is not None:
            self._watcher(False)
        return True

    @property
    def connected(self) -> bool:
        """Whether any handler is connected."""
        return bool(self._handlers)

    def emit(self, *args: *Ts) -> None:
        """Calls every connected handler with ``args`` (Qt: ``emit``)."""
        for handler in self._handlers:
            try:
                handler(*args)
            except Exception:
                logger.exception("exception in a handler of %s", self._name)

    def wait(self, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        """Waits for the next emission and gives its arguments (Qt: ``QSignalSpy::wait``)::

            status = await ws.status_changed.wait(timeout=10)

        Gives None, the one argument, or a tuple of several (see the class).
        Raises TimeoutError if ``timeout`` seconds (counted from the
        ``await``) pass first; None waits for ever.

        Call it in a coroutine on a running asyncio loop; any loop will do,
        whichever thread emits the signal. The wait starts at the call, not at
        the ``await``, so an emission that the lines between set off is not
        missed::

            opened = ws.status_changed.wait()
            ws.active = True
            await opened

        Outside a loop, :meth:`wait_blocking` waits the same way.
        """
        loop = _running_loop(f"{self._name}.wait()", "wait_blocking()")
        future: asyncio.Future[Any] = loop.create_future()
        thread = threading.get_ident()

        def settle(*args: Any) -> None:
            # Only the first emission counts, even if two race to get here.
            if not self._remove(settle):
                return
            value = _packed(args)
            if threading.get_ident() == thread:
                _resolve(future, value)
                return
            try:
                loop.call_soon_threadsafe(_resolve, future, value)
            except RuntimeError:
                pass  # The loop is closed: nobody awaits any more.

        self._add(settle)
        return self._waited(future, settle, timeout)

    async def _waited(
        self, future: asyncio.Future[Any], settle: Callable[..., Any], timeout: float | None
    ) -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            # After a timeout or a cancellation, nothing is left behind.
            self._remove(settle)

    def wait_blocking(self, timeout: float | None = None) -> Any:
        """Blocks the calling thread until the next emission and gives its arguments, as :meth:`wait`.

        For scripts and threads without an asyncio loop. Raises TimeoutError
        if ``timeout`` seconds pass first (None: no limit); Ctrl-C interrupts
        it. Raises RuntimeError where it could only wait for ever or stall
        others: on a running asyncio loop (await :meth:`wait` there), and in a
        handler on the thread that runs this object's handlers, which is the
        thread that would emit the signal.
        """
        _no_running_loop(f"{self._name}.wait_blocking()", f"await {self._name}.wait()")
        owner = None if self._owner is None else self._owner()
        if owner is not None and owner._owns_current_thread():
            raise RuntimeError(
                f"{self._name}.wait_blocking() would wait for ever: it was called on the thread "
                "that runs this object's handlers, which is the one that would emit it"
            )
        emitted = threading.Event()
        got: list[Any] = []

        def settle(*args: Any) -> None:
            if self._remove(settle):
                got.append(_packed(args))
                emitted.set()

        self._add(settle)
        try:
            if not wait_in_slices(emitted.wait, timeout):
                raise TimeoutError(f"{self._name} was not emitted within {timeout} s")
        finally:
            self._remove(settle)
        return got[0]

    def emissions(self, max_queue: int = MAX_EMISSIONS) -> Emissions:
        """Every emission from now on, for ``async for``; ``async for args in signal`` is the short form.

        ``max_queue`` (default 256) bounds the emissions held for a consumer
        that falls behind; beyond it the oldest is dropped, with a warning.
        Call it on the loop that will iterate.
        """
        return Emissions(self, max_queue)

    def __aiter__(self) -> Emissions:
        """``async for message in ws.text_message_received``: each emission, in order.

        The same as ``emissions()``; see :class:`Emissions`.
        """
        return Emissions(self, MAX_EMISSIONS)

    def __repr__(self) -> str:
        # With its arguments, as the class's signal shows them.
        owner = None if self._owner is None else self._owner()
        cls, _, name = self._name.rpartition(".")
        signal = getattr(type(owner), name, None) if owner is not None else None
        what = f"{cls}.{signal.describe()}" if isinstance(signal, Signal) else self._name
        return f"<signal {what} with {len(self._handlers)} handler(s)>"


class Emissions:
    """The emissions of one signal from the moment it is made, for ``async for``::

        async for message in ws.text_message_received:
            print(message)

    Each item is what :meth:`BoundSignal.wait` would give. It never ends by
    itself, since a signal has no last emission: ``break`` out of it (or call
    :meth:`close`). Once it is closed or no longer referenced, the signal
    forgets it.

    The signal may be emitted on any thread: a burst of emissions from
    another thread wakes the loop once. Emissions not taken yet wait in a
    queue of at most ``max_queue`` (default 256); when a new one comes to a
    full queue, the oldest is dropped, ``dropped`` counts it, and a warning
    on the ``wsbind`` logger says so (once per run of drops, and again with
    how many were lost once the loop has caught up). Nothing is lost silently.
    """

    def __init__(self, signal: BoundSignal[*tuple[Any, ...]], max_queue: int = MAX_EMISSIONS) -> None:
        if not isinstance(max_queue, int) or isinstance(max_queue, bool):
            raise TypeError(f"max_queue must be an int, not {type(max_queue).__name__}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        self._loop = _running_loop(f"async for over {signal._name}", f"{signal._name}.wait_blocking()")
        # The thread of that loop, where the waiter may be woken directly.
        self._thread = threading.get_ident()
        self._signal = signal
        self.max_queue = max_queue
        """The most emissions held for the consumer; beyond it the oldest is dropped."""
        self.dropped = 0
        """How many emissions were dropped because the queue was full."""
        # Emissions not taken yet, oldest first.
        self._queue: deque[Any] = deque()
        # Drops since the queue was last empty: the run of drops being warned of.
        self._dropping = 0
        # Guards the above against the emitting thread.
        self._lock = threading.Lock()
        # The future the consumer awaits while the queue is empty.
        self._waiter: asyncio.Future[None] | None = None
        # A wake-up is on its way to the loop: the rest of a burst needs none.
        self._wake_pending = False
        self._closed = False
        # Weak, so that the signal does not keep an abandoned iterator alive.
        self._handler = _collector(weakref.ref(self), signal)
        signal.connect(self._handler)

    def __aiter__(self) -> Emissions:
        return self

    async def __anext__(self) -> Any:
        while True:
            with self._lock:
                if self._queue:
                    item = self._queue.popleft()
                    caught_up = not self._queue
                    dropped = self._dropping if caught_up else 0
                    if caught_up:
                        self._dropping = 0
                    break
                if self._closed:
                    raise StopAsyncIteration
                waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None
        if dropped:
            logger.warning(
                "async for over %s caught up; %d emission(s) were dropped meanwhile",
                self._signal._name,
                dropped,
            )
        return item

    def _put(self, item: Any) -> None:
        """On the emitting thread: queues one emission and wakes the consumer once per burst."""
        with self._lock:
            if self._closed:
                return
            queue = self._queue
            if len(queue) >= self.max_queue:
                queue.popleft()
                self.dropped += 1
                self._dropping += 1
                warn = self._dropping == 1
            else:
                warn = False
            queue.append(item)
            wake = self._waiter is not None and not self._wake_pending
            if wake:
                self._wake_pending = True
        if warn:
            logger.warning(
                "async for over %s is %d emissions behind: dropping the oldest until it catches up",
                self._signal._name,
                self.max_queue,
            )
        if wake:
            self._wake()

    def _wake(self) -> None:
        if threading.get_ident() == self._thread:
            self._woken()
            return
        try:
            self._loop.call_soon_threadsafe(self._woken)
        except RuntimeError:
            # The loop is closed: nothing will iterate any more.
            self._signal._remove(self._handler)

    def _woken(self) -> None:
        with self._lock:
            self._wake_pending = False
            waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stops collecting emissions; an ``async for`` over it ends after those already held.

        Safe from any thread.
        """
        self._signal._remove(self._handler)
        with self._lock:
            self._closed = True
            wake = self._waiter is not None and not self._wake_pending
            if wake:
                self._wake_pending = True
        if wake:
            self._wake()

    async def aclose(self) -> None:
        """The same as :meth:`close`, for ``contextlib.aclosing``."""
        self.close()

    def __del__(self) -> None:
        # An abandoned iterator (a `break` out of `async for`) stops collecting.
        try:
            self._signal._remove(self._handler)
        except Exception:
            pass


def _collector(ref: weakref.ref[Emissions], signal: BoundSignal[*tuple[Any, ...]]) -> Callable[..., None]:
    def collect(*args: Any) -> None:
        emissions = ref()
        if emissions is not None:
            emissions._put(_packed(args))
        else:
            # Gone without its __del__ getting here (a removal lost to a race).
            signal._remove(collect)

    return collect


def _packed(args: tuple[Any, ...]) -> Any:
    """An emission's arguments as one value: None, the one argument, or the tuple."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return args


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    # A waiter cancelled or timed out meanwhile has gone.
    if not future.done():
        future.set_result(value)


def _running_loop(what: str, instead: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{what} needs a running asyncio loop (use it in a coroutine); outside one, use {instead}"
        ) from None


def _no_running_loop(what: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{what} would block the running asyncio loop; {instead} instead")


def wait_in_slices(wait: Callable[[float], bool], timeout: float | None) -> bool:
    """Calls ``wait(seconds)`` in slices of at most ``WAIT_SLICE`` until it returns True or
    ``timeout`` seconds (None: no limit) have passed; returns whether it did.

    The package's blocking waits go through here, so that Ctrl-C reaches a
    main thread that waits, on every platform.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, max(0.0, deadline - time.monotonic()))
        if wait(left):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


class Signal(Generic[*Ts]):
    """Declares a signal on an :class:`Object` subclass (QML: ``signal name(params)``).

    The types in brackets are the types of its arguments and ``params`` their
    names: ``pong = Signal[int, bytes]("elapsed_ms", "payload")``, and
    ``Signal[()]()`` for one without arguments. Type checkers then check
    every handler, and ``help()`` and the signal's repr show them.
    Each instance gets its own :class:`BoundSignal` under the same name.
    ``watched`` names a method the object runs with True when the signal gets
    its first handler and False when it loses its last one, for work that is
    only worth doing while somebody listens.
    """

    def __init__(self, *params: str, doc: str = "", watched: str | None = None) -> None:
        self.params = params
        self.__doc__ = doc
        self.watched = watched
        self.name = ""
        # The class that declares it, once known.
        self.owner: type | None = None
        # The argument types, for a change signal that its property makes.
        self._types: tuple[Any, ...] | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner

    @property
    def types(self) -> tuple[Any, ...] | None:
        """The argument types written in brackets (``Signal[int, bytes]``), or None if none were."""
        if self._types is not None:
            return self._types
        declared = getattr(self, "__orig_class__", None)
        return None if declared is None else typing.get_args(declared)

    def handler_type(self, name: Callable[[Any], str] | None = None) -> str:
        """The type of a handler, as it is written: ``Callable[[int, bytes], object]``.

        ``name`` names classes, as for :func:`type_text`.
        """
        types = self.types
        if types is None:
            return "Callable[..., object]"
        return f"Callable[[{', '.join(type_text(t, name) for t in types)}], object]"

    def describe(self) -> str:
        """Its name and arguments as a handler takes them: ``pong(elapsed_ms: float, payload: bytes)``."""
        types = self.types
        if types is None or len(types) != len(self.params):
            return f"{self.name}({', '.join(self.params)})"
        params = (f"{name}: {type_text(t)}" for name, t in zip(self.params, types, strict=True))
        return f"{self.name}({', '.join(params)})"

    def __repr__(self) -> str:
        owner = f"{self.owner.__name__}." if self.owner is not None else ""
        return f"<signal {owner}{self.describe()}>"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Signal[*Ts]: ...
    @overload
    def __get__(self, obj: Object, owner: type | None = None) -> BoundSignal[*Ts]: ...
    def __get__(self, obj: Object | None, owner: type | None = None) -> Signal[*Ts] | BoundSignal[*Ts]:
        # Made on first use and kept in the instance dict, which then wins over
        # this non-data descriptor: most signals of most objects are never used.
        if obj is None:
            return self
        watcher = None
        if self.watched is not None:
            # Weak, so that the signal does not keep its object alive.
            watcher = _call_weak(weakref.WeakMethod(getattr(obj, self.watched)), self.name)
        # Interned: the same name for every object of the class, not a copy in each.
        name = sys.intern(f"{type(obj).__name__}.{self.name}")
        bound: BoundSignal[*Ts] = BoundSignal(name, watcher, obj)
        return obj.__dict__.setdefault(self.name, bound)  # type: ignore[no-any-return]


def type_text(t: Any, name: Callable[[Any], str] | None = None) -> str:
    """A type as it is written in an annotation: ``list[str] | None``.

    ``name`` names a class (by default its ``__qualname__``), for a caller
    that writes the annotation in a module where it must resolve.
    """
    if t is None or t is type(None):
        return "None"
    if t is Ellipsis:
        return "..."
    if isinstance(t, str):
        return t
    if isinstance(t, typing.ForwardRef):
        return t.__forward_arg__
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        return " | ".join(type_text(arg, name) for arg in typing.get_args(t))
    origin = typing.get_origin(t)
    if origin is not None:
        args = typing.get_args(t)
        if origin is collections.abc.Callable and args and isinstance(args[0], list):
            params = ", ".join(type_text(a, name) for a in args[0])
            return f"{type_text(origin, name)}[[{params}], {type_text(args[1], name)}]"
        return f"{type_text(origin, name)}[{', '.join(type_text(a, name) for a in args)}]"
    if t is Any:
        return "Any"
    if name is not None and isinstance(t, type):
        return name(t)
    return str(getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or t)


class Property(Generic[T]):
    """Declares a property on an :class:`Object` subclass (QML: ``property type name``).

    Its type is its default's (``Property("")`` is a str), or the one in
    brackets where the default does not tell it: ``Property[int | None](None)``,
    ``Property[list[str]]([])``. Type checkers check assignments and
    constructor keywords against it.

    Declaring ``x`` also declares the signal ``x_changed(value)``, emitted only
    when the value really changes. ``check`` converts or rejects a value the
    user assigns (it raises TypeError or ValueError); ``changed`` names a
    method the object runs after a user's assignment changed the value, which
    is how assigning ``active`` opens a socket. A ``read_only`` property is
    set by the object itself: assigning it raises AttributeError, and type
    checkers see it as :class:`ReadOnly`.
    """

    def __init__(
        self,
        default: T,
        *,
        doc: str = "",
        read_only: bool = False,
        check: Callable[[Any], T] | None = None,
        changed: str | None = None,
    ) -> None:
        self.default = default
        # What a read gives while the object has stored no value: the default,
        # or _UNSET for a list or dict, which each object copies, so that none share one.
        self._unset = _UNSET if isinstance(default, (list, dict)) else default
        self.__doc__ = doc
        self.read_only = read_only
        self.check = check
        self.changed = changed
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        signal: Signal[T] = Signal("value", doc=f"Emitted with the new value when ``{name}`` changes.")
        signal._types = (self.value_type,)
        signal.__set_name__(owner, f"{name}_changed")
        setattr(owner, f"{name}_changed", signal)

    @property
    def declared(self) -> bool:
        """Whether its type is written in brackets (``Property[int | None](None)``)."""
        return hasattr(self, "__orig_class__")

    @property
    def value_type(self) -> Any:
        """Its type: the one in brackets, or else its default's."""
        declared = getattr(self, "__orig_class__", None)
        return type(self.default) if declared is None else typing.get_args(declared)[0]

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Property[T]: ...
    @overload
    def __get__(self, obj: Object, owner: type | None = None) -> T: ...
    def __get__(self, obj: Object | None, owner: type | None = None) -> T | Property[T]:
        if obj is None:
            return self
        reads = _tracking.reads
        if reads is not None:
            reads.add((obj, self.name))
        value = obj._values.get(self.name, self._unset)
        if value is _UNSET:
            value = obj._values.setdefault(self.name, copy.copy(self.default))
        return _public(value)  # type: ignore[no-any-return]

    def __set__(self, obj: Object, value: T | Binding[T]) -> None:
        if self.read_only:
            raise AttributeError(f"{type(obj).__name__}.{self.name} is read-only")
        if isinstance(value, Binding):
            self._unbind(obj)
            active = _ActiveBinding(value.fn, obj, self)
            if obj._bindings is None:
                obj._bindings = {}
            obj._bindings[self.name] = active
            active.evaluate()
            return
        # Checked first: a rejected value leaves the binding in place.
        value = self._checked(value)
        self._unbind(obj)
        self._store(obj, value)

    def assign(self, obj: Object, value: Any) -> None:
        """Sets the value as a user's assignment does, without touching a binding."""
        self._store(obj, self._checked(value))

    def _checked(self, value: Any) -> Any:
        """The value ``check`` makes of ``value``; its error names the property.

        Several properties share a check (a size, a number of seconds), and
        ``connect(url, max_queue=0)`` must say which keyword was wrong.
        """
        if self.check is None:
            return value
        try:
            return self.check(value)
        except (TypeError, ValueError) as e:
            if type(e) in (TypeError, ValueError) and not str(e).startswith(self.name):
                raise type(e)(f"{self.name}: {e}") from None
            raise

    def _store(self, obj: Object, value: Any) -> None:
        if obj._write(self.name, value) and self.changed is not None:
            getattr(obj, self.changed)()

    def _unbind(self, obj: Object) -> None:
        bindings = obj._bindings
        old = bindings.pop(self.name, None) if bindings else None
        if old is not None:
            old.detach()


class ReadOnly(Protocol[T_co]):
    """What type checkers see of a read-only :class:`Property`: it can be read, not assigned.

    ``ws.status = ...`` is then an error to ``mypy``, as it is at run time.
    """

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Property[Any]: ...
    @overload
    def __get__(self, obj: Object, owner: type | None = None) -> T_co: ...


class Binding(Generic[T_co]):
    """A QML property binding, made by :func:`bind`; assign it to a property."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], T_co]) -> None:
        if not callable(fn):
            raise TypeError(f"bind() takes a callable, not {type(fn).__name__}")
        self.fn = fn

    def __repr__(self) -> str:
        return f"bind({self.fn!r})"


def bind(fn: Callable[[], T]) -> Binding[T]:
    """Makes a QML binding: ``ws.url = bind(lambda: server.url)`` (QML: ``Qt.binding()``).

    Assigned to a property (as an attribute or a constructor keyword), the
    property takes ``fn()``'s value now, and again whenever a wsbind property
    that ``fn`` read during its last evaluation changes. Assigning a plain
    value removes the binding. An exception inside ``fn`` is logged and leaves
    the value as it was.
    """
    return Binding(fn)


class _ActiveBinding:
    """A binding installed on one property of one object."""

    def __init__(self, fn: Callable[[], Any], target: Object, prop: Property[Any]) -> None:
        self.fn = fn
        # Weak, so that the objects a binding reads do not keep its target alive.
        self.target = weakref.ref(target)
        self.prop = prop
        # The change signals this binding listens to.
        self.sources: list[BoundSignal[*tuple[Any, ...]]] = []
        # The thread whose evaluation runs, if one does: the same thread
        # coming back is a binding loop, cut as QML cuts it.
        self.evaluating: int | None = None
        # A source changed on another thread meanwhile: that evaluation runs
        # again before it ends, reading every new value. Not a wait for it,
        # which two bindings reading each other could turn into a deadlock.
        self.again = False
        # Guards the two above; never held while fn or a handler runs.
        self.lock = threading.Lock()

    def evaluate(self, *_: Any) -> None:
        target = self.target()
        if target is None:
            self.detach()
            return
        me = threading.get_ident()
        with self.lock:
            if self.evaluating is not None:
                if self.evaluating == me:
                    logger.warning("binding loop detected for %s.%s", type(target).__name__, self.prop.name)
                else:
                    self.again = True
                return
            self.evaluating = me
        try:
            while True:
                self._evaluate(target)
                with self.lock:
                    if not self.again:
                        break
                    self.again = False
        finally:
            with self.lock:
                self.evaluating = None
                self.again = False

    def _evaluate(self, target: Object) -> None:
        # A property read by fn may change on another thread (wsbind's event
        # thread) between the read and the subscription below; evaluate again
        # until nothing changed meanwhile.
        for _ in range(_MAX_EVALUATIONS):
            writes = Object._writes
            outer, _tracking.reads = _tracking.reads, set()
            try:
                value = self.fn()
                failed = False
            except Exception:
                logger.exception("exception in the binding of %s.%s", type(target).__name__, self.prop.name)
                failed = True
            finally:
                reads, _tracking.reads = _tracking.reads, outer
            # After a failure keep listening to what the earlier evaluation read,
            # so that a later change can still mend the value.
            if reads or not failed:
                self.listen([getattr(obj, f"{name}_changed") for obj, name in reads])
            if Object._writes == writes:
                break
        if not failed:
            try:
                self.prop.assign(target, value)
            except Exception:
                logger.exception(
                    "the binding of %s.%s gave a value it does not take",
                    type(target).__name__,
                    self.prop.name,
                )

    def listen(self, sources: list[BoundSignal[*tuple[Any, ...]]]) -> None:
        """Listens to exactly ``sources``, leaving alone the ones it already listens to."""
        for signal in self.sources:
            if signal not in sources:
                signal.disconnect(self.evaluate)
        for signal in sources:
            if signal not in self.sources:
                signal.connect(self.evaluate)
        self.sources = sources

    def detach(self) -> None:
        self.listen([])


def _same(old: Any, new: Any) -> bool:
    """Whether a property keeps its value: equal and of one type, so that 1 replacing True is a change."""
    return bool(old == new) and type(old) is type(new)


def _public(value: Any) -> Any:
    """What a reader or a change handler gets of a stored value: never the stored dict or list itself.

    A dict comes as a read-only view (item assignment raises TypeError) and a
    list as a copy, so that the only way to change a property is to assign it,
    which checks the new value and emits the change signal. Values of other
    types are immutable, or are objects (a server's sockets) meant to be shared.
    """
    kind = type(value)
    if kind is dict:
        return MappingProxyType(value)
    if kind is list:
        return list(value)
    return value


def _call_weak(method: weakref.WeakMethod[Any], name: str) -> Callable[[bool], None]:
    def watch(on: bool) -> None:
        bound = method()
        if bound is not None:
            bound(name, on)

    return watch


class Object:
    """The base of wsbind's classes (Qt: ``QObject``): declared properties and signals.

    The constructor takes any writable property by keyword and any signal's
    handler as ``on_<signal>=fn`` (None connects none). Properties are set
    first, then handlers are connected, then the object completes (QML:
    ``Component.onCompleted``), which is when a socket with ``active=True``
    opens. ``inspect.signature()`` and ``help()`` show every keyword with its
    type and default; type checkers see them through the declarations that
    ``tools/declarations.py`` writes into each class.
    """

    # Every property and signal of the class, its bases' included.
    _properties: ClassVar[dict[str, Property[Any]]] = {}
    _signals: ClassVar[dict[str, Signal[*tuple[Any, ...]]]] = {}
    # Each property's default, by name.
    _defaults: ClassVar[dict[str, Any]] = {}
    # Properties stored from the start: the class's own code reads them with
    # ``self._values[name]`` on paths too hot for a default.
    _kept: ClassVar[tuple[str, ...]] = ()
    # Counts property writes of every object; a binding compares it around an evaluation.
    _writes: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._properties = {}
        cls._signals = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, Property):
                    cls._properties[name] = attr
                elif isinstance(attr, Signal):
                    cls._signals[name] = attr
        cls._defaults = {name: p.default for name, p in cls._properties.items()}
        # What help() and inspect.signature() show of the constructor: its keywords are declared
        # as properties and signals, not written in a signature.
        cls.__signature__ = constructor_signature(cls)  # type: ignore[attr-defined]

    def __init__(self, **kwargs: Any) -> None:
        cls = type(self)
        # The value of each property that was set, and of those kept; one
        # that never was is at its default, and takes no room (a server's
        # idle sockets are thousands). The class's own code reads one with
        # ``self._value(name)``.
        self._values: dict[str, Any] = {name: cls._defaults[name] for name in cls._kept}
        # The active binding of each bound property; None until the first, as most objects have none.
        self._bindings: dict[str, _ActiveBinding] | None = None
        handlers = []
        for key, value in kwargs.items():
            prop = cls._properties.get(key)
            if prop is not None and not prop.read_only:
                continue
            if key.startswith("on_") and key[3:] in cls._signals:
                # None connects nothing, so that a handler can be passed on optionally.
                if value is not None:
                    handlers.append((key[3:], value))
                continue
            raise TypeError(self._unknown_keyword(key))
        for key, value in kwargs.items():
            if key in cls._properties:
                setattr(self, key, value)
        for name, handler in handlers:
            getattr(self, name).connect(handler)
        self._complete()

    def _unknown_keyword(self, key: str) -> str:
        cls = type(self)
        valid = [n for n, p in cls._properties.items() if not p.read_only]
        valid += [f"on_{n}" for n in cls._signals]
        message = f"{cls.__name__}() got an unexpected keyword argument {key!r}"
        if key in cls._properties:
            return f"{cls.__name__}() cannot set {key!r}: it is read-only"
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        return f"{message}; did you mean {close[0]!r}?" if close else message

    def _complete(self) -> None:
        """Runs once every constructor keyword is applied (QML: ``Component.onCompleted``)."""

    def _owns_current_thread(self) -> bool:
        """Whether the calling thread is the one that runs this object's handlers.

        wsbind's classes keep the dispatcher that runs them in ``_dispatcher``;
        an object without one runs its handlers wherever it is changed.
        """
        dispatcher = getattr(self, "_dispatcher", None)
        return dispatcher is not None and bool(dispatcher.owns_current_thread())

    def _value(self, name: str) -> Any:
        """A property's value, read by the class's own code: no binding notes the read.

        A list or dict default is the class's own: read it, never change it.
        """
        return self._values.get(name, self._defaults[name])

    def _preset(self, **values: Any) -> None:
        """Stores the values of an object nobody listens to yet, without emitting.

        Values equal to their default are left out, as they read the same.
        """
        stored, defaults = self._values, self._defaults
        for name, value in values.items():
            if not _same(value, defaults[name]):
                stored[name] = value

    def _write(self, name: str, value: Any) -> bool:
        """Stores a property's value; emits its change signal and returns True if it changed."""
        return bool(self._write_all({name: value}))

    def _write_all(
        self, values: dict[str, Any], emit_on: Callable[[Callable[[], None]], None] | None = None
    ) -> list[str]:
        """Stores several values, then emits the change signals of those that changed, in order.

        Every handler then sees all the new values, as Qt's setters that
        update two properties before emitting either. Returns what changed.
        With ``emit_on`` (a dispatcher's ``call``), the values are stored at
        once but the signals are emitted through it, on the object's thread:
        for values that change as a side effect of a call made on another
        thread (``listen = True`` binds there, and ``url`` is valid when it
        returns, but ``url_changed``'s handlers run where the server's do).
        """
        changed = []
        stored, defaults = self._values, self._defaults
        for name, value in values.items():
            if _same(stored.get(name, defaults[name]), value):
                continue
            stored[name] = value
            changed.append(name)
        if changed:
            Object._writes += 1

        def emit() -> None:
            signals = self.__dict__
            for name in changed:
                # A change signal nobody asked for does not exist yet: nothing to emit.
                signal = signals.get(f"{name}_changed")
                if signal is not None:
                    signal.emit(_public(values[name]))

        if changed:
            if emit_on is None:
                emit()
            else:
                emit_on(emit)
        return changed


class _Annotation(str):
    """An annotation as source text, which a signature shows unquoted: ``url: str = ''``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def constructor_signature(cls: type[Object]) -> inspect.Signature:
    """The keywords ``cls()`` takes: each writable property with its default, then each ``on_<signal>``."""
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=prop.default,
            annotation=_Annotation(type_text(prop.value_type)),
        )
        for name, prop in cls._properties.items()
        if not prop.read_only and not name.startswith("_")
    ]
    params += [
        inspect.Parameter(
            f"on_{name}",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=_Annotation(f"{signal.handler_type()} | None"),
        )
        for name, signal in cls._signals.items()
        if not name.startswith("_")
    ]
    return inspect.Signature(params, return_annotation=None)
