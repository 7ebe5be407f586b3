"""wsbind's object model: properties with change signals, signals, and bindings.

Every wsbind class is an :class:`Object` and declares its properties and
signals with :class:`Property` and :class:`Signal`, the way a QML type does:

==========================  =====================================================
QML                         wsbind
==========================  =====================================================
``property url``            ``url = Property("")``; read and write ``obj.url``
``urlChanged``              ``obj.url_changed``: made for every property
``onUrlChanged: ...``       ``Cls(on_url_changed=fn)`` or ``obj.url_changed.connect(fn)``
``signal pong(...)``        ``pong = Signal("elapsed_ms", "payload")``
``url: server.url``         ``obj.url = bind(lambda: server.url)``
==========================  =====================================================

A binding re-evaluates its function whenever a property that the function read
during its last evaluation changes, as a QML binding does.
"""

from __future__ import annotations

import copy
import difflib
import logging
import threading
import weakref
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar, overload

__all__ = ["Binding", "BoundSignal", "Object", "Property", "Signal", "bind"]

logger = logging.getLogger("wsbind")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class _Tracking(threading.local):
    # The properties read by the binding being evaluated in this thread, or None.
    reads: set[tuple[Object, str]] | None = None


_tracking = _Tracking()

# Evaluations of one binding in a row while its inputs keep changing under it.
_MAX_EVALUATIONS = 10


class BoundSignal:
    """A signal of one object: connect handlers to it, and they run when it is emitted.

    Handlers run in the order they were connected. An exception in one is
    logged with its traceback on the ``wsbind`` logger and the others still run.
    """

    __slots__ = ("_handlers", "_name", "_watcher")

    def __init__(self, name: str, watcher: Callable[[bool], None] | None = None) -> None:
        # "Class.signal", for log messages.
        self._name = name
        # The connected callables, in the order they were connected; a tuple,
        # replaced on each change, so that emitting never copies it.
        self._handlers: tuple[Callable[..., Any], ...] = ()
        # Told True when the first handler connects and False when the last goes.
        self._watcher = watcher

    def connect(self, handler: F) -> F:
        """Calls ``handler`` on every emission (Qt: ``connect``); returns it, so it works as a decorator."""
        if not callable(handler):
            raise TypeError(f"{self._name}.connect() takes a callable, not {type(handler).__name__}")
        self._handlers = (*self._handlers, handler)
        if self._watcher is not None and len(self._handlers) == 1:
            self._watcher(True)
        return handler

    def disconnect(self, handler: Callable[..., Any]) -> None:
        """Stops calling ``handler`` (Qt: ``disconnect``); raises ValueError if it is not connected."""
        handlers = list(self._handlers)
        try:
            handlers.remove(handler)
        except ValueError:
            raise ValueError(f"{handler!r} is not connected to {self._name}") from None
        self._handlers = tuple(handlers)
        if self._watcher is not None and not self._handlers:
            self._watcher(False)

    @property
    def connected(self) -> bool:
        """Whether any handler is connected."""
        return bool(self._handlers)

    def emit(self, *args: Any) -> None:
        """Calls every connected handler with ``args`` (Qt: ``emit``)."""
        for handler in self._handlers:
            try:
                handler(*args)
            except Exception:
                logger.exception("exception in a handler of %s", self._name)

    def __repr__(self) -> str:
        return f"<signal {self._name} with {len(self._handlers)} handler(s)>"


