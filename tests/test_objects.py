"""The object model: properties with change signals, signals, declarative
constructors and bindings, on small Object subclasses and on the real
WebSocket and WebSocketServer (never opened, so no network)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from typing import Any

import pytest

import wsbind
from conftest import TIMEOUT, wait_until
from wsbind import (
    Binding,
    BoundSignal,
    InvalidURL,
    Object,
    Property,
    Signal,
    Status,
    WebSocket,
    WebSocketServer,
    bind,
)


def _stripped(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"name must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError("name must not be blank")
    return value.strip()


class Counter(Object):
    value = Property(0)
    name = Property("counter", check=_stripped)
    total = Property(0, read_only=True)
    fired = Signal("x")
    pair = Signal("a", "b")


class Source(Object):
    url = Property("ws://127.0.0.1:1/a")
    flag = Property(True)
    other = Property(0)


def _wsbind_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wsbind" and r.levelno >= logging.ERROR]


# -- properties and their change signals


def test_property_default_and_assignment() -> None:
    """A property starts at its default and reads back what was assigned."""
    c = Counter()
    assert c.value == 0
    c.value = 5
    assert c.value == 5


def test_every_property_has_a_change_signal() -> None:
    """Declaring property ``x`` gives each instance a ``x_changed`` BoundSignal, on the real classes too."""
    for obj in (Counter(), WebSocket(), WebSocketServer()):
        names = [n for n in dir(type(obj)) if isinstance(getattr(type(obj), n), Property)]
        assert names
        for name in names:
            assert isinstance(getattr(obj, f"{name}_changed"), BoundSignal), name


def test_change_signal_carries_the_new_value(recorder) -> None:
    """``x_changed`` is emitted with the new value, which the object already holds."""
    c = Counter()
    seen = []
    c.value_changed.connect(lambda v: seen.append((v, c.value)))
    c.value = 7
    assert seen == [(7, 7)]


def test_assigning_the_same_value_emits_nothing(recorder) -> None:
    """``x_changed`` is emitted only when the value really changes."""
    c = Counter()
    rec = recorder()
    c.value_changed.connect(rec)
    c.value = 3
    c.value = 3
    c.value = 4
    c.value = 4
    assert rec.values == [3, 4]


def test_same_list_value_emits_nothing(recorder) -> None:
    """An equal list assigned again to ``requested_subprotocols`` emits nothing."""
    ws = WebSocket()
    rec = recorder()
    ws.requested_subprotocols_changed.connect(rec)
    ws.requested_subprotocols = ["chat", "v2"]
    ws.requested_subprotocols = ["chat", "v2"]
    assert rec.values == [["chat", "v2"]]


def test_check_converts_the_assigned_value() -> None:
    """A property's ``check`` may convert the value; the converted value is stored."""
    c = Counter()
    c.name = "  spaced  "
    assert c.name == "spaced"


def test_check_rejection_leaves_value_and_emits_nothing(recorder) -> None:
    """A value the check rejects raises, leaves the old value and emits no change signal."""
    c = Counter(name="kept")
    rec = recorder()
    c.name_changed.connect(rec)
    with pytest.raises(ValueError):
        c.name = "   "
    with pytest.raises(TypeError):
        c.name = 12
    assert c.name == "kept"
    assert rec.calls == []


def test_a_rejected_value_names_its_property() -> None:
    """Checks that several properties share (a size, seconds) say which property was given
    what; those that name their property already are left as they are."""
    with pytest.raises(ValueError, match=r"^max_queue: expected at least 1 message, not 0$"):
        WebSocket(max_queue=0)
    with pytest.raises(TypeError, match=r"^write_limit: expected an int, not NoneType$"):
        WebSocket(write_limit=None)
    with pytest.raises(ValueError, match=r"^write_limit: expected at least 1 byte, not 0$"):
        WebSocket(write_limit=0)
    with pytest.raises(ValueError, match=r"^close_timeout: "):
        WebSocket().close_timeout = -1
    with pytest.raises(ValueError, match=r"^outgoing_frame_size: expected at most \d+ bytes"):
        WebSocket(outgoing_frame_size=2**64)
    with pytest.raises(TypeError, match=r"^name must be a str, not int$"):
        Counter(name=12)
    with pytest.raises(InvalidURL):
        WebSocket(url="http://example.com")


