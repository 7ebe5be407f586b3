"""Groups of one server's clients: membership, its signals, and broadcasts to a group (issue 26)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from websockets.sync.client import connect

from conftest import TIMEOUT, Recorder, wait_until
from wsbind import WebSocket, WebSocketServer


def accepted(server: WebSocketServer, count: int) -> list[WebSocket]:
    wait_until(lambda: len(server.clients) >= count, what=f"{count} clients")
    return list(server.clients)


def test_membership_is_readable_with_its_signals(servers: Any) -> None:
    server = servers()
    groups, members = Recorder(), Recorder()
    server.groups_changed.connect(groups)
    server.members_changed.connect(members)
    with contextlib.ExitStack() as stack:
        peers = [stack.enter_context(connect(server.url)) for _ in range(3)]
        a, b, c = accepted(server, 3)
        assert server.join(a, "room") is True
        assert server.join(a, "room") is False
        assert server.join(b, "room") is True
        assert server.join(c, "lobby") is True
        wait_until(lambda: server.members("lobby") == (c,), what="the lobby's member")
        assert server.groups == ("room", "lobby")
        assert server.members("room") == (a, b)
        assert server.members("nowhere") == ()
        # Joins from another thread are told on the server's thread, where
        # one emission may cover several of them.
        assert groups.values[-1] == ("room", "lobby")
        assert set(members.values) == {"room", "lobby"}

        assert server.leave(a, "room") is True
        assert server.leave(a, "room") is False
        wait_until(lambda: server.members("room") == (b,), what="a to leave")
        told = len(members.values)
        # Closing leaves every group; the last member's close ends the group.
        peers[1].close()
        wait_until(lambda: server.groups == ("lobby",), what="the room to end")
        assert server.members("room") == ()
        assert groups.values[-1] == ("lobby",)
        assert members.values[told:] == ["room"]
        # A closed socket joins nothing.
        assert server.join(b, "room") is False
        assert server.groups == ("lobby",)


def test_a_group_broadcast_reaches_its_members_only(servers: Any) -> None:
    server = servers()
    with contextlib.ExitStack() as stack:
        peers = [stack.enter_context(connect(server.url)) for _ in range(4)]
        sockets = accepted(server, 4)
        for ws in sockets[:2]:
            server.join(ws, "room")
        server.join(sockets[3], "lobby")
        assert server.broadcast_text_message("text", group="room") == 2
        assert server.broadcast_binary_message(b"\x00binary", group="room") == 2
        assert server.broadcast_text_message("nobody", group="empty") == 0
        assert server.broadcast_text_message("all") == 4
        for peer in peers[:2]:
            assert [peer.recv(timeout=TIMEOUT) for _ in range(3)] == ["text", b"\x00binary", "all"]
        for peer in peers[2:]:
            assert peer.recv(timeout=TIMEOUT) == "all"


def test_groups_are_joined_from_any_thread_and_told_on_the_servers(servers: Any) -> None:
    """join() from a worker thread changes membership at once; members_changed runs on the server's thread."""
    import threading

    server = servers()
    threads = Recorder()
    server.members_changed.connect(lambda group: threads())
    with connect(server.url) as peer:
        (ws,) = accepted(server, 1)
        joined: list[bool] = []
        worker = threading.Thread(target=lambda: joined.append(server.join(ws, "room")), name="worker")
        worker.start()
        worker.join()
        assert joined == [True]
        assert server.broadcast_text_message("hi", group="room") == 1
        assert peer.recv(timeout=TIMEOUT) == "hi"
        threads.wait(1)
        assert threads.threads == ["wsbind-events"]


def test_misuse_raises_at_once(servers: Any) -> None:
    server = servers()
    with connect(server.url):
        (ws,) = accepted(server, 1)
        with pytest.raises(TypeError, match="WebSocket"):
            server.join("ws", "room")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="empty"):
            server.join(ws, "")
        with pytest.raises(TypeError, match="str"):
            server.leave(ws, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="str"):
            server.broadcast_text_message("m", group=b"room")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="group's name"):
            server.members(None)  # type: ignore[arg-type]


def test_a_server_that_does_not_listen_has_no_groups() -> None:
    server = WebSocketServer()
    client = WebSocket()
    assert server.join(client, "room") is False
    assert server.groups == ()
    assert server.broadcast_text_message("m", group="room") == 0