class Signal:
    """Declares a signal on an :class:`Object` subclass (QML: ``signal name(params)``).

    ``params`` name the arguments handlers receive, for documentation.
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

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Signal: ...
    @overload
    def __get__(self, obj: Object, owner: type | None = None) -> BoundSignal: ...
    def __get__(self, obj: Object | None, owner: type | None = None) -> Signal | BoundSignal:
        # Made on first use and kept in the instance dict, which then wins over
        # this non-data descriptor: most signals of most objects are never used.
        if obj is None:
            return self
        watcher = None
        if self.watched is not None:
            # Weak, so that the signal does not keep its object alive.
            watcher = _call_weak(weakref.WeakMethod(getattr(obj, self.watched)), self.name)
        bound = BoundSignal(f"{type(obj).__name__}.{self.name}", watcher)
        return obj.__dict__.setdefault(self.name, bound)  # type: ignore[no-any-return]


class Property(Generic[T]):
    """Declares a property on an :class:`Object` subclass (QML: ``property type name``).

    Declaring ``x`` also declares the signal ``x_changed(value)``, emitted only
    when the value really changes. ``check`` converts or rejects a value the
    user assigns (it raises TypeError or ValueError); ``changed`` names a
    method the object runs after a user's assignment changed the value, which
    is how assigning ``active`` opens a socket.
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
        self.__doc__ = doc
        self.read_only = read_only
        self.check = check
        self.changed = changed
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        signal = Signal("value", doc=f"Emitted with the new value when ``{name}`` changes.")
        signal.__set_name__(owner, f"{name}_changed")
        setattr(owner, f"{name}_changed", signal)

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
        return _public(obj._values[self.name])  # type: ignore[no-any-return]

    def __set__(self, obj: Object, value: T | Binding[T]) -> None:
        if self.read_only:
            raise AttributeError(f"{type(obj).__name__}.{self.name} is read-only")
        if isinstance(value, Binding):
            self._unbind(obj)
            active = _ActiveBinding(value.fn, obj, self)
            obj._bindings[self.name] = active
            active.evaluate()
            return
        # Checked first: a rejected value leaves the binding in place.
        if self.check is not None:
            value = self.check(value)
        self._unbind(obj)
        self._store(obj, value)

    def assign(self, obj: Object, value: Any) -> None:
        """Sets the value as a user's assignment does, without touching a binding."""
        if self.check is not None:
            value = self.check(value)
        self._store(obj, value)

    def _store(self, obj: Object, value: Any) -> None:
        if obj._write(self.name, value) and self.changed is not None:
            getattr(obj, self.changed)()

    def _unbind(self, obj: Object) -> None:
        old = obj._bindings.pop(self.name, None)
        if old is not None:
            old.detach()


class Binding(Generic[T]):
    """A QML property binding, made by :func:`bind`; assign it to a property."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], T]) -> None:
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
        self.sources: list[BoundSignal] = []
        # True while fn runs, to cut binding loops as QML does.
        self.evaluating = False

    def evaluate(self, *_: Any) -> None:
        target = self.target()
        if target is None:
            self.detach()
            return
        if self.evaluating:
            logger.warning("binding loop detected for %s.%s", type(target).__name__, self.prop.name)
            return
        # Until the value is stored: storing it emits the change signals that
        # would bring a binding loop back here.
        self.evaluating = True
        try:
            self._evaluate(target)
        finally:
            self.evaluating = False

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

    def listen(self, sources: list[BoundSignal]) -> None:
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
    handler as ``on_<signal>=fn``. Properties are set first, then handlers are
    connected, then the object completes (QML: ``Component.onCompleted``),
    which is when a socket with ``active=True`` opens.
    """

    # Every property and signal of the class, its bases' included.
    _properties: ClassVar[dict[str, Property[Any]]] = {}
    _signals: ClassVar[dict[str, Signal]] = {}
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

    def __init__(self, **kwargs: Any) -> None:
        cls = type(self)
        # The current value of every property.
        self._values: dict[str, Any] = {
            # Mutable defaults are copied, so that instances never share one.
            name: copy.copy(p.default) if isinstance(p.default, (list, dict)) else p.default
            for name, p in cls._properties.items()
        }
        # The active binding of each bound property.
        self._bindings: dict[str, _ActiveBinding] = {}
        handlers = []
        for key, value in kwargs.items():
            prop = cls._properties.get(key)
            if prop is not None and not prop.read_only:
                continue
            if key.startswith("on_") and key[3:] in cls._signals:
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

    def _write(self, name: str, value: Any) -> bool:
        """Stores a property's value; emits its change signal and returns True if it changed."""
        return bool(self._write_all({name: value}))

    def _write_all(self, values: dict[str, Any]) -> list[str]:
        """Stores several values, then emits the change signals of those that changed, in order.

        Every handler then sees all the new values, as Qt's setters that
        update two properties before emitting either. Returns what changed.
        """
        changed = []
        for name, value in values.items():
            old = self._values[name]
            if old == value and type(old) is type(value):
                continue
            self._values[name] = value
            changed.append(name)
        if changed:
            Object._writes += 1
        signals = self.__dict__
        for name in changed:
            # A change signal nobody asked for does not exist yet: nothing to emit.
            signal = signals.get(f"{name}_changed")
            if signal is not None:
                signal.emit(_public(values[name]))
        return changed
