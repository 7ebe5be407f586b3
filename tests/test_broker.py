"""Group broadcasts across server processes through a real Redis (issue 26).

Each server is a process of its own (tests/broker_node.py) attached to a
private redis-server; the clients are the independent ``websockets`` library.
A member receives each broadcast once: after a broadcast, a marker broadcast
from another process is the next thing every member receives, which it would
not be if a copy came late through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer, redis_server
from websockets.sync.client import ClientConnection, connect

import wsbind
from conftest import TIMEOUT, free_port, wait_until
from wsbind import BrokerState, WebSocketServer

__all__ = ["redis_server"]  # the fixture, imported for pytest

NODE = Path(__file__).with_name("broker_node.py")


class Node:
    """A server process attached to the broker; ``lines`` is what it printed so far."""

    def __init__(
        self, broker: str, port: int = 0, reuse_port: bool = False, env: dict[str, str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(NODE), str(port), broker, "1" if reuse_port else "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
        self.lines: list[str] = []
        # The clients' connections, closed when the node stops.
        self.clients = contextlib.ExitStack()
        threading.Thread(target=self._read, daemon=True).start()
        listening = wait_until(lambda: self._find("listening ") or self._exited(), what="a node to listen")
        self.port = int(listening.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _exited(self) -> None:
        assert self.proc.poll() is None, "\n".join(self.lines)

    def _find(self, prefix: str, start: int = 0) -> str | None:
        return next((line for line in self.lines[start:] if line.startswith(prefix)), None)

    def wait_for(self, prefix: str, start: int = 0) -> str:
        """Waits until the node prints a line starting with ``prefix`` (after line ``start``)."""
        return str(wait_until(lambda: self._find(prefix, start) or self._exited(), what=f"{prefix!r}"))

    def client(self) -> Client:
        return Client(self.clients.enter_context(connect(self.url, max_size=None)))

    def stop(self) -> None:
        self.clients.close()
        self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT)


class Client:
    """A websockets client of one node."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def ask(self, command: str) -> str:
        self.ws.send(command)
        return self.next()

    def join(self, group: str) -> None:
        assert self.ask(f"join {group}") == f"joined {group} True"

    def next(self) -> str:
        message = self.ws.recv(timeout=TIMEOUT)
        assert isinstance(message, str)
        return message


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[Callable[..., Node]]:
    """Starts server processes on the test's Redis; stops them when it ends."""
    started: list[Node] = []

    def start(**kwargs: Any) -> Node:
        node = Node(redis_server.url, **kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


def test_a_group_broadcast_reaches_exactly_the_members_of_every_process_once(
    redis_server: RedisServer, nodes: Callable[..., Node]
) -> None:
    three = [nodes() for _ in range(3)]
    for node in three:
        node.wait_for("broker CONNECTED")
    members, others, speakers = [], [], []
    for node in three:
        for _ in range(2):
            member = node.client()
            member.join("room")
            members.append(member)
        other = node.client()
        other.join("other")
        others.append(other)
        speakers.append(node.client())
    wait_until(lambda: redis_server.subscribers("wsbind:room") == 3, what="three subscriptions to the room")
    wait_until(lambda: redis_server.subscribers("wsbind:other") == 3, what="three subscriptions to other")

    assert speakers[0].ask("say room msg:hello") == "said 2"
    assert [m.next() for m in members] == ["msg:hello"] * 6
    # Published after every member had hello: a late copy would come first.
    assert speakers[1].ask("say room msg:mark1") == "said 2"
    assert [m.next() for m in members] == ["msg:mark1"] * 6
    assert speakers[2].ask("say room msg:mark2") == "said 2"
    assert [m.next() for m in members] == ["msg:mark2"] * 6
    # The others' first message is their own group's: they had none of the room's.
    assert speakers[0].ask("say other msg:other") == "said 1"
    assert [o.next() for o in others] == ["msg:other"] * 3
    # A speaker is in no group: its next message is its own answer.
    assert [s.ask("pid").startswith("pid ") for s in speakers] == [True] * 3


def test_a_broker_over_tls_carries_group_broadcasts() -> None:
    """rediss://: the broker verifies Redis's certificate against the system's trust store,
    which SSL_CERT_FILE names here (the test's own CA), and carries broadcasts as over TCP."""
    server = RedisServer(tls=True)
    server.start()
    assert server.ca_file is not None
    trusted = {"SSL_CERT_FILE": str(server.ca_file)}
    here = there = None
    try:
        here, there = Node(server.url, env=trusted), Node(server.url, env=trusted)
        here.wait_for("broker CONNECTED")
        there.wait_for("broker CONNECTED")
        member = there.client()
        member.join("room")
        wait_until(lambda: server.subscribers("wsbind:room") == 1, what="the room's subscription")
        assert here.client().ask("say room msg:over-tls") == "said 0"
        assert member.next() == "msg:over-tls"
        # Without the CA, the certificate does not verify: an error, and it says so.
        untrusting = Node(server.url, env={"SSL_CERT_FILE": os.devnull})
        try:
            assert "broker ERROR" in untrusting.wait_for("broker ERROR")
        finally:
            untrusting.stop()
    finally:
        for node in (here, there):
            if node is not None:
                node.stop()
        server.stop()


def test_join_leave_and_close_update_the_subscriptions(
    redis_server: RedisServer, nodes: Callable[..., Node]
) -> None:
    node = nodes()
    node.wait_for("broker CONNECTED")
    first, second = node.client(), node.client()
    first.join("room")
    wait_until(lambda: redis_server.channels() == {"wsbind:room"}, what="the room's channel")
    second.join("room")
    second.join("lobby")
    assert second.ask("join room") == "joined room False"
    wait_until(lambda: redis_server.channels() == {"wsbind:room", "wsbind:lobby"}, what="two channels")
    assert first.ask("leave room") == "left room True"
    assert first.ask("leave room") == "left room False"
    # The room still has a member, who hears the broadcast before the answer.
    assert second.ask("say room msg:still") == "msg:still"
    assert second.next() == "said 1"
    assert redis_server.channels() == {"wsbind:room", "wsbind:lobby"}
    # Closing leaves every group; the last member's close ends the subscriptions.
    second.ws.close()
    wait_until(lambda: redis_server.channels() == set(), what="no channel once the last member closed")
    first.join("lobby")
    wait_until(lambda: redis_server.channels() == {"wsbind:lobby"}, what="the lobby again")


def test_redis_going_away_keeps_local_delivery_and_cross_process_delivery_resumes(
    redis_server: RedisServer, nodes: Callable[..., Node]
) -> None:
    here, there = nodes(), nodes()
    for node in (here, there):
        node.wait_for("broker CONNECTED")
    local, remote, speaker = here.client(), there.client(), here.client()
    local.join("room")
    remote.join("room")
    wait_until(lambda: redis_server.subscribers("wsbind:room") == 2, what="both subscriptions")
    assert speaker.ask("say room msg:before") == "said 1"
    assert (local.next(), remote.next()) == ("msg:before", "msg:before")

    marks = [len(here.lines), len(there.lines)]
    redis_server.stop()
    for node, mark in zip((here, there), marks, strict=True):
        assert "broker" in node.wait_for("broker ERROR", mark)
    assert speaker.ask("say room msg:alone") == "said 1"
    assert local.next() == "msg:alone"

    marks = [len(here.lines), len(there.lines)]
    redis_server.start()
    for node, mark in zip((here, there), marks, strict=True):
        node.wait_for("broker CONNECTED", mark)
    wait_until(lambda: redis_server.subscribers("wsbind:room") == 2, what="both subscriptions again")
    assert speaker.ask("say room msg:after") == "said 1"
    # At most once: what was said while Redis was away never reaches the other process.
    assert (local.next(), remote.next()) == ("msg:after", "msg:after")


def test_reuse_port_spreads_connections_over_the_processes(nodes: Callable[..., Node]) -> None:
    port = free_port()
    pair = [nodes(port=port, reuse_port=True) for _ in range(2)]
    assert pair[0].port == pair[1].port == port
    pids: set[str] = set()
    clients = []

    def another_client_answers() -> bool:
        client = pair[0].client()  # the same port as pair[1]'s
        clients.append(client)
        pids.add(client.ask("pid"))
        return len(pids) == 2

    wait_until(another_client_answers, what="clients in both processes")
    assert pids == {f"pid {node.proc.pid}" for node in pair}


def test_a_foreign_publication_is_dropped_and_counted(redis_server: RedisServer, servers: Any) -> None:
    """A message on a group's channel that is not wsbind's reaches no member and is counted."""
    server = servers(broker=redis_server.url, broker_namespace="ns")
    wait_until(lambda: server.broker_state is BrokerState.CONNECTED, what="the broker")
    received: list[str] = []
    server.client_connected.connect(lambda ws: server.join(ws, "room"))
    with connect(server.url) as ws:
        wait_until(lambda: redis_server.channels() == {"ns:room"}, what="the room's channel")
        redis_server.client.publish("ns:room", b"not ours")
        wait_until(lambda: server.broker_dropped == 1, what="the foreign message counted")
        server.broadcast_text_message("ours", group="room")
        received.append(str(ws.recv(timeout=TIMEOUT)))
    assert received == ["ours"]


def test_an_unreachable_broker_is_an_error_and_local_broadcasts_go_on(servers: Any) -> None:
    server = servers(broker=f"redis://127.0.0.1:{free_port()}")
    wait_until(lambda: server.broker_state is BrokerState.ERROR, what="the broker's error")
    assert "cannot reach the broker" in server.error_string
    server.client_connected.connect(lambda ws: server.join(ws, "room"))
    with connect(server.url) as ws:
        wait_until(lambda: server.members("room"), what="the member")
        assert server.broadcast_text_message("local", group="room") == 1
        assert ws.recv(timeout=TIMEOUT) == "local"
    assert server.broker_dropped >= 1
    server.broker = ""
    assert server.broker_state is BrokerState.DISCONNECTED


def test_a_bad_broker_url_raises_at_once() -> None:
    with pytest.raises(ValueError, match="redis://"):
        WebSocketServer(broker="http://127.0.0.1:6379")
    with pytest.raises(TypeError):
        WebSocketServer(broker=None)
    with pytest.raises(ValueError, match="empty"):
        WebSocketServer(broker_namespace="")


def test_the_asyncio_face_has_groups_and_the_broker(redis_server: RedisServer) -> None:
    async def main() -> list[str]:
        async def handler(ws: wsbind.WebSocket) -> None:
            server.join(ws, "room")
            async for _ in ws:
                pass

        async with wsbind.serve(handler, "127.0.0.1", 0, broker=redis_server.url) as server:
            while server.broker_state is not BrokerState.CONNECTED:
                await server.broker_state_changed.wait()
            async with wsbind.connect(server.url) as a, wsbind.connect(server.url) as b:
                while len(server.members("room")) < 2:
                    await server.members_changed.wait()
                assert server.broadcast_text_message("together", group="room") == 2
                return [await a.recv(), await b.recv()]

    assert asyncio.run(main()) == ["together", "together"]