def _two_threads_change_a_bindings_sources() -> int:
    """x.value changes on thread A, whose evaluation runs the target's handler; meanwhile
    y.value changes on thread B. Returns the bound value at the end (11 when right)."""
    x, y, target = Counter(), Counter(), Counter()
    b_arrived = threading.Event()
    # Connected before the binding: runs on B just before the binding's evaluation.
    y.value_changed.connect(lambda _: b_arrived.set())
    target.value = bind(lambda: x.value + y.value)

    def told(_: int) -> None:
        if threading.current_thread().name == "A":
            assert b_arrived.wait(TIMEOUT)

    target.value_changed.connect(told)
    a = threading.Thread(target=lambda: setattr(x, "value", 1), name="A")
    b = threading.Thread(target=lambda: setattr(y, "value", 10), name="B")
    a.start()
    b.start()
    a.join(TIMEOUT)
    b.join(TIMEOUT)
    return int(target.value)


def test_bindings_that_read_each_other_do_not_deadlock_across_threads() -> None:
    """Two bindings each reading the other (they settle) whose sources change on two threads
    at once: neither waits for the other's evaluation, so neither thread can hang."""
    for _ in range(50):
        s1, s2, a, b = Counter(), Counter(), Counter(), Counter()
        a.value = bind(lambda s1=s1, b=b: s1.value + 0 * b.value)
        b.value = bind(lambda s2=s2, a=a: s2.value + 0 * a.value)
        threads = [
            threading.Thread(target=lambda s1=s1: setattr(s1, "value", 1)),
            threading.Thread(target=lambda s2=s2: setattr(s2, "value", 2)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "deadlocked"
        assert (a.value, b.value) == (1, 2)


def test_a_binding_whose_sources_change_on_two_threads_ends_up_right() -> None:
    """B's evaluation waits for A's, then reads both values: no false binding loop, and the
    value is not left stale."""
    assert [_two_threads_change_a_bindings_sources() for _ in range(20)] == [11] * 20


def test_assigning_read_only_property_raises_attribute_error() -> None:
    """Assigning a read-only property raises AttributeError and leaves the value."""
    c = Counter()
    with pytest.raises(AttributeError, match="read-only"):
        c.total = 3
    assert c.total == 0


def test_assigning_websocket_status_raises_attribute_error() -> None:
    """``ws.status = ...`` raises AttributeError: status is read-only."""
    ws = WebSocket()
    with pytest.raises(AttributeError, match="read-only"):
        ws.status = Status.OPEN
    assert ws.status is Status.CLOSED


def test_binding_a_read_only_property_raises_attribute_error() -> None:
    """A binding cannot be assigned to a read-only property either."""
    ws = WebSocket()
    with pytest.raises(AttributeError):
        ws.error_string = bind(lambda: "nope")
    assert ws.error_string == ""


def test_instances_do_not_share_list_defaults() -> None:
    """Each instance gets its own copy of a list default."""
    a, b = WebSocket(), WebSocket()
    a.requested_subprotocols.append("leak")
    assert b.requested_subprotocols == []
    assert WebSocket.requested_subprotocols.default == []


# -- signals


def test_signal_emit_calls_handler_with_arguments(recorder) -> None:
    """Emitting a signal calls its handlers with the emitted arguments."""
    c = Counter()
    rec = recorder()
    c.pair.connect(rec)
    c.pair.emit(1, "two")
    assert rec.calls == [(1, "two")]


def test_signals_are_per_instance(recorder) -> None:
    """A handler connected on one instance is not called for another instance's emission."""
    a, b = Counter(), Counter()
    rec = recorder()
    a.fired.connect(rec)
    b.fired.emit("b")
    assert rec.calls == []
    a.fired.emit("a")
    assert rec.values == ["a"]


def test_connect_returns_handler_and_works_as_decorator() -> None:
    """``connect(fn)`` returns ``fn``, so it can decorate a function."""
    c = Counter()
    seen = []

    @c.fired.connect
    def handler(x: Any) -> None:
        seen.append(x)

    assert callable(handler)
    assert handler.__name__ == "handler"
    c.fired.emit(9)
    assert seen == [9]


def test_disconnect_stops_calls(recorder) -> None:
    """After ``disconnect(fn)`` the handler is no longer called; others still are."""
    c = Counter()
    gone, kept = recorder(), recorder()
    c.fired.connect(gone)
    c.fired.connect(kept)
    c.fired.emit(1)
    c.fired.disconnect(gone)
    c.fired.emit(2)
    assert gone.values == [1]
    assert kept.values == [1, 2]


def test_disconnect_unconnected_raises_value_error() -> None:
    """Disconnecting a handler that is not connected raises ValueError."""
    c = Counter()
    with pytest.raises(ValueError):
        c.fired.disconnect(print)
    c.fired.connect(print)
    c.fired.disconnect(print)
    with pytest.raises(ValueError):
        c.fired.disconnect(print)


def test_connect_non_callable_raises_type_error(caplog) -> None:
    """Connecting something that is not callable raises TypeError and connects nothing."""
    c = Counter()
    with pytest.raises(TypeError):
        c.fired.connect("not callable")  # type: ignore[type-var]
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        c.fired.emit(1)  # a connected str would be logged as "not callable"
    assert _wsbind_errors(caplog) == []


def test_handlers_run_in_connection_order() -> None:
    """Handlers run in the order they were connected."""
    c = Counter()
    order: list[str] = []
    for tag in ("first", "second", "third", "fourth"):
        c.fired.connect(lambda _x, tag=tag: order.append(tag))
    c.fired.emit(None)
    assert order == ["first", "second", "third", "fourth"]


def test_handler_exception_is_logged_and_others_still_run(caplog, recorder) -> None:
    """An exception in a handler is logged with its traceback on ``wsbind``; the other handlers still run."""
    c = Counter()
    before, after = recorder(), recorder()

    def broken(_x: Any) -> None:
        raise RuntimeError("handler blew up")

    c.fired.connect(before)
    c.fired.connect(broken)
    c.fired.connect(after)
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        c.fired.emit(1)
    assert before.values == [1]
    assert after.values == [1]
    errors = _wsbind_errors(caplog)
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is RuntimeError
    assert "Traceback" in caplog.text
    assert "handler blew up" in caplog.text
    assert "broken" in caplog.text


def test_change_signal_handler_exception_does_not_undo_assignment(caplog) -> None:
    """A failing ``x_changed`` handler is logged; the assignment itself stands."""
    c = Counter()
    c.value_changed.connect(lambda v: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        c.value = 3
    assert c.value == 3
    assert _wsbind_errors(caplog)


# -- declarative constructors


def test_constructor_sets_properties_by_keyword() -> None:
    """Any writable property can be set by constructor keyword."""
    c = Counter(value=4, name="n")
    assert (c.value, c.name) == (4, "n")
    ws = WebSocket(url="ws://127.0.0.1:1/x", requested_subprotocols=["chat"])
    assert ws.url == "ws://127.0.0.1:1/x"
    assert ws.requested_subprotocols == ["chat"]
    server = WebSocketServer(port=0, host="127.0.0.1", name="srv", accept=False)
    assert (server.name, server.accept, server.listen) == ("srv", False, False)


def test_constructor_connects_on_signal_handlers(recorder) -> None:
    """``on_<signal>=fn`` connects ``fn`` to that signal, for declared and change signals."""
    fired, changed = recorder(), recorder()
    c = Counter(on_fired=fired, on_value_changed=changed)
    c.fired.emit("x")
    c.value = 2
    assert fired.values == ["x"]
    assert changed.values == [2]


def test_websocket_constructor_connects_handlers(recorder) -> None:
    """WebSocket takes ``on_text_message_received`` and ``on_url_changed`` handlers."""
    text, url = recorder(), recorder()
    ws = WebSocket(on_text_message_received=text, on_url_changed=url)
    ws.text_message_received.emit("hello")
    ws.url = "ws://127.0.0.1:1/b"
    assert text.values == ["hello"]
    assert url.values == ["ws://127.0.0.1:1/b"]


def test_constructor_sets_properties_before_connecting_handlers(recorder) -> None:
    """``on_x_changed`` is not called for the constructor's own value of ``x``."""
    rec = recorder()
    c = Counter(on_value_changed=rec, value=5)
    assert c.value == 5
    assert rec.calls == []
    c.value = 6
    assert rec.values == [6]


def test_websocket_constructor_url_does_not_fire_on_url_changed(recorder) -> None:
    """``WebSocket(url=..., on_url_changed=fn)`` does not call ``fn`` for the initial url."""
    rec = recorder()
    ws = WebSocket(on_url_changed=rec, url="ws://127.0.0.1:1/c")
    assert ws.url == "ws://127.0.0.1:1/c"
    assert rec.calls == []


def test_unknown_keyword_suggests_closest_signal_handler() -> None:
    """A misspelt handler keyword raises TypeError naming the closest valid keyword."""
    with pytest.raises(TypeError, match="'on_text_message_received'"):
        WebSocket(on_text_mesage_received=print)


def test_unknown_keyword_suggests_closest_property() -> None:
    """A misspelt property keyword raises TypeError naming the closest property."""
    with pytest.raises(TypeError, match=r"did you mean 'url'\?"):
        WebSocket(urll="ws://127.0.0.1:1")


def test_unknown_keyword_without_close_match_raises_type_error() -> None:
    """A keyword that resembles nothing still raises TypeError, naming the keyword."""
    with pytest.raises(TypeError, match="zzzzqqq"):
        Counter(zzzzqqq=1)


def test_on_keyword_for_missing_signal_raises_type_error() -> None:
    """``on_<name>`` for a name that is no signal raises TypeError."""
    with pytest.raises(TypeError, match="on_nothing"):
        Counter(on_nothing=print)


def test_read_only_property_keyword_raises_type_error() -> None:
    """Setting a read-only property by constructor keyword raises TypeError."""
    with pytest.raises(TypeError, match="read-only"):
        WebSocket(status=Status.OPEN)
    with pytest.raises(TypeError, match="read-only"):
        WebSocketServer(url="ws://127.0.0.1:1")
    with pytest.raises(TypeError, match="read-only"):
        Counter(total=1)


def test_bad_keyword_is_rejected_before_anything_is_applied() -> None:
    """An unknown keyword raises TypeError before any property keyword is applied."""
    runs = []

    def fn() -> int:
        runs.append(1)
        return 1

    with pytest.raises(TypeError):
        Counter(value=bind(fn), bogus=1)
    assert runs == []


# -- bindings


def test_bind_returns_a_binding() -> None:
    """``bind(fn)`` makes a Binding; a non-callable raises TypeError."""
    b = bind(lambda: 1)
    assert isinstance(b, Binding)
    with pytest.raises(TypeError):
        bind(42)  # type: ignore[arg-type]


def test_binding_by_keyword_takes_value_now_and_on_change() -> None:
    """A binding given by keyword sets the value now and again when a read property changes."""
    src = Counter(value=2)
    target = Counter(value=bind(lambda: src.value * 10))
    assert target.value == 20
    src.value = 3
    assert target.value == 30


def test_binding_by_attribute_takes_value_now_and_on_change() -> None:
    """A binding assigned as an attribute sets the value now and again when a read property changes."""
    src = Counter(value=1)
    target = Counter()
    target.value = bind(lambda: src.value + 100)
    assert target.value == 101
    src.value = 5
    assert target.value == 105


def test_binding_update_emits_target_change_signal(recorder) -> None:
    """A bound property emits its change signal when the binding changes its value."""
    src = Counter(value=1)
    rec = recorder()
    target = Counter(value=bind(lambda: src.value), on_value_changed=rec)
    src.value = 2
    src.value = 2
    assert target.value == 2
    assert rec.values == [2]


def test_binding_reads_several_sources() -> None:
    """A binding re-evaluates when any of the properties it read changes."""
    a, b = Counter(value=1), Counter(value=2)
    target = Counter(value=bind(lambda: a.value + b.value))
    a.value = 10
    assert target.value == 12
    b.value = 20
    assert target.value == 30


def test_binding_ignores_properties_it_did_not_read() -> None:
    """Changing a property the binding did not read does not re-run it."""
    src = Source()
    runs = []

    def fn() -> bool:
        runs.append(1)
        return src.flag

    target = Source(flag=bind(fn))
    src.other = 5
    assert len(runs) == 1
    src.flag = False
    assert len(runs) == 2
    assert target.flag is False


def test_binding_retracks_dependencies_each_evaluation() -> None:
    """Dependencies are re-tracked: ``a.x if flag else b.x`` switches from ``a`` to ``b``."""
    a, b = Counter(value=1), Counter(value=2)
    flag = Source(flag=True)
    target = Counter(value=bind(lambda: a.value if flag.flag else b.value))
    assert target.value == 1
    flag.flag = False
    assert target.value == 2
    a.value = 100  # no longer read
    assert target.value == 2
    b.value = 200
    assert target.value == 200
    flag.flag = True
    assert target.value == 100


def test_plain_assignment_removes_binding() -> None:
    """Assigning a plain value removes the binding: later source changes no longer propagate."""
    src = Counter(value=1)
    target = Counter(value=bind(lambda: src.value))
    target.value = 50
    src.value = 2
    assert target.value == 50


def test_new_binding_replaces_old_binding() -> None:
    """Assigning a new binding stops the old one."""
    a, b = Counter(value=1), Counter(value=2)
    target = Counter(value=bind(lambda: a.value))
    target.value = bind(lambda: b.value)
    assert target.value == 2
    a.value = 99
    assert target.value == 2
    b.value = 3
    assert target.value == 3


def test_binding_exception_is_logged_and_keeps_value(caplog) -> None:
    """An exception inside the bound function is logged and leaves the value as it was."""
    src = Counter(value=2)
    target = Counter(value=bind(lambda: 100 // src.value))
    assert target.value == 50
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        src.value = 0
    assert target.value == 50
    errors = _wsbind_errors(caplog)
    assert errors
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is ZeroDivisionError


def test_binding_recovers_after_exception(caplog) -> None:
    """After fn raised, a later change that makes it succeed updates the value again."""
    src = Counter(value=2)
    target = Counter(value=bind(lambda: 100 // src.value))
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        src.value = 0
    src.value = 4
    assert target.value == 25


def test_binding_failing_at_first_evaluation_recovers(caplog) -> None:
    """A binding that raises when assigned keeps the default and updates once fn succeeds."""
    src = Counter(value=0)
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        target = Counter(value=bind(lambda: 10 // src.value))
    assert target.value == 0
    assert _wsbind_errors(caplog)
    src.value = 5
    assert target.value == 2


def test_binding_to_websocket_url() -> None:
    """An Object's property bound onto WebSocket.url follows the source (socket inactive)."""
    src = Source(url="ws://127.0.0.1:1/first")
    ws = WebSocket(url=bind(lambda: src.url))
    assert ws.url == "ws://127.0.0.1:1/first"
    src.url = "ws://127.0.0.1:1/second"
    assert ws.url == "ws://127.0.0.1:1/second"
    assert ws.status is Status.CLOSED
    assert ws.active is False


def test_binding_value_rejected_by_check_is_logged_and_keeps_value(caplog) -> None:
    """A bound value the property's check rejects is logged; the property keeps its value."""
    src = Source(url="ws://127.0.0.1:1/ok")
    ws = WebSocket(url=bind(lambda: src.url))
    with caplog.at_level(logging.ERROR, logger="wsbind"):
        src.url = "http://127.0.0.1:1/bad"
    assert ws.url == "ws://127.0.0.1:1/ok"
    assert _wsbind_errors(caplog)
    src.url = "ws://127.0.0.1:1/good"
    assert ws.url == "ws://127.0.0.1:1/good"


def test_binding_does_not_keep_target_alive(caplog) -> None:
    """A binding holds its target weakly; once collected, source changes neither fail nor log."""
    src = Counter(value=1)
    target = Counter(value=bind(lambda: src.value))
    ref = weakref.ref(target)
    del target
    gc.collect()
    assert ref() is None
    with caplog.at_level(logging.DEBUG, logger="wsbind"):
        src.value = 2
        src.value = 3
    assert [r for r in caplog.records if r.name == "wsbind"] == []


def test_binding_does_not_keep_websocket_target_alive() -> None:
    """A WebSocket whose url is bound to a live source is still collected."""
    src = Source()
    ws = WebSocket(url=bind(lambda: src.url))
    ref = weakref.ref(ws)
    del ws
    gc.collect()
    assert ref() is None
    src.url = "ws://127.0.0.1:1/after"


def test_binding_loop_is_cut() -> None:
    """A binding that depends on its own property is evaluated once and warns, as QML's binding loops."""
    c = Counter(value=0)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    # Kept off the root logger: a runaway loop would log hundreds of nested tracebacks.
    handler = Keep(logging.DEBUG)
    log = logging.getLogger("wsbind")
    log.addHandler(handler)
    log.propagate = False
    try:
        c.value = bind(lambda: c.value + 1)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert c.value == 1
    assert not any(r.exc_info and r.exc_info[0] is RecursionError for r in records)
    assert any("binding loop" in r.getMessage() for r in records)


# -- property checks of the real classes


def test_websocket_url_must_be_str() -> None:
    """WebSocket(url=123) raises TypeError."""
    with pytest.raises(TypeError):
        WebSocket(url=123)


def test_websocket_url_must_be_ws_scheme() -> None:
    """A non-ws URL raises InvalidURL, which is a wsbind.Error and a ValueError."""
    with pytest.raises(InvalidURL) as info:
        WebSocket(url="http://x")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, wsbind.Error)


def test_websocket_url_accepts_ws_wss_and_empty() -> None:
    """ws://, wss:// and "" (no URL) are valid urls."""
    ws = WebSocket()
    for url in ("ws://127.0.0.1:1/p", "wss://example.com/q", ""):
        ws.url = url
        assert ws.url == url


def test_websocket_active_must_be_bool() -> None:
    """WebSocket(active="yes") raises TypeError."""
    with pytest.raises(TypeError):
        WebSocket(active="yes")
    with pytest.raises(TypeError):
        WebSocket(active=1)


def test_requested_subprotocols_must_be_tokens() -> None:
    """A subprotocol name that is not an HTTP token raises ValueError."""
    with pytest.raises(ValueError):
        WebSocket(requested_subprotocols=["a b"])


def test_requested_subprotocols_must_not_be_a_str() -> None:
    """A plain str for requested_subprotocols raises TypeError."""
    with pytest.raises(TypeError):
        WebSocket(requested_subprotocols="chat")
    with pytest.raises(TypeError):
        WebSocket(requested_subprotocols=[1])


def test_server_port_range() -> None:
    """WebSocketServer(port=70000) raises ValueError."""
    with pytest.raises(ValueError):
        WebSocketServer(port=70000)
    with pytest.raises(ValueError):
        WebSocketServer(port=-1)
    with pytest.raises(TypeError):
        WebSocketServer(port="80")


# -- status and fresh objects


def test_status_values() -> None:
    """Status has Qt's values, as ints."""
    assert {s.name: int(s) for s in Status} == {
        "CONNECTING": 0,
        "OPEN": 1,
        "CLOSING": 2,
        "CLOSED": 3,
        "ERROR": 4,
    }


def test_fresh_websocket_defaults() -> None:
    """A fresh WebSocket is CLOSED with no error, inactive, no url, no subprotocol and no close code."""
    ws = WebSocket()
    assert ws.status is Status.CLOSED
    assert ws.error_string == ""
    assert ws.active is False
    assert ws.url == ""
    assert ws.negotiated_subprotocol == ""
    assert ws.close_code is None
    assert ws.requested_subprotocols == []


def test_fresh_server_defaults() -> None:
    """A fresh WebSocketServer is not listening and has no url."""
    server = WebSocketServer()
    assert server.listen is False
    assert server.url == ""
    assert server.error_string == ""
    assert server.host == "127.0.0.1"
    assert server.port == 0
    assert server.accept is True


# -- garbage collection


def _websocket_in_cycle() -> weakref.ref[WebSocket]:
    ws = WebSocket()
    ws.text_message_received.connect(lambda m: ws.close())
    return weakref.ref(ws)


def _server_in_cycle() -> weakref.ref[WebSocketServer]:
    server = WebSocketServer(on_client_connected=lambda ws: server.url)
    return weakref.ref(server)


def _object_in_binding_cycle() -> weakref.ref[Source]:
    c = Source()
    c.other = bind(lambda: 1 if c.flag else 2)
    return weakref.ref(c)


def test_websocket_in_handler_cycle_is_collected() -> None:
    """A WebSocket whose handler refers back to it is collected once unreferenced."""
    ref = _websocket_in_cycle()
    gc.collect()
    assert ref() is None


def test_server_in_handler_cycle_is_collected() -> None:
    """A WebSocketServer whose handler refers back to it is collected once unreferenced."""
    ref = _server_in_cycle()
    gc.collect()
    assert ref() is None


def test_object_in_binding_cycle_is_collected() -> None:
    """An Object bound to its own other property (a cycle through the binding) is collected."""
    ref = _object_in_binding_cycle()
    gc.collect()
    assert ref() is None


def test_a_rejected_assignment_keeps_the_binding() -> None:
    """A value the property's check rejects raises, and the binding stays in force."""
    source = Source()
    ws = WebSocket(url=bind(lambda: source.url))
    with pytest.raises(TypeError):
        ws.url = 123  # type: ignore[assignment]
    source.url = "ws://127.0.0.1:1/b"
    assert ws.url == "ws://127.0.0.1:1/b"


def test_a_binding_keeps_its_place_among_the_sources_handlers() -> None:
    """Re-evaluating does not reconnect: a user handler connected later still runs after it."""
    source = Source()
    target = Source(other=bind(lambda: len(source.url)))
    seen: list[int] = []
    source.url_changed.connect(lambda _: seen.append(target.other))
    source.url = "ws://127.0.0.1:1/bb"
    source.url = "ws://127.0.0.1:1/ccc"
    assert seen == [len("ws://127.0.0.1:1/bb"), len("ws://127.0.0.1:1/ccc")]


def test_a_change_during_evaluation_on_another_thread_is_not_missed() -> None:
    """A source that changes (on another thread) after the binding read it but before it
    listened to it still reaches the target."""
    source = Source()
    changer = threading.Thread(target=lambda: setattr(source, "url", "ws://127.0.0.1:1/late"))

    def stale() -> str:
        url = source.url
        if not changer.is_alive() and url.endswith("/a"):
            changer.start()
            changer.join()
        return url

    target = WebSocket(url=bind(stale))
    assert target.url == "ws://127.0.0.1:1/late"


def test_dict_defaults_are_not_shared() -> None:
    """Each instance gets its own copy of a dict default (request_headers), made as it is first read."""
    a, b = WebSocket(), WebSocket()
    assert "request_headers" not in a._values
    assert a.request_headers == b.request_headers == {}
    default = WebSocket.request_headers.default
    assert a._values["request_headers"] is not b._values["request_headers"]
    assert a._values["request_headers"] is not default
    assert b._values["request_headers"] is not default
    a.request_headers = {"X-Test": "1"}
    assert b.request_headers == {}


# -- what a property hands out cannot change it behind its back


def test_a_dict_property_reads_as_a_read_only_view(recorder: Any) -> None:
    """Item assignment on request_headers raises TypeError and changes nothing; assigning a new
    dict is checked and emits the change signal, whose value is read-only too."""
    changes = recorder()
    ws = WebSocket(request_headers={"X-A": "1"}, on_request_headers_changed=changes)
    with pytest.raises(TypeError):
        ws.request_headers["X-B"] = "bad\r\nvalue"  # type: ignore[index]
    with pytest.raises(TypeError):
        del ws.request_headers["X-A"]  # type: ignore[attr-defined]
    assert ws.request_headers == {"X-A": "1"}
    assert changes.calls == []
    with pytest.raises(ValueError):
        ws.request_headers = {**ws.request_headers, "X-B": "bad\r\nvalue"}
    ws.request_headers = {**ws.request_headers, "X-B": "2"}
    assert ws.request_headers == {"X-A": "1", "X-B": "2"}
    assert changes.values == [{"X-A": "1", "X-B": "2"}]
    with pytest.raises(TypeError):
        changes.values[0]["X-C"] = "3"
    assert ws.request_headers == {"X-A": "1", "X-B": "2"}


def test_a_read_only_view_can_be_assigned_to_another_socket() -> None:
    a = WebSocket(request_headers={"X-A": "1"})
    b = WebSocket(request_headers=a.request_headers)
    assert b.request_headers == {"X-A": "1"}
    b.request_headers = {"X-B": "2"}
    assert a.request_headers == {"X-A": "1"}


def test_a_list_property_reads_as_a_copy(recorder: Any) -> None:
    """Changing the list a read or a change handler got leaves the property as it was."""
    changes = recorder()
    ws = WebSocket(requested_subprotocols=["v1"], on_requested_subprotocols_changed=changes)
    ws.requested_subprotocols.append("not a token!")
    assert ws.requested_subprotocols == ["v1"]
    ws.requested_subprotocols = ["v2", "v1"]
    changes.values[0].clear()
    assert ws.requested_subprotocols == ["v2", "v1"]
    server = WebSocketServer(supported_subprotocols=["v1"])
    server.supported_subprotocols.append("v2")
    assert server.supported_subprotocols == ["v1"]
    server.clients.append(ws)
    assert server.clients == []


def test_a_list_given_to_a_property_is_not_kept() -> None:
    """The check copies the assigned list, so changing it afterwards changes nothing."""
    protocols = ["v1"]
    ws = WebSocket(requested_subprotocols=protocols)
    protocols.append("v2")
    assert ws.requested_subprotocols == ["v1"]


# -- awaiting signals


def test_wait_gives_the_next_emission_packed_as_a_return_value() -> None:
    """None for no argument, the value for one, a tuple for several; emitted on the same loop."""

    class Three(Object):
        bare = Signal()
        one = Signal("x")
        two = Signal("a", "b")

    async def main() -> list[Any]:
        obj = Three()
        got = []
        for signal, args in ((obj.bare, ()), (obj.one, (5,)), (obj.two, (1, "b"))):
            waiting = signal.wait()
            signal.emit(*args)
            got.append(await waiting)
        return got

    assert asyncio.run(main()) == [None, 5, (1, "b")]


def test_wait_takes_only_the_next_emission_and_leaves_nothing_connected() -> None:
    async def main() -> tuple[Any, bool]:
        counter = Counter()
        waiting = counter.fired.wait()
        counter.fired.emit(1)
        counter.fired.emit(2)
        return await waiting, counter.fired.connected

    assert asyncio.run(main()) == (1, False)


def test_wait_timeout_raises_timeout_error_and_disconnects() -> None:
    async def main() -> Counter:
        counter = Counter()
        with pytest.raises(TimeoutError):
            await counter.fired.wait(timeout=0.01)
        return counter

    assert not asyncio.run(main()).fired.connected


def test_a_cancelled_wait_disconnects() -> None:
    async def main() -> Counter:
        counter = Counter()
        task = asyncio.ensure_future(counter.fired.wait())
        await asyncio.sleep(0)
        assert counter.fired.connected
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return counter

    assert not asyncio.run(main()).fired.connected


def test_wait_outside_a_loop_raises_and_names_the_blocking_one() -> None:
    with pytest.raises(RuntimeError, match="wait_blocking"):
        Counter().fired.wait()


def test_wait_on_a_loop_for_an_emission_from_another_thread() -> None:
    """The emission is handed to the awaiting loop's thread."""
    counter = Counter()

    async def main() -> tuple[Any, str]:
        waiting = counter.fired.wait()
        emitter = threading.Thread(target=counter.fired.emit, args=("from a thread",))
        emitter.start()
        value = await waiting
        emitter.join()
        return value, threading.current_thread().name

    assert asyncio.run(main()) == ("from a thread", threading.current_thread().name)


def test_wait_blocking_from_a_thread_and_its_timeout() -> None:
    counter = Counter()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(counter.pair.wait_blocking(timeout=15)))
    waiter.start()
    wait_until(lambda: counter.pair.connected, what="the waiter to connect")
    counter.pair.emit("a", 2)
    waiter.join()
    assert got == [("a", 2)]
    assert not counter.pair.connected
    with pytest.raises(TimeoutError):
        counter.pair.wait_blocking(timeout=0.01)
    assert not counter.pair.connected


def test_wait_blocking_on_a_loop_raises() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="await"):
            Counter().fired.wait_blocking()

    asyncio.run(main())


def test_async_for_yields_each_emission_in_order() -> None:
    """Emissions from the moment the iterator is made, whether or not it is waiting."""

    async def main() -> list[Any]:
        counter = Counter()
        stream = counter.fired.emissions()
        counter.fired.emit(0)
        got = [await anext(stream)]
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        for i in range(1, 4):
            counter.fired.emit(i)
        got.append(await waiting)
        got += [await anext(stream) for _ in range(2)]
        return got

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_async_for_from_another_thread_wakes_the_loop_and_keeps_the_order() -> None:
    counter = Counter()

    async def main() -> list[Any]:
        stream = counter.fired.emissions()
        emitter = threading.Thread(target=lambda: [counter.fired.emit(i) for i in range(100)])
        emitter.start()
        got = [await anext(stream) for _ in range(100)]
        emitter.join()
        stream.close()
        return got

    assert asyncio.run(main()) == list(range(100))
    assert not counter.fired.connected


def test_a_full_emission_queue_drops_the_oldest_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[list[Any], int]:
        counter = Counter()
        stream = counter.fired.emissions(max_queue=2)
        for i in range(5):
            counter.fired.emit(i)
        got = [await anext(stream) for _ in range(2)]
        return got, stream.dropped

    with caplog.at_level(logging.WARNING, logger="wsbind"):
        assert asyncio.run(main()) == ([3, 4], 3)
    warnings = [r.getMessage() for r in caplog.records if r.name == "wsbind"]
    assert any("dropping the oldest" in w for w in warnings), warnings
    assert any("3 emission(s) were dropped" in w for w in warnings), warnings


def test_breaking_out_of_async_for_disconnects() -> None:
    async def main() -> bool:
        counter = Counter()

        async def consume() -> None:
            async for _ in counter.fired:
                break

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        counter.fired.emit(1)
        await task
        gc.collect()
        return counter.fired.connected

    assert asyncio.run(main()) is False


def test_closing_emissions_ends_the_async_for() -> None:
    async def main() -> list[Any]:
        counter = Counter()
        stream = counter.fired.emissions()
        counter.fired.emit("kept")
        stream.close()
        counter.fired.emit("after close")
        return [value async for value in stream]

    assert asyncio.run(main()) == ["kept"]


def test_emissions_max_queue_is_checked() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="at least 1"):
            Counter().fired.emissions(max_queue=0)
        with pytest.raises(TypeError):
            Counter().fired.emissions(max_queue=1.5)  # type: ignore[arg-type]

    asyncio.run(main())
